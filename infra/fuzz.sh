#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ (libFuzzer) for a bounded time each.
# Not part of CI: a manual reliability check (results in docs/reliability.md,
# "Fuzzing").
#
#   infra/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    # default 120 s, all targets
#
# Targets: money, request_body, webhook, jwt (`ls fuzz/fuzz_targets`).
# Corpus: fuzz/corpus/<target> (grows run to run; seeds in fuzz/seeds/<target>).
# Crashes: fuzz/artifacts/<target>/crash-*; replay one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -a <target> fuzz/artifacts/<target>/crash-...
# and turn it into a unit test next to the code it broke. Logs: .local/fuzz/.
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=...); on the stable
# toolchain they work with RUSTC_BOOTSTRAP=1, set here. FUZZ_SANITIZER picks
# the sanitizer (default address; `none` runs about twice as fast).
# Exit status: 0 when no target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

seconds=${1:-120}
shift || true
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-address}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

logdir="$ROOT/.local/fuzz"
mkdir -p "$logdir"
# -a: debug assertions and overflow checks on (an overflow is a finding too).
if [ "$#" -gt 0 ]; then
  for t in "${targets[@]}"; do (cd fuzz && cargo fuzz build -a -s "$sanitizer" "$t"); done
else
  (cd fuzz && cargo fuzz build -a -s "$sanitizer")
fi

failed=()
printf '%-14s %8s %12s %10s %6s %6s %8s %s\n' target seconds execs exec/s cov ft corpus result
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="$logdir/$t.log"
  status=0
  (cd fuzz && cargo fuzz run -a -s "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1) \
    >"$log" 2>&1 || status=$?
  execs=$(awk '/stat::number_of_executed_units/ { print $NF }' "$log" | tail -n 1)
  rate=$(awk '/stat::average_exec_per_sec/ { print $NF }' "$log" | tail -n 1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$last")
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    result="CRASH (exit $status; $log; fuzz/artifacts/$t/)"
    failed+=("$t")
  fi
  printf '%-14s %8s %12s %10s %6s %6s %8s %s\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "crashed: ${failed[*]}" >&2
  exit 1
fi
