#!/usr/bin/env bash
# The long fuzzing run behind RELIABILITY.md ("Fuzzing"): every cargo-fuzz
# target for SECONDS (default 600) with AddressSanitizer, JOBS (default 2) at
# a time under `nice`, growing fuzz/corpus/<target>; then each corpus is
# minimized (`cargo fuzz cmin`). One summary line per target (executions,
# coverage, corpus size, crashes) goes to $OUT (default
# fuzz/artifacts/long-run.txt); a crash leaves its input in
# fuzz/artifacts/<target>/ and makes the script exit 1.
#
# Usage: tests/long/fuzz.sh [TARGET...]   (default: every target)
set -uo pipefail
cd "$(dirname "$0")/../.."

secs="${SECONDS_PER_TARGET:-600}"
jobs="${JOBS:-2}"
out="${OUT:-fuzz/artifacts/long-run.txt}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked --quiet cargo-fuzz
export RUSTC_BOOTSTRAP=1 CARGO_INCREMENTAL=0
mkdir -p fuzz/artifacts "$(dirname "$out")"
nice -n 10 cargo fuzz build || exit 1

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)

run_one() {
  local t="$1" log="fuzz/artifacts/$1.log"
  mkdir -p "fuzz/corpus/$t"
  local before; before=$(ls "fuzz/corpus/$t" | wc -l)
  nice -n 10 cargo fuzz run "$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1
  local rc=$?
  local execs cov
  execs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$")
  cov=$(grep -E "^#[0-9]+" "$log" | grep -oE "cov: [0-9]+" | tail -1)
  echo "$t rc=$rc seconds=$secs executions=${execs:-?} ${cov:-cov: ?} corpus_before=$before corpus_after=$(ls "fuzz/corpus/$t" | wc -l)"
}

: >"$out"
status=0
i=0
for t in "${targets[@]}"; do
  run_one "$t" >>"$out" &
  i=$((i + 1))
  if [ $((i % jobs)) -eq 0 ]; then wait; fi
done
wait
for t in "${targets[@]}"; do
  nice -n 10 cargo fuzz cmin "$t" >"fuzz/artifacts/$t.cmin.log" 2>&1 || status=1
  echo "$t minimized: $(ls "fuzz/corpus/$t" | wc -l) inputs, $(du -sk "fuzz/corpus/$t" | cut -f1) KiB" >>"$out"
done
grep -q "rc=[^0]" "$out" && status=1
cat "$out"
exit "$status"
