#!/usr/bin/env bash
# Bounded load test of the local stack (not part of CI). Results go to
# docs/benchmarks.md, "Load (local stack)".
#
#   infra/load.sh                      # defaults below
#   LOAD_REQUESTS=4000 LOAD_CONCURRENCY=16 infra/load.sh
#
# Starts infra/run.sh in the background on free ports (functions in the
# cargo-lambda emulator, debug builds, as run.sh builds them) with its own
# table in an in-memory DynamoDB Local (or in DYNAMODB_ENDPOINT), waits for
# /health, then:
#
#   1. wrk (Debian package, installed here if missing), LOAD_WRK_SECONDS each:
#      GET /api/billing/balance and POST admin custom credits, fixed users;
#   2. loadgen (tests/src/bin/loadgen.rs): LOAD_REQUESTS balance reads,
#      LOAD_REQUESTS admin credit adds over LOAD_USERS users and
#      LOAD_PURCHASES DNS purchases (one per fresh, exactly funded user), all
#      at LOAD_CONCURRENCY, with p50/p90/p99 and errors; then the ledger audit
#      of every account touched (loadgen and wrk).
#
# Every loop is bounded in count and time and targets 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=infra/lib.sh
source infra/lib.sh
ROOT=$DEVSTACK_ROOT

LOAD_REQUESTS=${LOAD_REQUESTS:-2000}
LOAD_CONCURRENCY=${LOAD_CONCURRENCY:-8}
LOAD_USERS=${LOAD_USERS:-50}
LOAD_PURCHASES=${LOAD_PURCHASES:-300}
LOAD_WRK_SECONDS=${LOAD_WRK_SECONDS:-20}

ensure_curl
have wrk || ensure_apt_packages wrk

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
export GATEWAY_PORT=${LOAD_GATEWAY_PORT:-$(free_port)}
export EMULATOR_PORT=$(free_port) VIRTFUSION_PORT=$(free_port) PAYPAL_PORT=$(free_port)
export DYNAMODB_IAM_PORT=$(free_port) MOTO_IAM_PORT=$(free_port)
export DEVSTACK_RELOAD=0
export BILLING_TABLE="load-$(date +%s)-$$"
export BILLING_JWT_SECRET=${BILLING_JWT_SECRET:-local-dev-secret}
export PAYPAL_STATE="$ROOT/.local/load/paypal-state.json"
export DEVSTACK_LOG_DIR="$ROOT/.local/logs/load"
mkdir -p "$ROOT/.local/load" "$DEVSTACK_LOG_DIR"
rm -f "$PAYPAL_STATE"
# The stack logs every request; at load, keep the functions' logs to warnings.
export RUST_LOG=${RUST_LOG:-warn}

trap 'stop_started' EXIT
if [ -z "${DYNAMODB_ENDPOINT:-}" ]; then
  ensure_node_deps
  port=$(free_port)
  start_dynamodb_local "$port"
  export DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
fi

log "building loadgen"
cargo build --quiet -p integration-tests --bin loadgen
LOADGEN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/loadgen"

log "starting the local stack (gateway :$GATEWAY_PORT, table $BILLING_TABLE)"
start_bg "local stack" "$DEVSTACK_LOG_DIR/run.log" "$ROOT/infra/run.sh"
API="http://127.0.0.1:$GATEWAY_PORT"
if ! wait_http "$API/health" 900 200 "$LAST_PID"; then
  tail -n 40 "$DEVSTACK_LOG_DIR/run.log" >&2 || true
  exit 1
fi
DEVSTACK="${CARGO_TARGET_DIR:-$ROOT/target}/debug/devstack"

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the numbers)"
echo "== functions: debug builds in the cargo-lambda emulator (infra/run.sh), RUST_LOG=$RUST_LOG"

# 1. wrk: fixed duration, one user (balance) / one target user (admin adds).
WRK_USER="wrk$(date +%s)"
USER_TOKEN=$("$DEVSTACK" token --sub "$WRK_USER")
ADMIN_TOKEN=$("$DEVSTACK" token --sub wrk-admin --admin)
echo "== wrk: GET /api/billing/balance (${LOAD_WRK_SECONDS}s, 2 threads, $LOAD_CONCURRENCY connections)"
wrk -t2 -c"$LOAD_CONCURRENCY" -d"${LOAD_WRK_SECONDS}s" --timeout 30s --latency \
  -H "authorization: Bearer $USER_TOKEN" "$API/api/billing/balance"
echo "== wrk: POST /api/admin/users/$WRK_USER/custom-credits (${LOAD_WRK_SECONDS}s, 2 threads, $LOAD_CONCURRENCY connections)"
wrk -t2 -c"$LOAD_CONCURRENCY" -d"${LOAD_WRK_SECONDS}s" --timeout 30s --latency \
  -s "$ROOT/infra/load-post.lua" \
  -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
  "$API/api/admin/users/$WRK_USER/custom-credits"

# 2. loadgen: fixed counts, percentiles, errors, and the audit.
echo "== loadgen: $LOAD_REQUESTS requests per route at concurrency $LOAD_CONCURRENCY, $LOAD_USERS users, $LOAD_PURCHASES DNS purchases"
status=0
"$LOADGEN" --api "$API" --table "$BILLING_TABLE" --requests "$LOAD_REQUESTS" \
  --concurrency "$LOAD_CONCURRENCY" --users "$LOAD_USERS" --purchases "$LOAD_PURCHASES" \
  --audit-user "$WRK_USER" || status=$?
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
