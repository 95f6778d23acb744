#!/usr/bin/env bash
# Runs the libFuzzer harness (Tests/fuzz, README "Fuzzing") over each target, one at a time, one worker.
#   tools/fuzz.sh smoke [TARGET…]   FUZZ_RUNS executions per target (default 20000)
#   tools/fuzz.sh long  [TARGET…]   FUZZ_RUNS executions (default 10 million) or FUZZ_TIME seconds
#                                   (default 600) per target, whichever comes first
# Each target starts from its committed seeds (Tests/fuzz/corpus/<target>) plus what earlier runs
# found (.cache/fuzz/<target>, never committed), with its dictionary (Tests/fuzz/dict/<target>.dict)
# if it has one. A crash, trap, leak, timeout or out-of-memory stops the run with status 1; the input
# is saved as runs/fuzz/<target>-crash-… (or -leak-, -timeout-, …).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: tools/fuzz.sh smoke|long [TARGET…]}; shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors config vocab tokenizer glue predictions qcheckpoint corpus onnx)
bin=.build/fuzz/release/zoo-fuzz
[ -x "$bin" ] || { echo "$bin missing: run make fuzz-build" >&2; exit 1; }
mkdir -p runs/fuzz
case $mode in
  smoke) limit=(-runs="${FUZZ_RUNS:-20000}") ;;
  long) limit=(-runs="${FUZZ_RUNS:-10000000}" -max_total_time="${FUZZ_TIME:-600}") ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
status=0
for t in "${targets[@]}"; do
  work=.cache/fuzz/$t
  mkdir -p "$work"
  log=runs/fuzz/$mode-$t.log
  dict=(); [ -f "Tests/fuzz/dict/$t.dict" ] && dict=(-dict="Tests/fuzz/dict/$t.dict")
  # -timeout: one input may take 10 s at most (a hang); -rss_limit_mb / -malloc_limit_mb: an input
  # that makes a parser allocate more than 2 GB is a finding too.
  maxlen=16384; [ "$t" = onnx ] && maxlen=65536   # the ONNX seed is a 39 KB export
  if ZOO_FUZZ_TARGET=$t "$bin" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -max_len=$maxlen \
       -print_final_stats=1 -artifact_prefix="runs/fuzz/$t-" "${dict[@]}" "$work" "Tests/fuzz/corpus/$t" >"$log" 2>&1; then
    result=ok
  elif grep -q 'libFuzzer: run interrupted' "$log"; then
    result=stopped; status=1   # SIGINT: no finding, but the run did not finish
  else
    result=FAILED; status=1
  fi
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
  [ -n "$done_line" ] || done_line=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: //p' "$log")
  speed=$(sed -n 's/^stat::average_exec_per_sec: //p' "$log")
  printf '%-12s %-6s execs %-10s exec/s %-7s %s\n' "$t" "$result" "${execs:-?}" "${speed:-?}" \
    "$(grep -oE 'cov: [0-9]+ ft: [0-9]+' <<<"$done_line" || true)" | tee -a "runs/fuzz/$mode-summary.txt"
  if [ $result = FAILED ]; then grep -E 'ERROR|Fatal error|SUMMARY|artifact|Test unit written' "$log" | head -20 >&2 || true; fi
done
exit $status
