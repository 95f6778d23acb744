#!/usr/bin/env bash
# Fine-tunes all-MiniLM-L6-v2 with zoo and with HF transformers (tools/hf_finetune.py), same recipe
# (lr 5e-5, batch 32, warm-up 10 %, weight decay 0.01, max length 128, seed 42; 3 epochs for SST-2,
# 5 for the rest), and prints both final dev scores side by side as a Markdown table.
#   tools/compare_finetune.sh [TASK ...]     (default: wnli rte mrpc stsb cola sst2)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${ZOO_PYTHON:-${ZOO_CACHE:-$HOME/.cache/zoo}/venv/bin/python}"
ZOO="${ZOO_BIN:-.build/release/zoo}"
OUT="${OUT:-runs}"
mkdir -p "$OUT"
tasks=("$@"); [ ${#tasks[@]} -gt 0 ] || tasks=(wnli rte mrpc stsb cola sst2)
for t in "${tasks[@]}"; do
  epochs=5; [ "$t" = sst2 ] && epochs=3
  [ -f "$OUT/$t/metrics.json" ] || "$ZOO" finetune --base weights/minilm-l6 --task "$t" --epochs $epochs --lr 5e-5 --batch 32 \
      --max-len 128 --warmup 0.1 --weight-decay 0.01 --seed 42 --threads 2 --out "$OUT/$t"
  [ -f "$OUT/$t.hf.json" ] || "$PY" tools/hf_finetune.py --base weights/minilm-l6 --task "$t" --epochs $epochs --threads 2 --out "$OUT/$t.hf.json" >/dev/null
done
"$PY" - "$OUT" "${tasks[@]}" <<'PYEOF'
import json, sys
out, tasks = sys.argv[1], sys.argv[2:]
print("| task | zoo dev score | HF transformers dev score | difference | zoo tokens/s | HF tokens/s |")
print("|---|---:|---:|---:|---:|---:|")
for t in tasks:
    z, h = json.load(open(f"{out}/{t}/metrics.json")), json.load(open(f"{out}/{t}.hf.json"))
    zs, hs = z["epochs"][-1]["score"], h["epochs"][-1]["score"]
    print(f"| {t} | {zs:.2f} | {hs:.2f} | {zs - hs:+.2f} | {z['tokens_per_s']:.0f} | {h['tokens_per_s']:.0f} |")
PYEOF
