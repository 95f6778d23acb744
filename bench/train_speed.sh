#!/usr/bin/env bash
# Training throughput, zoo against PyTorch (HF transformers), same model, recipe and threads, one
# after the other in this script: fine-tunes all-MiniLM-L6-v2 for one epoch on the first N examples
# of a task (default: 1024 of SST-2) and prints both tokens/s (real tokens, padding excluded) and
# the ratio.   bench/train_speed.sh [TASK] [N] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
task=${1:-sst2}; n=${2:-1024}; threads=${3:-2}
PY="${ZOO_PYTHON:-${ZOO_CACHE:-$HOME/.cache/zoo}/venv/bin/python}"
ZOO="${ZOO_BIN:-.build/release/zoo}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# ZOO_SIMD=avx2 (an AVX2-only CPU imitated on an AVX-512 one) caps PyTorch's kernels to AVX2 as well.
if [[ "${ZOO_SIMD:-}" == avx2 ]]; then export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2; fi
"$ZOO" bench bert --geometry tinybert-4l --batch 1 --seq 8 --iters 1 --json | "$PY" -c 'import json, sys; print("CPU:", json.load(sys.stdin)["cpu"])'
"$ZOO" finetune --base weights/minilm-l6 --task "$task" --epochs 1 --limit "$n" --threads "$threads" --save-every 0 --out "$tmp/zoo" 2>/dev/null
"$PY" tools/hf_finetune.py --base weights/minilm-l6 --task "$task" --epochs 1 --limit "$n" --threads "$threads" --no-eval --out "$tmp/hf.json" >/dev/null 2>&1
"$PY" - "$tmp" "$task" "$n" "$threads" <<'PYEOF'
import json, sys
tmp, task, n, threads = sys.argv[1:]
z = json.load(open(f"{tmp}/zoo/metrics.json"))["tokens_per_s"]
h = json.load(open(f"{tmp}/hf.json"))["tokens_per_s"]
print(f"training all-MiniLM-L6-v2 on {n} {task} examples, batch 32, {threads} threads: zoo {z:.0f} tokens/s, PyTorch {h:.0f} tokens/s, zoo/PyTorch {z / h:.2f}")
PYEOF
