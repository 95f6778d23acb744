#!/usr/bin/env python3
"""Two builds of zoo side by side on this machine: inference latency (`zoo bench`) and training
throughput (`zoo finetune`), runs of the two interleaved, medians, and the ratio new/base.

Used to show that a change (e.g. the one model graph) loses no speed: build the base commit in a
worktree, then

    python bench/builds_side_by_side.py --base /tmp/zoo-base --new .build/release/zoo [--rounds 5]
                                        [--variants bert,qbert-int8] [--shapes 1x128,32x128]
                                        [--train-task mrpc --train-limit 256] [--threads 2]

Prints a Markdown table (speed ratio > 1: the new build is faster) and the CPU it ran on.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(__file__))
from common import bench, cpu  # noqa: E402


def train(zoo, task, limit, threads, glue):
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([zoo, "finetune", "--base", "weights/minilm-l6", "--task", task, "--epochs", "1", "--limit", str(limit),
                        "--threads", str(threads), "--save-every", "0", "--out", d] + (["--data", glue] if glue else []),
                       capture_output=True, text=True, check=True)
        return json.load(open(os.path.join(d, "metrics.json")))["tokens_per_s"]


def rounds(a, n=None):
    """The two builds in alternating order (base first, then new first, …), so that whatever favours
    the first or second run of a pair (clock boost, caches) falls on both alike."""
    pair = [("base", a.base), ("new", a.new)]
    return [pair if i % 2 == 0 else pair[::-1] for i in range(n or a.rounds)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--new", default=".build/release/zoo")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--variants", default="bert,qbert-int8")
    ap.add_argument("--sources", default="weights:weights/minilm-l6,geometry:bert-base")
    ap.add_argument("--shapes", default="1x128,32x128")
    ap.add_argument("--train-task", default="mrpc")
    ap.add_argument("--train-limit", type=int, default=256)
    ap.add_argument("--train-rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--glue", default=os.environ.get("ZOO_GLUE_DIR"))
    a = ap.parse_args()
    print(f"CPU: {cpu()}; {a.threads} threads; {a.rounds} rounds per row, the two builds in alternating order, medians\n")
    print("| what | base | new | new/base speed |")
    print("|---|---:|---:|---:|")
    for variant in a.variants.split(","):
        for src in a.sources.split(","):
            kind, value = src.split(":")
            source = ["--weights", value] if kind == "weights" else ["--geometry", value]
            for shape in a.shapes.split(","):
                b, s = map(int, shape.split("x"))
                t = {"base": [], "new": []}
                for order in rounds(a):
                    for name, zoo in order:
                        t[name].append(bench(zoo, variant, source, b, s, a.threads))
                mb, mn = statistics.median(t["base"]), statistics.median(t["new"])
                print(f"| {variant} {os.path.basename(value)} b={b} s={s} (ms) | {mb:.2f} | {mn:.2f} | {mb / mn:.3f} |", flush=True)
    if a.train_limit > 0:
        t = {"base": [], "new": []}
        for order in rounds(a, a.train_rounds):
            for name, zoo in order:
                t[name].append(train(zoo, a.train_task, a.train_limit, a.threads, a.glue))
        mb, mn = statistics.median(t["base"]), statistics.median(t["new"])
        print(f"| finetune minilm-l6 {a.train_task} {a.train_limit} ex. (tokens/s) | {mb:.0f} | {mn:.0f} | {mn / mb:.3f} |")


if __name__ == "__main__":
    main()
