#!/usr/bin/env bash
# Q-BERT accuracy and size: for each task's fp32 fine-tuned checkpoint in $OUT/<task> (made by
# tools/compare_finetune.sh), writes $OUT/<task>-int8 (zoo quantize --method int8) and $OUT/<task>-mixed
# (--method mixed, default budget), evaluates bert, qbert-int8 and qbert-mixed on GLUE dev, and prints
# a Markdown table: dev scores, differences to fp32, and model.safetensors bytes as a fraction of fp32;
# qbert-int8 also with its attention in fp32 (ZOO_BF16_ATTENTION=0; the two differ only on CPUs with
# AVX512_BF16, where the int8 models' attention has bf16 products).
#   tools/compare_quant.sh [TASK ...]     (default: cola sst2 mrpc stsb rte)
set -euo pipefail
cd "$(dirname "$0")/.."
ZOO="${ZOO_BIN:-.build/release/zoo}"
OUT="${OUT:-runs}"
tasks=("$@"); [ ${#tasks[@]} -gt 0 ] || tasks=(cola sst2 mrpc stsb rte)
size() { stat -c %s "$1/model.safetensors"; }
echo "| task | fp32 dev score | qbert-int8 | int8 − fp32 | int8, fp32 attention | int8 size | qbert-mixed | mixed − fp32 | mixed size | mixed bits (embeddings, layers 0-5) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for t in "${tasks[@]}"; do
  [ -f "$OUT/$t/model.safetensors" ] || { echo "$OUT/$t: no fine-tuned checkpoint (run tools/compare_finetune.sh $t)" >&2; continue; }
  [ -f "$OUT/$t-int8/model.safetensors" ] || "$ZOO" quantize --weights "$OUT/$t" --method int8 --out "$OUT/$t-int8" >&2
  [ -f "$OUT/$t-mixed/model.safetensors" ] || "$ZOO" quantize --weights "$OUT/$t" --method mixed --out "$OUT/$t-mixed" >&2
  for v in bert:"$t" qbert-int8:"$t-int8" qbert-mixed:"$t-mixed"; do
    "$ZOO" eval "${v%%:*}" --task "$t" --weights "$OUT/${v#*:}" --json "$OUT/${v#*:}.eval.json" >/dev/null 2>&1
  done
  ZOO_BF16_ATTENTION=0 "$ZOO" eval qbert-int8 --task "$t" --weights "$OUT/$t-int8" --json "$OUT/$t-int8-fp32attention.eval.json" >/dev/null 2>&1
  python3 - "$OUT" "$t" "$(size "$OUT/$t")" "$(size "$OUT/$t-int8")" "$(size "$OUT/$t-mixed")" <<'PYEOF'
import json, sys
out, t, f, i, m = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
s = {k: json.load(open(f"{out}/{t}{k}.eval.json"))["score"] for k in ["", "-int8", "-mixed", "-int8-fp32attention"]}
q = json.load(open(f"{out}/{t}-mixed/config.json"))["quantization"]
units = ["bert.embeddings"] + [f"bert.encoder.layer.{l}" for l in range(6)]
bits = [next((b for p, b in q["bits"].items() if p.startswith(u + ".")), 8) for u in units]
print(f"| {t} | {s['']:.2f} | {s['-int8']:.2f} | {s['-int8'] - s['']:+.2f} | {s['-int8-fp32attention']:.2f} | {i / f:.3f}× | {s['-mixed']:.2f} | {s['-mixed'] - s['']:+.2f} | {m / f:.3f}× | {', '.join(map(str, bits))} |")
PYEOF
done
