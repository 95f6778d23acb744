"""Small random-initialised models of the other encoder families the zoo loads (pruned BERT, DistilBERT,
ALBERT with one and two layer groups), saved as Hugging Face checkpoints with the reference outputs of one
batch through them: every hidden state, the attention scores and probabilities of every layer, the logits,
and one training step's loss and gradients. Used by `tools/hf_reference.py families` (and `all`).

    DIR/families/<name>/model/                  config.json, model.safetensors (save_pretrained), vocab.txt
    DIR/families/<name>/reference.safetensors   input_ids token_type_ids lengths (int32), labels loss logits,
                                                hidden.<l> (l = 0..L), scores.<l> probs.<l> (l = 0..L-1),
                                                grad.<HF parameter name>; metadata "parameters" etc.

Everything is built from configs: no hub access. Each family takes a few seconds on 1-2 threads.
"""
import inspect, json, math, os, shutil, sys, time

# The families: (seed, config class, model class, config kwargs, heads to prune after construction).
COMMON = dict(vocab_size=30522, max_position_embeddings=64, num_labels=3, attn_implementation="eager")
FAMILIES = {
    "bert-pruned": (11, "BertConfig", "BertForSequenceClassification",
                    dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128, hidden_act="gelu"),
                    {0: [1], 2: [0, 2, 3]}),
    "distilbert": (12, "DistilBertConfig", "DistilBertForSequenceClassification",
                   dict(dim=64, n_layers=3, n_heads=4, hidden_dim=128, activation="gelu"), None),
    "albert": (13, "AlbertConfig", "AlbertForSequenceClassification",
               dict(embedding_size=32, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                    num_hidden_groups=1, inner_group_num=1, hidden_act="gelu_new"), None),
    "albert-groups": (14, "AlbertConfig", "AlbertForSequenceClassification",
                      dict(embedding_size=32, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                           num_hidden_groups=2, inner_group_num=1, hidden_act="gelu_new"), None),
}
LABELS = [0, 1, 2, 1, 0, 2]
BATCH, MAX_LEN = 6, 32


def accepted_inputs(model, enc):
    """The tokenizer outputs the model's forward takes (DistilBERT has no token_type_ids)."""
    params = inspect.signature(model.forward).parameters
    return {k: v for k, v in enc.items() if k in params}


def reinit(model):
    """HF's default init (std 0.02, zero biases, unit LayerNorms) gives activations so small that a parity
    test would pass on almost anything. Instead, from the family's seed, in model.modules() order: every
    Linear and Embedding weight ~ N(0, 0.1) (an Embedding's padding_idx row zeroed again, as HF and
    nn.Embedding do), every Linear bias ~ N(0, 0.05), LayerNorm weight 1 + N(0, 0.1) and bias N(0, 0.05).
    With hidden size 64 this keeps activations O(1) and attention scores of order 1 (non-uniform softmax)."""
    import torch
    from torch import nn
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.normal_(0.0, 0.1)
                if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                    m.weight[m.padding_idx].zero_()
                if getattr(m, "bias", None) is not None:
                    m.bias.normal_(0.0, 0.05)
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(1.0 + 0.1 * torch.randn_like(m.weight))
                m.bias.normal_(0.0, 0.05)


def build(name):
    import torch
    import transformers
    seed, config_cls, model_cls, kwargs, prune = FAMILIES[name]
    torch.manual_seed(seed)
    config = getattr(transformers, config_cls)(**COMMON, **kwargs)
    model = getattr(transformers, model_cls)(config)
    reinit(model)
    if prune:
        model.prune_heads(prune)  # keeps the surviving heads' rows/columns of the re-initialised weights
    model.eval()  # no dropout: the two frameworks' dropout masks cannot agree
    return model


def layer_attentions(model):
    """Per encoder layer l: (kind, attention module that layer l runs). ALBERT layer l runs the shared
    layer of group int(l / (L / G)) (inner_group_num 1)."""
    t = model.config.model_type
    if t == "bert":
        return [("bert", layer.attention.self) for layer in model.bert.encoder.layer]
    if t == "distilbert":
        return [("distilbert", layer.attention) for layer in model.distilbert.transformer.layer]
    if t == "albert":
        c = model.config
        assert c.inner_group_num == 1, "one layer per group: hidden_states then map 1:1 onto layers"
        groups = model.albert.encoder.albert_layer_groups
        return [("albert", groups[int(l / (c.num_hidden_layers / c.num_hidden_groups))].albert_layers[0].attention)
                for l in range(c.num_hidden_layers)]
    raise ValueError(t)


def attention_scores(kind, att, h):
    """scale·Q·Kᵀ of one layer, without the padding mask, [B, heads, S, S], RECOMPUTED from the layer's
    query/key projections of its input h = hidden_states[l] (not captured by a hook), with the same ops
    in the same order as the eager HF code, so it is the tensor HF adds the mask to: BERT and ALBERT
    compute (Q·Kᵀ) / sqrt(head_dim), DistilBERT (Q / sqrt(head_dim))·Kᵀ. Pruned BERT layers keep
    head_dim = hidden / original heads (16 here) and have fewer heads."""
    import torch
    B = h.shape[0]
    if kind == "distilbert":
        d = att.dim // att.n_heads
        q = att.q_lin(h).view(B, -1, att.n_heads, d).transpose(1, 2)
        k = att.k_lin(h).view(B, -1, att.n_heads, d).transpose(1, 2)
        return torch.matmul(q / math.sqrt(d), k.transpose(2, 3))
    n, d = att.num_attention_heads, att.attention_head_size
    q = att.query(h).view(B, -1, n, d).transpose(1, 2)
    k = att.key(h).view(B, -1, n, d).transpose(1, 2)
    return torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d)


def encode(tok, lines):
    """The batch as cmd_train_step builds it: pairs when any line has a TAB (the single sentences then get
    an empty second segment), truncated to MAX_LEN, padded to the longest."""
    firsts = [l[0] for l in lines]
    seconds = [l[1] if len(l) > 1 else None for l in lines]
    if any(seconds):
        return tok(firsts, [s or "" for s in seconds], truncation=True, max_length=MAX_LEN, padding=True, return_tensors="pt")
    return tok(firsts, truncation=True, max_length=MAX_LEN, padding=True, return_tensors="pt")


def count_parameters(model):
    # named_parameters() yields a shared/tied parameter once (ALBERT's layer groups are counted once).
    return sum(p.numel() for _, p in model.named_parameters())


def dump_family(name, out_root, tok, vocab, lines):
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import AutoModelForSequenceClassification
    t0 = time.time()
    model = build(name)
    fam_dir = os.path.join(out_root, "families", name)
    model_dir = os.path.join(fam_dir, "model")
    os.makedirs(model_dir, exist_ok=True)
    model.save_pretrained(model_dir, safe_serialization=True)  # before any forward: config without problem_type
    shutil.copyfile(vocab, os.path.join(model_dir, "vocab.txt"))

    enc = encode(tok, lines)
    inputs = accepted_inputs(model, enc)
    labels = torch.tensor(LABELS)
    model.zero_grad(set_to_none=True)
    res = model(**inputs, labels=labels, output_hidden_states=True, output_attentions=True)
    res.loss.backward()

    out = {
        "input_ids": enc["input_ids"].to(torch.int32).contiguous(),
        "token_type_ids": enc["token_type_ids"].to(torch.int32).contiguous(),
        "lengths": enc["attention_mask"].sum(1).to(torch.int32).contiguous(),
        "labels": labels.to(torch.float32),
        "loss": res.loss.detach().reshape(1).clone(),
        "logits": res.logits.detach().contiguous(),
    }
    hidden = [h.detach() for h in res.hidden_states]
    atts = layer_attentions(model)
    assert len(hidden) == len(atts) + 1 == len(res.attentions) + 1
    for l, h in enumerate(hidden):
        out[f"hidden.{l}"] = h.contiguous()
    # padding mask as HF's eager path applies it, to check the recomputed scores against output_attentions
    neg = (1.0 - enc["attention_mask"][:, None, None, :].float()) * torch.finfo(torch.float32).min
    with torch.no_grad():
        for l, (kind, att) in enumerate(atts):
            s = attention_scores(kind, att, hidden[l])
            p = res.attentions[l].detach()
            err = (torch.softmax(s + neg, -1) - p).abs().max().item()
            assert err < 1e-6, f"{name} layer {l}: recomputed scores disagree with HF's probabilities ({err})"
            out[f"scores.{l}"] = s.contiguous()
            out[f"probs.{l}"] = p.contiguous()
    saved = set()
    with safe_open(os.path.join(model_dir, "model.safetensors"), "pt") as f:
        saved = set(f.keys())
    names = [n for n, _ in model.named_parameters()]
    assert set(names) == saved, f"{name}: parameter names differ from the checkpoint: {set(names) ^ saved}"
    for n, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {n}"
        out[f"grad.{n}"] = p.grad.detach().clone().contiguous()

    nparams = count_parameters(model)
    meta = {
        "parameters": str(nparams),
        "family": name,
        "model_class": type(model).__name__,
        "layers": str(len(atts)),
        "heads": json.dumps([int(out[f"scores.{l}"].shape[1]) for l in range(len(atts))]),
        "scores": "recomputed from each layer's query/key projections of hidden.<l>, unmasked",
        "transformers": __import__("transformers").__version__,
    }
    save_file(out, os.path.join(fam_dir, "reference.safetensors"), metadata=meta)

    # the saved checkpoint must give the same logits
    back = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        diff = (back(**accepted_inputs(back, enc)).logits - res.logits.detach()).abs().max().item()
    assert diff < 1e-5, f"{name}: reloaded checkpoint gives different logits ({diff})"
    shapes = ""
    if model.config.pruned_heads:
        shapes = "; " + ", ".join(f"layer {i}: query {tuple(l.attention.self.query.weight.shape)} "
                                  f"out {tuple(l.attention.output.dense.weight.shape)}"
                                  for i, l in enumerate(model.bert.encoder.layer))
    print(f"families: {name}: {nparams} parameters, heads {meta['heads']}, S={enc['input_ids'].shape[1]}, "
          f"loss {res.loss.item():.6f}, reload max|Δlogits| {diff:.3g}{shapes} ({time.time() - t0:.1f}s)",
          file=sys.stderr)
    return nparams


def run(out_root, tok, weights, encoder_inputs):
    import torch
    torch.set_num_threads(2)
    with open(encoder_inputs, encoding="utf-8") as f:
        lines = [l.rstrip("\n").split("\t") for l in f][:BATCH]
    vocab = os.path.join(weights, "vocab.txt")
    for name in FAMILIES:
        dump_family(name, out_root, tok, vocab, lines)
    print(f"families: {len(FAMILIES)} -> {out_root}/families", file=sys.stderr)
