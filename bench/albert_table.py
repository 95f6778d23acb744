#!/usr/bin/env python3
"""Issue 11's ALBERT table: all-MiniLM-L6-v2 fine-tuned per task (as bench/prune_table.py makes it), turned
into an ALBERT by `zoo albertize` (E=128, one shared layer, 2 epochs of recovery against the dense model), GLUE dev scores and
parameter counts; then the shared model's speed against the dense one at equal FLOPs (`zoo bench albert`
vs `zoo bench bert`, random weights of the minilm-l6 and bert-base geometries, runs interleaved, medians).

    python bench/albert_table.py [--tasks rte,mrpc,stsb,cola,sst2] [--runs runs] [--rounds 3]
                                 [--albertize-args "--lr 2e-4"] [--prepare-only] [--speed-only]

Prints Markdown tables and the CPU; writes <runs>/albert_table.md.
"""
import json, os, statistics, sys

sys.path.insert(0, os.path.dirname(__file__))
from common import cpu, run_logged, side_by_side, table_parser  # noqa: E402
from prune_table import SST2_RECOVERY, dense_score, finetune_dense  # noqa: E402


def main():
    ap = table_parser(__doc__)
    ap.add_argument("--recover-epochs", type=int, default=2, help="SST-2: 1 epoch on its first 20,000 examples")
    ap.add_argument("--albertize-args", default="", help='more zoo albertize options, e.g. "--lr 2e-4"')
    a = ap.parse_args()
    tasks = a.tasks.split(",")
    for task in tasks if not a.speed_only else []:
        out = os.path.join(a.runs, f"{task}-albert")
        if not os.path.exists(os.path.join(out, "albertize.json")):
            run_logged([a.zoo, "albertize", "--weights", finetune_dense(a, task), "--embedding-size", "128", "--share", "all",
                        *(SST2_RECOVERY if task == "sst2" else ["--recover-epochs", str(a.recover_epochs)]),
                        *a.albertize_args.split(), "--threads", str(a.threads), "--out", out], out + ".log")
    if a.prepare_only:
        return
    lines = [f"CPU: {cpu()}; {a.threads} threads; s=128; {a.rounds} rounds per speed, interleaved, medians\n",
             "| task | dense dev | parameters | ALBERT dev before recovery | ALBERT dev (drop) | parameters | fewer |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    drops = []
    for task in tasks:
        r = json.load(open(os.path.join(a.runs, f"{task}-albert", "albertize.json")))
        d = dense_score(a, task)
        drops.append(d - r["dev"])
        lines.append(f"| {task} | {d:.2f} | {r['parameters_before']} | {r['dev_before_recovery']:.2f} | {r['dev']:.2f} ({d - r['dev']:+.2f}) | "
                     f"{r['parameters_after']} | {r['parameters_before'] / r['parameters_after']:.2f}× |")
    lines += [f"| mean drop | | | | {statistics.mean(drops):+.2f} | | |", "",
              "| geometry | b | dense bert (ms) | albert, one shared layer (ms) | albert speed |", "|---|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for geometry in ["minilm-l6", "bert-base"]:
        for b in (1, 32):
            md, ma = side_by_side(a.zoo, ("bert", ["--geometry", geometry]), ("albert", ["--geometry", geometry]), b, 128, a.threads, a.rounds)
            lines.append(f"| {geometry} | {b} | {md:.1f} | {ma:.1f} | {md / ma:.3f} |")
            print(lines[-1], flush=True)
    with open(os.path.join(a.runs, "albert_table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
