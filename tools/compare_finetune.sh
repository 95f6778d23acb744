#!/usr/bin/env bash
# Fine-tunes all-MiniLM-L6-v2 with zoo and with HF transformers (tools/hf_finetune.py), same recipe
# (lr 5e-5, batch 32, warm-up 10 %, weight decay 0.01, max length 128; 3 epochs for SST-2, 5 for the
# rest), once per seed, and prints the final dev scores of both sides as a Markdown table: each seed's
# score, the mean over seeds per side, and the difference of the means.
#   [SEEDS="42 1 2"] tools/compare_finetune.sh [TASK ...]     (default: seed 42; wnli rte mrpc stsb cola sst2)
# Runs land in $OUT/<task> and $OUT/<task>.hf.json for seed 42, $OUT/<task>-seed<S>[.hf.json] for
# others; a run whose output exists is not repeated.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${ZOO_PYTHON:-${ZOO_CACHE:-$HOME/.cache/zoo}/venv/bin/python}"
ZOO="${ZOO_BIN:-.build/release/zoo}"
OUT="${OUT:-runs}"
SEEDS="${SEEDS:-42}"
mkdir -p "$OUT"
tasks=("$@"); [ ${#tasks[@]} -gt 0 ] || tasks=(wnli rte mrpc stsb cola sst2)
run() { [ "$2" = 42 ] && echo "$OUT/$1" || echo "$OUT/$1-seed$2"; }
for t in "${tasks[@]}"; do
  epochs=5; [ "$t" = sst2 ] && epochs=3
  for s in $SEEDS; do
    r=$(run "$t" "$s")
    [ -f "$r/metrics.json" ] || "$ZOO" finetune --base weights/minilm-l6 --task "$t" --epochs $epochs --lr 5e-5 --batch 32 \
        --max-len 128 --warmup 0.1 --weight-decay 0.01 --seed "$s" --threads 2 --out "$r"
    [ -f "$r.hf.json" ] || "$PY" tools/hf_finetune.py --base weights/minilm-l6 --task "$t" --epochs $epochs --seed "$s" \
        --threads 2 --out "$r.hf.json" >/dev/null
  done
done
"$PY" - "$OUT" "$SEEDS" "${tasks[@]}" <<'PYEOF'
import json, statistics, sys
out, seeds, tasks = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
run = lambda t, s: f"{out}/{t}" if s == "42" else f"{out}/{t}-seed{s}"
final = lambda path: json.load(open(path))["epochs"][-1]["score"]
fmt = lambda xs: " / ".join(f"{x:.2f}" for x in xs)
print(f"| task | zoo, seeds {', '.join(seeds)} | HF transformers, same seeds | zoo mean | HF mean | difference |")
print("|---|---:|---:|---:|---:|---:|")
for t in tasks:
    z = [final(f"{run(t, s)}/metrics.json") for s in seeds]
    h = [final(f"{run(t, s)}.hf.json") for s in seeds]
    zm, hm = statistics.mean(z), statistics.mean(h)
    print(f"| {t} | {fmt(z)} | {fmt(h)} | {zm:.2f} | {hm:.2f} | {zm - hm:+.2f} |")
PYEOF
