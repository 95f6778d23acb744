"""One distillation step in PyTorch, the reference of zoo's DistillStep (all TinyBERT losses): a small
random BERT teacher (hidden 32, 4 layers) and student (hidden 16, 2 layers), both HF
BertForSequenceClassification in eval mode, learned projections student → teacher width, and

    loss = 1·embedding + 1·hidden + 1·attention + 1·soft_ce (T = 2) + 0.5·hard

with zoo's definitions, over the real (unpadded) tokens only: embedding / hidden = mean over tokens and
teacher width of (s·Wᵀ + b − t)², student layer m ↔ teacher layer 2m (uniform map); attention = mean
over every sequence's own heads × L × L pre-softmax scores of (s − t)²; soft_ce = T²·KL(softmax(t/T) ‖
softmax(s/T)) averaged over the batch; hard = cross-entropy. Written by `tools/hf_reference.py distill`:

    DIR/distill/teacher/, DIR/distill/student/    HF checkpoints (save_pretrained) + vocab.txt
    DIR/distill/reference.safetensors             input_ids token_type_ids lengths labels, the projections
                                                  (hidden.weight …), term.<name>, loss, grad.<student parameter>,
                                                  grad.<projection>
"""
import os, shutil, sys

import hf_families

T_SOFT = 2.0
WEIGHTS = {"embedding": 1.0, "hidden": 1.0, "attention": 1.0, "soft_ce": 1.0, "hard": 0.5}


def run(out_root, tok, weights, encoder_inputs):
    import torch
    import transformers
    from safetensors.torch import save_file
    torch.set_num_threads(2)
    with open(encoder_inputs, encoding="utf-8") as f:
        lines = [l.rstrip("\n").split("\t") for l in f][:hf_families.BATCH]
    common = dict(vocab_size=30522, max_position_embeddings=64, num_labels=3, attn_implementation="eager", hidden_act="gelu")
    models = {}
    for name, seed, kw in [("teacher", 31, dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64)),
                           ("student", 32, dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32))]:
        torch.manual_seed(seed)
        m = transformers.BertForSequenceClassification(transformers.BertConfig(**common, **kw))
        hf_families.reinit(m)
        m.eval()
        d = os.path.join(out_root, "distill", name)
        os.makedirs(d, exist_ok=True)
        m.save_pretrained(d, safe_serialization=True)
        shutil.copyfile(os.path.join(weights, "vocab.txt"), os.path.join(d, "vocab.txt"))
        models[name] = m
    teacher, student = models["teacher"], models["student"]
    torch.manual_seed(33)
    proj = {f"{p}.{w}": (torch.randn(32, 16) * 0.3 if w == "weight" else torch.randn(32) * 0.1).requires_grad_()
            for p in ["hidden", "embedding"] for w in ["weight", "bias"]}

    enc = hf_families.encode(tok, lines)
    labels = torch.tensor(hf_families.LABELS)
    mask = enc["attention_mask"].bool()
    lengths = enc["attention_mask"].sum(1).tolist()
    with torch.no_grad():
        t_out = teacher(**enc, output_hidden_states=True)
    s_out = student(**enc, output_hidden_states=True)
    terms = {}
    project = lambda x, p: x @ proj[p + ".weight"].T + proj[p + ".bias"]
    sh, th = s_out.hidden_states, t_out.hidden_states
    terms["embedding"] = ((project(sh[0][mask], "embedding") - th[0][mask]) ** 2).mean()
    pairs = [(1, 2), (2, 4)]
    terms["hidden"] = sum(((project(sh[m][mask], "hidden") - th[n][mask]) ** 2).mean() for m, n in pairs)
    s_att, t_att = hf_families.layer_attentions(student), hf_families.layer_attentions(teacher)
    att = 0
    for m, n in pairs:
        s = hf_families.attention_scores("bert", s_att[m - 1][1], sh[m - 1])
        with torch.no_grad():
            t = hf_families.attention_scores("bert", t_att[n - 1][1], th[n - 1])
        diffs = torch.cat([((s[b, :, :L, :L] - t[b, :, :L, :L]) ** 2).reshape(-1) for b, L in enumerate(lengths)])
        att = att + diffs.mean()
    terms["attention"] = att
    ps = torch.log_softmax(s_out.logits / T_SOFT, -1)
    pt = torch.softmax(t_out.logits / T_SOFT, -1)
    terms["soft_ce"] = T_SOFT ** 2 * (pt * (torch.log(pt) - ps)).sum(-1).mean()
    terms["hard"] = torch.nn.functional.cross_entropy(s_out.logits, labels)
    loss = sum(WEIGHTS[k] * v for k, v in terms.items())
    loss.backward()

    out = {"input_ids": enc["input_ids"].to(torch.int32).contiguous(), "token_type_ids": enc["token_type_ids"].to(torch.int32).contiguous(),
           "lengths": enc["attention_mask"].sum(1).to(torch.int32).contiguous(), "labels": labels.to(torch.float32),
           "loss": loss.detach().reshape(1)}
    for k, v in terms.items():
        out[f"term.{k}"] = v.detach().reshape(1)
    for k, v in proj.items():
        out[k] = v.detach().contiguous()
        out[f"grad.{k}"] = v.grad.detach().contiguous()
    for n, p in student.named_parameters():
        out[f"grad.{n}"] = p.grad.detach().clone().contiguous()
    save_file(out, os.path.join(out_root, "distill", "reference.safetensors"))
    print(f"distill: loss {loss.item():.5f} ({', '.join(f'{k} {v.item():.4f}' for k, v in terms.items())}) -> {out_root}/distill", file=sys.stderr)
