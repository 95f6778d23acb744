#!/usr/bin/env python3
"""Issue 11's pruning tables: GLUE dev scores and measured speed of pruned all-MiniLM-L6-v2 models.

For each task: the dense model fine-tuned by `zoo finetune` (tools/compare_finetune.sh's recipe; SST-2
one epoch, not three), then `zoo prune` runs on it (CONFIGS; --configs picks some) — 40 % of the heads
removed, and heads + FFN neurons removed together — each with a recovery. Missing runs are made (in --runs, reused when present), then every pruned
model is timed against its dense model with `zoo bench` (the two interleaved, alternating which runs
first, medians), on MiniLM-L6 itself and on the bert-base geometry with random weights pruned to the
same per-layer fractions as RTE's pruned models (`zoo prune --like`).

    python bench/prune_table.py [--tasks rte,mrpc,stsb,cola,sst2] [--runs runs] [--rounds 3]
                                [--configs heads40,…] [--prepare-only] [--speed-only] [--scores-only]

Prints Markdown tables (speed > 1: the pruned model is faster) and the CPU it ran on; writes
<runs>/prune_table.md.
"""
import json, os, statistics, sys

sys.path.insert(0, os.path.dirname(__file__))
from common import cpu, run_logged, side_by_side, table_parser  # noqa: E402

# name: (zoo prune options, recovery epochs). SST-2: 1 epoch on its first 20,000 examples (of 67k).
SST2_RECOVERY = ["--recover-epochs", "1", "--limit", "20000"]
CONFIGS = {
    "heads40": (["--keep-heads", "0.6"], 2),
    "heads50-ffn60": (["--keep-heads", "0.5", "--keep-ffn", "0.4"], 3),
    # the same pruning, recovered by distillation from the unpruned model instead of the labels alone
    "heads50-ffn60-distill": (["--keep-heads", "0.5", "--keep-ffn", "0.4", "--distill"], 3),
    # …and on the training set plus one augmented copy of each example, from the predictions only
    "heads50-ffn60-augment": (["--keep-heads", "0.5", "--keep-ffn", "0.4", "--distill", "--augment", "1"], 3),
}
# The bert-base geometry is timed with one task's pruning pattern per configuration (its b=32 runs take
# seconds each); the per-layer shapes, not the task, set the speed.
BERT_BASE_PATTERN = "rte"
LABELS = {"heads40": "40 % of heads removed", "heads50-ffn60": "50 % of heads + 60 % of FFN neurons removed",
          "heads50-ffn60-distill": "the same, recovered by distillation (--distill)",
          "heads50-ffn60-augment": "the same, distilled with augmentation (--distill --augment 1)"}


def finetune_dense(a, task):
    """<runs>/<task>: all-MiniLM-L6-v2 fine-tuned on the task, unless it is there."""
    dense = os.path.join(a.runs, task)
    if not os.path.exists(os.path.join(dense, "metrics.json")):
        epochs = "1" if task == "sst2" else "5"   # SST-2: 67k examples, 3 epochs would take 25 min here
        run_logged([a.zoo, "finetune", "--base", "weights/minilm-l6", "--task", task, "--epochs", epochs, "--lr", "5e-5", "--batch", "32",
                    "--max-len", "128", "--warmup", "0.1", "--weight-decay", "0.01", "--seed", "42", "--threads", str(a.threads),
                    "--out", dense], dense + ".log")
    return dense


def prepare(a, task):
    dense = finetune_dense(a, task)
    for name in a.configs:
        options, epochs = CONFIGS[name]
        out = f"{dense}-{name}"
        if not os.path.exists(os.path.join(out, "prune.json")):
            recovery = SST2_RECOVERY if task == "sst2" else ["--recover-epochs", str(epochs)]
            run_logged([a.zoo, "prune", "--weights", dense, *options, *recovery,
                        "--threads", str(a.threads), "--out", out], out + ".log")
        if task == BERT_BASE_PATTERN and not os.path.exists(os.path.join(out + "-bert-base", "config.json")):
            run_logged([a.zoo, "prune", "--like", out, "--geometry", "bert-base", "--out", out + "-bert-base"], out + "-bert-base.log")


def dense_score(a, task):
    return json.load(open(os.path.join(a.runs, task, "metrics.json")))["epochs"][-1]["score"]


def main():
    ap = table_parser(__doc__)
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, of: " + ", ".join(CONFIGS))
    ap.add_argument("--scores-only", action="store_true", help="the dev-score table only, no speed runs")
    a = ap.parse_args()
    tasks, a.configs = a.tasks.split(","), a.configs.split(",")
    if unknown := [c for c in a.configs if c not in CONFIGS]:
        ap.error(f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(CONFIGS)}")
    if not a.speed_only:
        for task in tasks:
            prepare(a, task)
    if a.prepare_only:
        return
    lines = [f"CPU: {cpu()}; " + ("dev scores only" if a.scores_only else f"{a.threads} threads; s=128; {a.rounds} rounds per speed, dense and pruned interleaved, medians") + "\n"]
    lines += ["| task | dense | " + " | ".join(f"{LABELS[c]}: dev (drop)" for c in a.configs) + " |",
              "|---|---:|" + "---:|" * len(a.configs)]
    drops = {c: [] for c in a.configs}
    for task in tasks:
        d = dense_score(a, task)
        cells = []
        for c in a.configs:
            p = json.load(open(os.path.join(a.runs, f"{task}-{c}", "prune.json")))["dev"]
            drops[c].append(d - p)
            cells.append(f"{p:.2f} ({d - p:+.2f})")
        lines.append(f"| {task} | {d:.2f} | " + " | ".join(cells) + " |")
    lines.append("| mean drop | | " + " | ".join(f"{statistics.mean(drops[c]):+.2f}" for c in a.configs) + " |")
    if a.scores_only:
        print("\n".join(lines))
        return
    lines += ["", "| pruned model | heads left | FFN widths | geometry | b=1 dense / pruned (ms) | speed | b=32 dense / pruned (ms) | speed |",
              "|---|---|---|---|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for c in a.configs:
        for task in tasks:
            out = os.path.join(a.runs, f"{task}-{c}")
            cfg = json.load(open(os.path.join(out, "prune.json")))["steps"][-1]
            heads, ffn = sum(len(h) for h in cfg["heads"]), cfg["ffn"]
            models = [("minilm-l6", ("bert", ["--weights", os.path.join(a.runs, task)]), ("pruned", ["--weights", out]))]
            if task == BERT_BASE_PATTERN:
                models.append(("bert-base", ("bert", ["--geometry", "bert-base"]), ("pruned", ["--weights", out + "-bert-base"])))
            for geometry, dense, pruned in models:
                cells = []
                for b in (1, 32):
                    md, mp = side_by_side(a.zoo, dense, pruned, b, 128, a.threads, a.rounds)
                    cells.append(f"{md:.1f} / {mp:.1f} | {md / mp:.3f}")
                line = f"| {task} {c} | {heads} of 72 | {ffn} | {geometry} | " + " | ".join(cells) + " |"
                lines.append(line)
                print(line, flush=True)
    with open(os.path.join(a.runs, "prune_table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
