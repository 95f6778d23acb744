#!/usr/bin/env python3
"""Issue 12's table: the seed's KD methods distilled from the zoo's own fine-tuned all-MiniLM-L6-v2
teachers (bench/prune_table.py makes them), per recipe: parameters, bytes on disk, speed against the
teacher (`zoo bench`, interleaved, medians, b=1 and b=32 at s=128), dev score per task, mean, % of
the teacher's mean.

    python bench/distill_table.py [--tasks rte,mrpc,stsb,cola,sst2] [--recipes tinybert,distilbert,bert-pkd,bilstm-soft]
                                  [--runs runs] [--rounds 3] [--prepare-only] [--speed-only]
                                  [--distill-args "tinybert: --augment 4"] [--scores-only]

Missing students are made with `zoo distill --teacher <runs>/<task> --recipe R --out <runs>/<task>-R`
(the recipe's defaults; --distill-args adds options per recipe). TinyBERT's general student is made
once from the pre-trained model (`zoo distill --recipe tinybert --general-only --teacher
weights/minilm-l6 --out <runs>/tinybert-general`, the whole default corpus, one epoch) and every
task's student starts from it (`--general`). `tinybert-cut` is TinyBERT with its student cut out of
the teacher (`--student-init teacher`; the `zoo table` row of that name): its general student
(<runs>/tinybert-cut-general, also cut) unless its --distill-args say `--without general`, then
`--epochs 2 --augment 1` as the table runs it. `distilbert-general` is DistilBERT with its general
stage: a general student (`zoo distill --recipe distilbert --general-only`, <runs>/distilbert-general-general)
that each task's student starts from. Prints Markdown and the CPU; writes
<runs>/distill_table.md.
"""
import json, os, statistics, sys

sys.path.insert(0, os.path.dirname(__file__))
from common import cpu, run_logged, side_by_side, table_parser  # noqa: E402
from prune_table import dense_score, finetune_dense  # noqa: E402

# SST-2: its first 20,000 training examples (of 67k), as the pruning table's recovery.
SST2 = ["--limit", "20000"]
CUT = "tinybert-cut"
DG = "distilbert-general"      # DistilBERT with its general stage (cosine on the last states) on the corpus
RECIPE = {CUT: "tinybert", DG: "distilbert"}   # script recipe → zoo distill --recipe


def main():
    ap = table_parser(__doc__)
    ap.add_argument("--recipes", default="tinybert,distilbert,bert-pkd,bilstm-soft")
    ap.add_argument("--distill-args", action="append", default=[], help='"RECIPE: options…", repeatable')
    ap.add_argument("--scores-only", action="store_true", help="no speed runs (the speed columns show —)")
    a = ap.parse_args()
    tasks, recipes = a.tasks.split(","), a.recipes.split(",")
    extra = {r.split(":", 1)[0].strip(): r.split(":", 1)[1].split() for r in a.distill_args}
    extra[CUT] = ["--epochs", "2", "--augment", "1", *extra.get(CUT, [])]
    generals = {"tinybert": [], CUT: ["--student-init", "teacher"], DG: []}   # recipe → options of its general student
    if "general" in [x for i, x in enumerate(extra[CUT][1:]) if extra[CUT][i] == "--without"]:
        del generals[CUT]                                             # task stages only: cut from the fine-tuned teacher
        extra[CUT] += ["--student-init", "teacher"]
    for r, options in generals.items():
        general = os.path.join(a.runs, f"{r}-general")
        if r in recipes and not a.speed_only and not os.path.exists(os.path.join(general, "distill.json")):
            run_logged([a.zoo, "distill", "--teacher", "weights/minilm-l6", "--recipe", RECIPE.get(r, r), "--general-only", "--threads", str(a.threads),
                        "--out", general, "--resume", *options], general + ".log")
    for task in tasks if not a.speed_only else []:
        teacher = finetune_dense(a, task)
        for r in recipes:
            out = os.path.join(a.runs, f"{task}-{r}")
            if not os.path.exists(os.path.join(out, "distill.json")):
                run_logged([a.zoo, "distill", "--teacher", teacher, "--recipe", RECIPE.get(r, r), "--threads", str(a.threads),
                            "--out", out, "--resume", *(SST2 if task == "sst2" else []),
                            *(["--general", os.path.join(a.runs, f"{r}-general")] if r in generals else []), *extra.get(r, [])], out + ".log")
    if a.prepare_only:
        return
    teacher_mean = statistics.mean(dense_score(a, t) for t in tasks)
    lines = [f"CPU: {cpu()}; " + ("dev scores only" if a.scores_only else f"{a.threads} threads; s=128; {a.rounds} rounds per speed, student and teacher interleaved, medians") + "\n",
             "| model | parameters | MB on disk | b=1 speed | b=32 speed | " + " | ".join(tasks) + " | mean | % of teacher |",
             "|---|---:|---:|---:|---:|" + "---:|" * (len(tasks) + 2)]
    first = os.path.join(a.runs, tasks[0])
    size = lambda d: os.path.getsize(os.path.join(d, "model.safetensors")) / 2**20
    teacher_params = json.load(open(os.path.join(a.runs, f"{tasks[0]}-{recipes[0]}", "distill.json")))["parameters_teacher"]
    lines.append(f"| teacher (MiniLM-L6) | {teacher_params} | {size(first):.1f} | 1 | 1 | "
                 + " | ".join(f"{dense_score(a, t):.2f}" for t in tasks) + f" | {teacher_mean:.2f} | 100 |")
    print("\n".join(lines), flush=True)
    for r in recipes:
        runs = [json.load(open(os.path.join(a.runs, f"{t}-{r}", "distill.json"))) for t in tasks]
        student = os.path.join(a.runs, f"{tasks[0]}-{r}")
        speeds = []
        for b in (1, 32) if not a.scores_only else []:
            mt, ms = side_by_side(a.zoo, ("bert", ["--weights", first]), (RECIPE.get(r, r), ["--weights", student]), b, 128, a.threads, a.rounds)
            speeds.append(f"{mt / ms:.2f}×")
        speeds = speeds or ["—", "—"]
        mean = statistics.mean(x["dev"] for x in runs)
        lines.append(f"| {r} | {runs[0]['parameters']} | {size(student):.1f} | {speeds[0]} | {speeds[1]} | "
                     + " | ".join(f"{x['dev']:.2f}" for x in runs) + f" | {mean:.2f} | {100 * mean / teacher_mean:.1f} |")
        print(lines[-1], flush=True)
    with open(os.path.join(a.runs, "distill_table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
