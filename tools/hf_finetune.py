#!/usr/bin/env python3
"""The Hugging Face side of the fine-tuning comparison: the same recipe as `zoo finetune`, in PyTorch.

    python tools/hf_finetune.py --base weights/minilm-l6 --task cola [--epochs 5] [--lr 5e-5] [--batch 32]
        [--max-len 128] [--warmup 0.1] [--weight-decay 0.01] [--seed 42] [--threads 2] [--out FILE.json]

BertForSequenceClassification; AdamW (no decay on biases and LayerNorm, eps 1e-8); linear warm-up over
the given fraction of steps then linear decay (get_linear_schedule_with_warmup); gradient clipping at
1.0; shuffled batches, each padded to its longest sequence; dropout from config.json; dev metrics
after every epoch with the official definitions (sklearn / scipy). Prints and writes JSON.
"""
import argparse, json, math, os, random, sys, time

from glue_tasks import TASKS, metrics, read

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="weights/minilm-l6")
    ap.add_argument("--task", required=True, choices=sorted(TASKS))
    ap.add_argument("--glue", default=os.environ.get("ZOO_GLUE_DIR", "data/glue"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--warmup", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, help="use only the first N training examples")
    ap.add_argument("--no-eval", action="store_true", help="skip dev evaluation (speed runs)")
    ap.add_argument("--out")
    a = ap.parse_args()

    import torch
    from transformers import BertForSequenceClassification, BertTokenizer, get_linear_schedule_with_warmup
    from transformers.utils import logging
    logging.set_verbosity_error()
    torch.set_num_threads(a.threads)
    random.seed(a.seed)
    torch.manual_seed(a.seed)
    regression = TASKS[a.task].labels is None
    num_labels = 1 if regression else len(TASKS[a.task].labels)
    tok = BertTokenizer(os.path.join(a.base, "vocab.txt"), do_lower_case=True)
    model = BertForSequenceClassification.from_pretrained(a.base, num_labels=num_labels, attn_implementation="eager")
    enc = lambda xs: [tok(*x, truncation=True, max_length=a.max_len) for x in xs]
    train_x, train_y = read(a.glue, a.task, "train")
    if a.limit:
        train_x, train_y = train_x[:a.limit], train_y[:a.limit]
    dev_x, dev_y = read(a.glue, a.task, "dev")
    train_e, dev_e = enc(train_x), enc(dev_x)

    def collate(items):
        L = max(len(e["input_ids"]) for e in items)
        pad = lambda key: torch.tensor([e[key] + [0] * (L - len(e[key])) for e in items])
        return pad("input_ids"), pad("token_type_ids"), pad("attention_mask")

    steps_per_epoch = math.ceil(len(train_e) / a.batch)
    total = steps_per_epoch * a.epochs
    decay = [p for n, p in model.named_parameters() if n.endswith(".weight") and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (n.endswith(".weight") and "LayerNorm" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, eps=1e-8)
    sched = get_linear_schedule_with_warmup(opt, math.ceil(total * a.warmup), total)  # as TrainingArguments
    gen = torch.Generator().manual_seed(a.seed)
    epochs, tokens, seconds = [], 0, 0.0
    for epoch in range(a.epochs):
        model.train()
        order = torch.randperm(len(train_e), generator=gen).tolist()
        t0 = time.perf_counter()
        for s in range(steps_per_epoch):
            idx = order[s * a.batch:(s + 1) * a.batch]
            ids, types, mask = collate([train_e[i] for i in idx])
            y = torch.tensor([train_y[i] for i in idx], dtype=torch.float32 if regression else torch.long)
            loss = model(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=y).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            tokens += int(mask.sum())
        seconds += time.perf_counter() - t0
        if a.no_eval:
            continue
        model.eval()
        preds = []
        with torch.no_grad():
            for s in range(0, len(dev_e), 64):
                ids, types, mask = collate(dev_e[s:s + 64])
                logits = model(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
                preds += logits[:, 0].tolist() if regression else logits.argmax(-1).tolist()
        m = metrics(a.task, preds, dev_y)
        epochs.append({"epoch": epoch + 1, "dev": m, "score": sum(m.values()) / len(m)})
        print(f"epoch {epoch + 1}/{a.epochs}: {m}", file=sys.stderr)
    result = {"task": a.task, "epochs": epochs, "train_tokens": tokens, "train_seconds": seconds, "tokens_per_s": tokens / seconds}
    print(json.dumps(result))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
