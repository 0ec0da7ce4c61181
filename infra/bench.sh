#!/usr/bin/env bash
# Benchmarks: starts an in-memory DynamoDB Local on a free port (unless
# DYNAMODB_ENDPOINT is set) and runs the ledger bench in an optimised build.
# Paste its Markdown output into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=infra/lib.sh
source infra/lib.sh
ensure_node_deps
if [ -z "${DYNAMODB_ENDPOINT:-}" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  start_dynamodb_local "$port"
  trap 'stop_started' EXIT
  export DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
fi
# `./infra/bench.sh reconcile`: the reconciliation bench instead of the ledger's.
# `./infra/bench.sh hot`: one hot account, before/after backoff side by side.
# `./infra/bench.sh hot-sweep`: one hot account, the default backoff at 1, 2, 4
# … 64 writers (HOT_SWEEP_WRITERS, HOT_SWEEP_CHANGES, default 400 each), then
# its chart docs/charts/hot_sweep.png.
# `./infra/bench.sh renewal-scale`: the renewal job fanned out over N workers
# (RENEWAL_SCALE_SUBS, default 100000; RENEWAL_SCALE_WORKERS, default 1,2,4,8),
# then its chart docs/charts/renewal_scale.png.
# JSON results go to .local/bench/ (BENCH_OUT_DIR); BENCH_CHART=0 skips charts.
export BENCH_OUT_DIR="${BENCH_OUT_DIR:-$DEVSTACK_ROOT/.local/bench}"
chart() {
  [ "${BENCH_CHART:-1}" = 1 ] || return 0
  draw_chart "$1" --json "$BENCH_OUT_DIR/$2.json" --out "$DEVSTACK_ROOT/docs/charts/$2.png"
}
case "${1:-ledger}" in
  reconcile) cargo run --quiet -p ledger-bench --bin reconcile --profile bench-local ;;
  hot) cargo run --quiet -p ledger-bench --bin hot --profile bench-local ;;
  hot-sweep)
    cargo run --quiet -p ledger-bench --bin hot --profile bench-local -- sweep
    chart hot-sweep hot_sweep
    ;;
  renewal-scale)
    cargo run --quiet -p ledger-bench --bin renewal_scale --profile bench-local
    chart renewal-scale renewal_scale
    ;;
  *) cargo run --quiet -p ledger-bench --profile bench-local ;;
esac
