#!/usr/bin/env python3
"""Reference outputs from Hugging Face transformers / PyTorch / scipy / sklearn for zoo's tests.

    python tools/hf_reference.py tokenizer-fixture   # -> Tests/ZooTests/Fixtures/tokenizer.jsonl (committed)
    python tools/hf_reference.py encoder  --out DIR   # -> DIR/encoder.safetensors (HF last hidden states, poolings)
    python tools/hf_reference.py stsb     --out DIR   # -> DIR/stsb.json (zero-shot STS-B dev in PyTorch)
    python tools/hf_reference.py metrics  --out DIR   # -> DIR/metrics/ (random predictions + sklearn/scipy scores)
    python tools/hf_reference.py train-step --out DIR # -> DIR/train_step.safetensors (loss, grads, AdamW step, one exact Hessian-vector product)
    python tools/hf_reference.py families --out DIR   # -> DIR/families/<name>/ (small random pruned BERT, DistilBERT,
                                                      #    ALBERT checkpoints + hidden states, scores, grads: tools/hf_families.py)
    python tools/hf_reference.py lstm     --out DIR   # -> DIR/lstm.safetensors (PyTorch nn.LSTM, bidirectional: outputs, grads)
    python tools/hf_reference.py distill  --out DIR   # -> DIR/distill/ (one TinyBERT-loss distillation step: tools/hf_distill.py)
    python tools/hf_reference.py onnx     --out DIR   # -> DIR/onnx_l3.safetensors, DIR/onnx_l3_stsb.json (onnxruntime on the ONNX
                                                      #    file paraphrase-minilm-l3 is converted from: hidden states, zero-shot STS-B)
    python tools/hf_reference.py all      --out DIR   # the last eight
    python tools/hf_reference.py roundtrip --model DIR < lines   # HF logits of a zoo-fine-tuned model (any family)
    python tools/hf_reference.py mixed-bits --model FP32 --quantized DIR --budget B --group G
                                                      # the mixed-precision bit allocation recomputed in numpy

Weights default to weights/minilm-l6 (`zoo weights fetch minilm-l6`), GLUE to $ZOO_GLUE_DIR.
Pinned versions: tools/requirements.txt (transformers 4.x: its BertTokenizer is the original Python one).
"""
import argparse, json, os, random, sys

import glue_tasks
import hf_distill
import hf_families
from glue_tasks import TASKS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "ZooTests", "Fixtures")


def tokenizer(weights):
    from transformers.utils import logging
    logging.set_verbosity_error()
    from transformers import BertTokenizer  # the slow, pure-Python tokenizer
    return BertTokenizer(os.path.join(weights, "vocab.txt"), do_lower_case=True)


def tokenizer_cases():
    """Hand-written edge cases plus seeded random strings drawn from awkward character pools."""
    cases = [
        "Hello, world!", "", "   ", "UNwANTéd,running", "Héllo Wörld Ça va? naïve café résumé",
        "Ångström Øresund ß straße İstanbul ΣΊΣΥΦΟΣ ΟΔΥΣΣΕΥΣ", "日本語のテキスト、中文字符和한국어 텍스트",
        "我爱自然语言处理", "안녕하세요 세계", "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷", "zero\u200bwidth\u200cjoin\u200dend\ufeffbom",
        "tab\tinside", "control\x00\x01\x07chars\x1b[0m", "nbsp\u00a0here\u202fnarrow\u2009thin\u3000ideographic",
        "line\u2028separator\u2029paragraph", "replacement \ufffd char", "soft\u00adhyphen",
        "a" * 99, "b" * 100, "c" * 101, "d" * 250, "word " + "x" * 300 + " end",
        "!!!???...,,,;;;:::---___((()))[[[]]]{{{}}}", "«quotes» „low“ ‘single’ “double” — em – en … ellipsis",
        "$100.00 & 50% off @user #hashtag ~tilde `backtick` ^caret |pipe \\backslash",
        "e-mail: someone@example.com, url: https://example.org/a?b=c&d=e",
        "combining: e\u0301 a\u0308 n\u0303 o\u0302 (decomposed) vs é ä ñ ô (composed)",
        "Cyrillic: Привет мир, Greek: Γειά σου Κόσμε, Arabic: مرحبا بالعالم, Hebrew: שלום עולם",
        "Thai: สวัสดีชาวโลก Devanagari: नमस्ते दुनिया", "math ∑∫√∞ ≤≥≠ ±×÷ and symbols ©®™ °C",
        "fullwidth ＡＢＣ１２３ half ｶﾀｶﾅ", "ﬁ ligature ﬂ and Ⅻ roman numeral ½ fraction ² superscript",
        "Mixed CASE and MiXeD cAsE WORDS", "numbers 3.14159 1,000,000 -42 +7 1e-10",
        "don't won't can't it's y'all", "The quick brown fox jumps over the lazy dog.",
        "\u0130\u0049\u0131 dotted and dotless i", "ǅ ǈ ǋ titlecase digraphs",
        "𝐁𝐨𝐥𝐝 𝑖𝑡𝑎𝑙𝑖𝑐 math alphanumerics", "private\ue000use \U000f0000 plane 15",
        "\u00a0leading and trailing nbsp\u00a0", "new\nline and carriage\rreturn",
    ]
    rng = random.Random(20261125)
    pools = ["abcdefghijklmnopqrstuvwxyz     ", "ÀÉÎÕÜàéîõüçñøåæœß", "的一是不了在人有我他这个们中来上大为",
             "가나다라마바사아자차카타파하", "😀😂👍🎉🔥❤️🏽", "\u200b\u200c\u200d\u2060\ufeff", "\x01\x02\x0b\x0c\x7f\x85",
             ".,;:!?-_()[]{}'\"/\\@#$%^&*+=<>|~`", "\u00a0\u2002\u2003\u2009\u3000\t\n", "0123456789",
             "абвгдежзийклмнопрстуфхцчшщъыьэюя", "αβγδεζηθικλμνξοπρστυφχψω"]
    while len(cases) < 170:
        n = rng.randint(1, 60)
        cases.append("".join(rng.choice(rng.choice(pools)) for _ in range(n)))
    words = "the a of to and in is that it for on with as was by at from this be are not but have".split()
    pairs = []
    for i in range(40):
        a = " ".join(rng.choice(words) for _ in range(rng.randint(1, 30 if i % 4 else 150)))
        b = " ".join(rng.choice(words) for _ in range(rng.randint(1, 30 if i % 3 else 160)))
        pairs.append((a, b))
    pairs.append(("日本語 テキスト", "한국어 텍스트 😀"))
    pairs.append(("", "only second"))
    longs = [" ".join(rng.choice(words + ["supercalifragilistic", "électricité", "東京"]) for _ in range(200)) for _ in range(6)]
    return cases + longs, pairs


def cmd_tokenizer_fixture(a):
    tok = tokenizer(a.weights)
    singles, pairs = tokenizer_cases()
    path = os.path.join(FIXTURES, "tokenizer.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for text in singles:
            for max_len in (128,) if len(text) < 400 else (128, 32):
                e = tok(text, truncation=True, max_length=max_len)
                f.write(json.dumps({"a": text, "max_len": max_len, "input_ids": e["input_ids"], "token_type_ids": e["token_type_ids"]}, ensure_ascii=False) + "\n")
        for x, y in pairs:
            for max_len in (128, 48):
                e = tok(x, y, truncation="longest_first", max_length=max_len)
                f.write(json.dumps({"a": x, "b": y, "max_len": max_len, "input_ids": e["input_ids"], "token_type_ids": e["token_type_ids"]}, ensure_ascii=False) + "\n")
    print(f"wrote {path}", file=sys.stderr)


ENCODER_INPUTS = os.path.join(FIXTURES, "encoder_inputs.txt")


def load_model(weights):
    import torch
    from transformers import BertModel
    torch.set_num_threads(2)
    m = BertModel.from_pretrained(weights, add_pooling_layer=False, attn_implementation="eager")
    m.eval()
    return m


def cmd_encoder(a):
    """Last hidden states and mean/CLS poolings for every line of encoder_inputs.txt (TAB = pair),
    one sequence at a time (no padding), with HF's own token ids stored beside them."""
    import torch
    from safetensors.torch import save_file
    tok, model = tokenizer(a.weights), load_model(a.weights)
    out = {}
    with open(ENCODER_INPUTS, encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f]
    for i, line in enumerate(lines):
        parts = line.split("\t")
        e = tok(*parts, truncation=True, max_length=128, return_tensors="pt")
        with torch.no_grad():
            h = model(**e).last_hidden_state[0]
        out[f"ids.{i}"] = e["input_ids"][0].to(torch.int32)
        out[f"types.{i}"] = e["token_type_ids"][0].to(torch.int32)
        out[f"hidden.{i}"] = h.contiguous()
        out[f"mean.{i}"] = h.mean(0).contiguous()
        out[f"cls.{i}"] = h[0].clone()
    os.makedirs(a.out, exist_ok=True)
    save_file(out, os.path.join(a.out, "encoder.safetensors"))
    print(f"encoder: {len(lines)} inputs -> {a.out}/encoder.safetensors", file=sys.stderr)


def read_stsb_dev(glue):
    xs, ys = glue_tasks.read(glue, "stsb", "dev")
    return [(a, b, y) for (a, b), y in zip(xs, ys)]


def cmd_stsb(a):
    """Zero-shot STS-B dev: cosine of mean-pooled embeddings vs gold, as `zoo eval --zero-shot` does."""
    import torch
    from scipy.stats import pearsonr, spearmanr
    tok, model = tokenizer(a.weights), load_model(a.weights)
    rows = read_stsb_dev(a.glue)
    def embed(texts):
        out = []
        for i in range(0, len(texts), 32):
            e = tok(texts[i:i + 32], truncation=True, max_length=128, padding=True, return_tensors="pt")
            with torch.no_grad():
                h = model(**e).last_hidden_state
            m = e["attention_mask"].unsqueeze(-1).float()
            out.append((h * m).sum(1) / m.sum(1))
        return torch.cat(out)
    ea, eb = embed([r[0] for r in rows]), embed([r[1] for r in rows])
    sims = torch.nn.functional.cosine_similarity(ea, eb).double().numpy()
    gold = [r[2] for r in rows]
    res = {"pearson": 100 * pearsonr(sims, gold)[0], "spearman": 100 * spearmanr(sims, gold)[0], "examples": len(rows)}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "stsb.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(f"stsb: {res}", file=sys.stderr)


def cmd_metrics(a):
    """For each task with dev labels here: a random predictions file in leaderboard format and the
    official metrics of it computed by sklearn / scipy."""
    rng = random.Random(7)
    out_dir = os.path.join(a.out, "metrics")
    os.makedirs(out_dir, exist_ok=True)
    expected = {}
    for name, task in TASKS.items():
        if not os.path.exists(glue_tasks.path(a.glue, name, "dev")):
            continue
        _, y = glue_tasks.read(a.glue, name, "dev")
        labels = task.labels
        if labels is None:
            # noisy but correlated scores, with ties, rounded like a submission (3 decimals)
            p = [round(min(5, max(0, v + rng.gauss(0, 1.2))) * 2) / 2 for v in y]
            text = [f"{v:.3f}" for v in p]
        else:
            p = [v if rng.random() < 0.7 else rng.randrange(len(labels)) for v in y]
            text = [labels[v] for v in p]
        with open(os.path.join(out_dir, f"{name}.tsv"), "w") as f:
            f.write("index\tprediction\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(text)))
        m = glue_tasks.metrics(name, p, y)
        expected[name] = {"metrics": m, "score": sum(m.values()) / len(m), "examples": len(y)}
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(f"metrics: {len(expected)} tasks -> {out_dir}", file=sys.stderr)


def cmd_train_step(a):
    """One BertForSequenceClassification training step from all-MiniLM-L6-v2 without dropout:
    the loss, every parameter's gradient, and the parameters after one AdamW step (lr 5e-5, weight
    decay 0.01 except biases and LayerNorm, eps 1e-8), with the batch and the freshly initialised
    pooler/classifier weights, so the zoo can start from the same state."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertForSequenceClassification
    torch.manual_seed(0)
    torch.set_num_threads(2)
    tok = tokenizer(a.weights)
    out = {}
    for labels_kind, num_labels in (("cls", 2), ("reg", 1)):
        torch.manual_seed(0)
        model = BertForSequenceClassification.from_pretrained(a.weights, num_labels=num_labels, attn_implementation="eager")
        model.eval()  # no dropout: the two frameworks' dropout masks cannot agree
        with open(ENCODER_INPUTS, encoding="utf-8") as f:
            lines = [l.rstrip("\n").split("\t") for l in f][:6]
        firsts = [l[0] for l in lines]
        seconds = [l[1] if len(l) > 1 else None for l in lines]
        if any(seconds):
            seconds = [s or "" for s in seconds]
            e = tok(firsts, seconds, truncation=True, max_length=64, padding=True, return_tensors="pt")
        else:
            e = tok(firsts, truncation=True, max_length=64, padding=True, return_tensors="pt")
        labels = torch.tensor([0, 1, 1, 0, 1, 0]) if num_labels == 2 else torch.tensor([0.5, 4.0, 2.5, 1.0, 3.0, 5.0])
        init = {k: v.detach().clone() for k, v in model.named_parameters() if k.startswith(("bert.pooler", "classifier"))}
        if labels_kind == "cls":
            # An exact Hessian-vector product (double backward) for Q-BERT's power iteration to be
            # checked against: H·v for the loss w.r.t. layer 0's FFN up-projection, v a unit vector.
            w = dict(model.named_parameters())["bert.encoder.layer.0.intermediate.dense.weight"]
            v = torch.randn(w.shape, generator=torch.Generator().manual_seed(0))
            v /= v.norm()
            (g,) = torch.autograd.grad(model(**e, labels=labels).loss, w, create_graph=True)
            (hv,) = torch.autograd.grad((g * v).sum(), w)
            out["hvp.v"], out["hvp.hv"] = v.contiguous(), hv.detach().contiguous()
        res = model(**e, labels=labels)
        res.loss.backward()
        decay = [p for n, p in model.named_parameters() if n.endswith(".weight") and "LayerNorm" not in n]
        no_decay = [p for n, p in model.named_parameters() if not (n.endswith(".weight") and "LayerNorm" not in n)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=5e-5, eps=1e-8)
        pre = f"{labels_kind}."
        out[pre + "input_ids"] = e["input_ids"].to(torch.int32).contiguous()
        out[pre + "token_type_ids"] = e["token_type_ids"].to(torch.int32).contiguous()
        out[pre + "lengths"] = e["attention_mask"].sum(1).to(torch.int32).contiguous()
        out[pre + "labels"] = labels.to(torch.float32)
        out[pre + "loss"] = res.loss.detach().reshape(1)
        out[pre + "logits"] = res.logits.detach().contiguous()
        for k, v in init.items():
            out[pre + "init." + k] = v.contiguous()
        for n, p in model.named_parameters():
            out[pre + "grad." + n] = p.grad.detach().clone().contiguous()
        opt.step()
        for n, p in model.named_parameters():
            out[pre + "after." + n] = p.detach().clone().contiguous()
    os.makedirs(a.out, exist_ok=True)
    save_file(out, os.path.join(a.out, "train_step.safetensors"))
    print(f"train-step: {a.out}/train_step.safetensors", file=sys.stderr)


def cmd_trainer(a):
    """trainer.safetensors: 6 steps of HF Trainer's own optimizer and scheduler
    (Trainer.create_optimizer_and_scheduler: AdamW with its no-decay groups, linear schedule with
    warmup_ratio 0.1, i.e. ceil(0.6) = 1 warm-up step) and its gradient clipping (max_grad_norm 0.5)
    on all-MiniLM-L6-v2 + the train-step batch (cls), dropout off, each step on the whole batch:
    the lr and loss of every step, the final weights, and how far the final weights move when
    weight decay, clipping or the schedule is taken away (the test's error must be well below each)."""
    import math
    import tempfile
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import BertForSequenceClassification, Trainer, TrainingArguments
    torch.set_num_threads(2)
    step_ref = load_file(os.path.join(a.out, "train_step.safetensors"))
    lengths = step_ref["cls.lengths"]
    ids, types = step_ref["cls.input_ids"].long(), step_ref["cls.token_type_ids"].long()
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
    labels = step_ref["cls.labels"].long()

    def run(weight_decay=0.1, max_grad_norm=0.5, scheduler="linear"):
        model = BertForSequenceClassification.from_pretrained(a.weights, num_labels=2, attn_implementation="eager")
        with torch.no_grad():
            for n, p in model.named_parameters():
                if ("cls.init." + n) in step_ref:
                    p.copy_(step_ref["cls.init." + n])
        model.eval()  # no dropout
        args = TrainingArguments(output_dir=tempfile.mkdtemp(), learning_rate=1e-3, weight_decay=weight_decay,
                                 warmup_ratio=0.1, max_grad_norm=max_grad_norm, lr_scheduler_type=scheduler, report_to=[],
                                 adam_epsilon=1e-8, use_cpu=True)
        trainer = Trainer(model=model, args=args)
        trainer.create_optimizer_and_scheduler(num_training_steps=6)
        opt, sched = trainer.optimizer, trainer.lr_scheduler
        lrs, losses, norms = [], [], []
        for _ in range(6):
            lrs.append(sched.get_last_lr()[0])
            loss = model(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels).loss
            loss.backward()
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)))
            losses.append(float(loss))
            opt.step()
            sched.step()
            opt.zero_grad()
        decay = [n for g in opt.param_groups if g["weight_decay"] > 0 for n, p in model.named_parameters() if any(p is q for q in g["params"])]
        return {n: p.detach().clone() for n, p in model.named_parameters()}, lrs, losses, norms, decay

    final, lrs, losses, norms, decay = run()
    out = {"after." + n: v.contiguous() for n, v in final.items()}
    out["lr"] = torch.tensor(lrs, dtype=torch.float64)
    out["loss"] = torch.tensor(losses, dtype=torch.float64)
    out["grad_norm"] = torch.tensor(norms, dtype=torch.float64)
    for name, kw in [("weight_decay", dict(weight_decay=0.0)), ("clipping", dict(max_grad_norm=math.inf)), ("schedule", dict(scheduler="constant"))]:
        other = run(**kw)[0]
        out["effect." + name] = torch.tensor([sum(float((final[n] - other[n]).double().pow(2).sum()) for n in final) ** 0.5], dtype=torch.float64)
    save_file(out, os.path.join(a.out, "trainer.safetensors"), metadata={"decay": json.dumps(sorted(decay))})
    print(f"trainer: {a.out}/trainer.safetensors (grad norms {[round(x, 3) for x in norms]}, effects "
          f"{ {k: round(float(v[0]), 4) for k, v in out.items() if k.startswith('effect.')} })", file=sys.stderr)


def cmd_families(a):
    hf_families.run(a.out, tokenizer(a.weights), a.weights, ENCODER_INPUTS)


def cmd_lstm(a):
    """A bidirectional nn.LSTM (input 5, hidden 7) over one sequence of 6 steps, float64, and the
    gradients of sum(output * dh) for a random dh: outputs, input gradient and every parameter's
    gradient, per direction ("fwd", "rev"), stored as float32."""
    import torch
    from safetensors.torch import save_file
    torch.manual_seed(21)
    lstm = torch.nn.LSTM(5, 7, bidirectional=True, batch_first=True).double()
    with torch.no_grad():
        for p in lstm.parameters():
            p.normal_(0.0, 0.5)
    x = torch.randn(1, 6, 5, dtype=torch.float64, requires_grad=True)
    out, _ = lstm(x)
    dh = torch.randn_like(out)
    (out * dh).sum().backward()
    f32 = lambda t: t.detach().float().contiguous()
    ref = {"x": f32(x[0]), "h": f32(out[0]), "dh": f32(dh[0]), "dx": f32(x.grad[0])}
    for d, suffix in [("fwd", ""), ("rev", "_reverse")]:
        for n in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]:
            p = getattr(lstm, f"{n}_l0{suffix}")
            ref[f"{d}.{n}"] = f32(p)
            ref[f"{d}.grad.{n}"] = f32(p.grad)
    os.makedirs(a.out, exist_ok=True)
    save_file(ref, os.path.join(a.out, "lstm.safetensors"))
    print(f"lstm: {a.out}/lstm.safetensors", file=sys.stderr)


def cmd_distill(a):
    hf_distill.run(a.out, tokenizer(a.weights), a.weights, ENCODER_INPUTS)


def cmd_roundtrip(a):
    """Loads a zoo-fine-tuned directory of any family (BERT, DistilBERT, ALBERT, ...) with
    AutoModelForSequenceClassification.from_pretrained and prints the logits of the given TAB-separated
    lines (stdin) as JSON: the round-trip check. The directory's vocab.txt tokenizes (slow BertTokenizer);
    token_type_ids go in only when the model's forward takes them."""
    import torch
    from transformers import AutoModelForSequenceClassification
    try:
        model = AutoModelForSequenceClassification.from_pretrained(a.model, attn_implementation="eager")
    except (ValueError, TypeError):  # a model class without the eager switch
        model = AutoModelForSequenceClassification.from_pretrained(a.model)
    model.eval()
    tok = tokenizer(a.model)
    rows = []
    for line in sys.stdin.read().splitlines():
        e = tok(*line.split("\t"), truncation=True, max_length=128, return_tensors="pt")
        with torch.no_grad():
            rows.append(model(**hf_families.accepted_inputs(model, e)).logits[0].tolist())
    json.dump(rows, sys.stdout)


def cmd_mixed_bits(a):
    """Q-BERT's mixed-precision bit allocation recomputed without the zoo's code, from the fp32
    checkpoint and the top Hessian eigenvalues `zoo quantize --method mixed` recorded in the quantized
    config: units (the embedding tables; each encoder layer's six Linear weights) found from the tensor
    names, each weight quantized at 8, 6, 5, 4, 3 bits in numpy (symmetric, one scale per group of rows —
    per row for embedding tables — the clip chosen from 1.0, 0.975, ... 0.525 of max|w| by squared error,
    8 bits plain absmax; round half to even), predicted loss ½·|λ|·‖Q(W) − W‖², storage bits·count +
    32 per scale, then the greedy descent from 8 bits under the budget (ties to the earlier unit:
    embeddings, then layers in order). Prints {"bits": {tensor prefix: bits}, "scales": {tensor
    prefix: one scale per group at those bits}}."""
    import re
    import numpy as np
    from safetensors.numpy import load_file
    w = {k: v for k, v in load_file(os.path.join(a.model, "model.safetensors")).items() if v.ndim == 2 and v.dtype == np.float32}
    eig = json.load(open(os.path.join(a.quantized, "config.json")))["quantization"]["hessian_top_eigenvalue"]
    units = {}
    for name in w:
        m = re.match(r"(.*encoder\.layer\.\d+)\.(attention|intermediate|output)\.", name)
        if name.endswith("_embeddings.weight"):
            units.setdefault(name.split("embeddings.")[0] + "embeddings", []).append(name[:-len(".weight")])
        elif m and "LayerNorm" not in name:
            units.setdefault(m.group(1), []).append(name[:-len(".weight")])
    assert set(units) == set(eig), (sorted(units), sorted(eig))
    order = sorted(units, key=lambda u: -1 if u.endswith("embeddings") else int(u.rsplit(".", 1)[1]))

    def quantize(x, bits, group):
        """(q, per-row scale); the clip's error in float32 differences as the C kernel sums them."""
        qmax = np.float32(2 ** (bits - 1) - 1)
        q, scale = np.zeros_like(x), np.zeros(x.shape[0], np.float32)
        for g0 in range(0, x.shape[0], group):
            blk = x[g0:g0 + group]
            m = np.abs(blk).max()
            best, best_err = m / qmax, np.inf
            for st in range(1 if bits >= 8 else 20):
                if m == 0:
                    break
                s = np.float32(m * np.float32(np.float32(1) - np.float32(0.025) * np.float32(st))) / qmax
                err = ((blk - np.clip(np.rint(blk / s), -qmax, qmax) * s).astype(np.float64) ** 2).sum()
                if err < best_err:
                    best, best_err = s, err
            if best > 0:
                q[g0:g0 + group] = np.clip(np.rint(blk / best), -qmax, qmax)
            scale[g0:g0 + group] = best
        return q, scale

    candidates = [8, 6, 5, 4, 3]
    cost, size, total = {}, {}, 0
    for u, prefixes in units.items():
        for b in candidates:
            err = bits_used = 0.0
            for p in prefixes:
                x = w[p + ".weight"]
                g = 1 if p.endswith("_embeddings") else a.group
                q, scale = quantize(x, b, g)
                err += ((x.astype(np.float64) - q.astype(np.float64) * scale.astype(np.float64)[:, None]) ** 2).sum()
                bits_used += x.size * b + -(-x.shape[0] // g) * 32
            cost[u, b], size[u, b] = 0.5 * abs(eig[u]) * err, bits_used
        total += sum(w[p + ".weight"].size for p in prefixes)
    bits = {u: 8 for u in units}
    while sum(size[u, bits[u]] for u in units) > a.budget * total:
        steps = [((cost[u, nb] - cost[u, bits[u]]) / (size[u, bits[u]] - size[u, nb]), order.index(u), u, nb)
                 for u in order for nb in candidates[candidates.index(bits[u]) + 1:][:1]]
        if not steps:
            break
        _, _, u, nb = min(steps)
        bits[u] = nb
    scales = {}
    for u, prefixes in units.items():
        for p in prefixes:
            g = 1 if p.endswith("_embeddings") else a.group
            scales[p] = quantize(w[p + ".weight"], bits[u], g)[1][::g].tolist()
    json.dump({"bits": {p: bits[u] for u, prefixes in units.items() for p in prefixes}, "scales": scales}, sys.stdout, sort_keys=True)


def cmd_tokenizer_diff(a):
    """tokenizer_diff.jsonl: a seeded 2000 GLUE inputs and 3000 hostile ones with the slow
    BertTokenizer's ids (tools/tokenizer_diff.py; TokenizerTests.testDifferentialAgainstHF)."""
    import tokenizer_diff
    args = argparse.Namespace(glue=a.glue if os.path.isdir(a.glue) else None, glue_sample=2000, hostile=3000, seed=7)
    slow, _ = tokenizer_diff.tokenizers(os.path.join(a.weights, "vocab.txt"))
    tokenizer_diff.dump(tokenizer_diff.make_cases(args, slow), slow, os.path.join(a.out, "tokenizer_diff.jsonl"))


def cmd_onnx(a):
    """onnxruntime on the ONNX export that `zoo weights fetch paraphrase-minilm-l3` converts (read from
    the cached wheel): last hidden states of every encoder_inputs.txt line, its two sentences joined
    as one (the export takes no token types: all 0), and zero-shot STS-B dev as `zoo eval --zero-shot`."""
    import zipfile
    import numpy as np
    import onnxruntime as ort
    from safetensors.numpy import save_file
    from scipy.stats import pearsonr, spearmanr
    src = json.load(open(os.path.join(ROOT, "weights", "manifest.json")))["paraphrase-minilm-l3"]["sources"][0]
    cache = os.environ.get("ZOO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "zoo")
    with zipfile.ZipFile(os.path.join(cache, "wheels", src["wheel"])) as z:
        model = z.read(src["folder"] + "/" + src["onnx"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model, opts)
    hidden = next(o.name for o in sess.get_outputs() if len(o.shape) == 3)
    tok = tokenizer(os.path.join(ROOT, "weights", "paraphrase-minilm-l3"))
    def run(ids, mask):
        return sess.run([hidden], {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)})[0]
    out = {}
    with open(ENCODER_INPUTS, encoding="utf-8") as f:
        lines = [l.rstrip("\n").replace("\t", " ") for l in f]
    for i, line in enumerate(lines):
        ids = np.array([tok(line, truncation=True, max_length=128)["input_ids"]])
        out[f"ids.{i}"] = ids[0].astype(np.int32)
        out[f"hidden.{i}"] = np.ascontiguousarray(run(ids, np.ones_like(ids))[0])
    os.makedirs(a.out, exist_ok=True)
    save_file(out, os.path.join(a.out, "onnx_l3.safetensors"))
    rows = read_stsb_dev(a.glue)
    def embed(texts):
        res = []
        for i in range(0, len(texts), 32):
            e = tok(texts[i:i + 32], truncation=True, max_length=128, padding=True, return_tensors="np")
            h = run(e["input_ids"], e["attention_mask"])
            m = e["attention_mask"][..., None].astype(np.float64)
            res.append((h * m).sum(1) / m.sum(1))
        return np.concatenate(res)
    ea, eb = embed([r[0] for r in rows]), embed([r[1] for r in rows])
    sims = (ea * eb).sum(1) / np.linalg.norm(ea, axis=1) / np.linalg.norm(eb, axis=1)
    gold = [r[2] for r in rows]
    res = {"pearson": 100 * pearsonr(sims, gold)[0], "spearman": 100 * spearmanr(sims, gold)[0], "examples": len(rows)}
    with open(os.path.join(a.out, "onnx_l3_stsb.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(f"onnx: {len(lines)} inputs, stsb {res} -> {a.out}", file=sys.stderr)
    tiny_onnx(a.out)


def tiny_onnx(out):
    """A small random BertModel (2 layers, hidden 8, 2 heads, every parameter drawn from N(0, 0.5) so
    that no two tensors are equal and the exporter keeps each under its name) exported by
    torch.onnx.export as the sentence-transformers packages are: DIR/tiny_bert.onnx and
    DIR/tiny_bert.safetensors (input ids, PyTorch's last hidden states). The fuzz seed
    Tests/fuzz/corpus/onnx/tiny-bert is this file."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=12, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
                     max_position_embeddings=16, layer_norm_eps=1e-7)
    cfg._attn_implementation = "eager"
    m = BertModel(cfg, add_pooling_layer=False).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    ids = torch.tensor([[2, 5, 6, 7, 11, 9, 3]])
    torch.onnx.export(m, (ids, torch.ones_like(ids)), os.path.join(out, "tiny_bert.onnx"), input_names=["input_ids", "attention_mask"],
                      output_names=["hidden"], dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}},
                      opset_version=17, dynamo=False)
    with torch.no_grad():
        h = m(input_ids=ids).last_hidden_state[0]
    save_file({"ids": ids[0].to(torch.int32), "hidden": h.contiguous()}, os.path.join(out, "tiny_bert.safetensors"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["tokenizer-fixture", "tokenizer-diff", "encoder", "stsb", "metrics", "train-step", "trainer", "families", "lstm", "distill", "onnx", "roundtrip", "mixed-bits", "all"])
    ap.add_argument("--model", help="roundtrip, mixed-bits: a fine-tuned (fp32) checkpoint directory")
    ap.add_argument("--quantized", help="mixed-bits: the directory zoo quantize --method mixed wrote")
    ap.add_argument("--budget", type=float, help="mixed-bits: --budget-bits")
    ap.add_argument("--group", type=int, default=1, help="mixed-bits: --group")
    ap.add_argument("--weights", default=os.path.join(ROOT, "weights", "minilm-l6"))
    ap.add_argument("--glue", default=os.environ.get("ZOO_GLUE_DIR", os.path.join(ROOT, "data", "glue")))
    ap.add_argument("--out", default=os.path.join(ROOT, ".cache", "ref"))
    a = ap.parse_args()
    if a.what == "tokenizer-fixture":
        cmd_tokenizer_fixture(a)
    if a.what == "roundtrip":
        cmd_roundtrip(a)
    if a.what == "mixed-bits":
        cmd_mixed_bits(a)
    for w in ["tokenizer-diff", "encoder", "stsb", "metrics", "train-step", "trainer", "families", "lstm", "distill", "onnx"]:
        if a.what in (w, "all"):
            globals()["cmd_" + w.replace("-", "_")](a)


if __name__ == "__main__":
    main()
