#!/usr/bin/env bash
# Cold start proxy (not part of CI; results in docs/benchmarks.md, "Cold start
# proxy"): for every function binary built in release, the time from process
# start to the first event served and the peak RSS, side by side in one run
# with a minimal Node.js 20 handler doing one DynamoDB GetItem with AWS SDK v3,
# run twice: as `npm install` leaves it and bundled by esbuild (minified, one
# file: what a careful Node engineer deploys); and the floor, a bare
# `lambda_runtime` binary that answers at once (infra/coldstart/hello).
#
#   infra/coldstart.sh [RUNS]        # default 7 runs per function
#   COLDSTART_FUNCTIONS="balance paypal-webhook" infra/coldstart.sh 11   # a subset
#
# What it does: starts an in-memory DynamoDB Local and the VirtFusion and
# PayPal stand-ins on spare ports, creates the table, seeds the DNS plans and
# credits user 1001, then runs infra/coldstart/harness.py, which plays the
# Lambda Runtime API on 127.0.0.1 and starts each binary once per run (see
# its docstring for the method). Events: events/<fn>.*.json (a GET one when
# there is one), else one written by `devstack events`.
#
# Binaries: target/release/<fn> (`cargo build --release --bins`, built here,
# nice'd, when one is missing; COLDSTART_BUILD=1 rebuilds). The release
# profile in effect is printed. Node: infra/coldstart/node (npm ci here).
# Results: .local/coldstart/{table.md,results.json}, logs beside them; the
# chart docs/charts/coldstart.png (infra/charts.py, matplotlib in .venv;
# COLDSTART_CHART=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=infra/lib.sh
source infra/lib.sh
ROOT=$DEVSTACK_ROOT
RUNS=${1:-7}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RELEASE=$TARGET_DIR/release
OUT=$ROOT/.local/coldstart
DDB_PORT=${COLDSTART_DYNAMODB_PORT:-8140}
VF_PORT=${COLDSTART_VIRTFUSION_PORT:-8141}
PP_PORT=${COLDSTART_PAYPAL_PORT:-8142}
# moto: the EventBridge that events-publisher publishes its sample outbox record to.
MOTO_PORT=${COLDSTART_MOTO_PORT:-8143}
mkdir -p "$OUT"
trap stop_started EXIT

if [ -n "${COLDSTART_FUNCTIONS:-}" ]; then
  read -r -a FUNCTIONS <<<"$COLDSTART_FUNCTIONS"
else
  mapfile -t FUNCTIONS < <("$TARGET_DIR/debug/devstack" functions 2>/dev/null || "$RELEASE/devstack" functions)
fi
# Tools (tables, stand-ins, seeding): the debug build when there is one.
TOOLS=$RELEASE
[ -x "$TARGET_DIR/debug/devstack" ] && [ -x "$TARGET_DIR/debug/dns-seed" ] && [ -x "$TARGET_DIR/debug/admin-credits" ] && TOOLS=$TARGET_DIR/debug
missing=()
for fn in "${FUNCTIONS[@]}" coldstart-hello; do
  [ -x "$RELEASE/$fn" ] || missing+=(--bin "$fn")
done
if [ "$TOOLS" = "$RELEASE" ]; then
  for fn in devstack dns-seed admin-credits; do [ -x "$RELEASE/$fn" ] || missing+=(--bin "$fn"); done
fi
if [ "${COLDSTART_BUILD:-0}" = 1 ]; then
  log "cargo build --release --bins (nice'd; slow with fat LTO)"
  nice -n 10 cargo build --release --bins
elif [ ${#missing[@]} -gt 0 ]; then
  log "cargo build --release ${missing[*]} (nice'd; slow with fat LTO)"
  nice -n 10 cargo build --release "${missing[@]}"
fi
log "release profile in effect (Cargo.toml):"
sed -n '/^\[profile.release\]/,/^\[/p' Cargo.toml | grep -v '^\[profile\.[a-z-]*\]$' | grep -v '^$' | sed 's/^/    /' >&2
log "binaries built: $(date -r "$RELEASE/coldstart-hello" "+%F %T")"

ensure_node_deps
if [ ! -d infra/coldstart/node/node_modules/esbuild ]; then
  (cd infra/coldstart/node && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd infra/coldstart/node && npm run --silent bundle >/dev/null 2>&1)

for port in "$DDB_PORT" "$VF_PORT" "$PP_PORT" "$MOTO_PORT"; do
  port_in_use "$port" && { log "port $port is in use (set COLDSTART_*_PORT)"; exit 1; }
done
start_dynamodb_local "$DDB_PORT"
start_moto "$MOTO_PORT"

cat >"$OUT/env" <<EOF
DYNAMODB_ENDPOINT=http://127.0.0.1:$DDB_PORT
BILLING_TABLE=coldstart
BILLING_JWT_SECRET=local-dev-secret
VIRTFUSION_BASE_URL=http://127.0.0.1:$VF_PORT
VIRTFUSION_API_TOKEN=local-virtfusion-token
PAYPAL_BASE_URL=http://127.0.0.1:$PP_PORT
PAYPAL_CLIENT_ID=local-client
PAYPAL_CLIENT_SECRET=local-secret
PAYPAL_WEBHOOK_ID=local-webhook
EVENT_BUS_NAME=default
EVENTBRIDGE_ENDPOINT=http://127.0.0.1:$MOTO_PORT
AWS_REGION=us-east-1
AWS_DEFAULT_REGION=us-east-1
AWS_ACCESS_KEY_ID=local
AWS_SECRET_ACCESS_KEY=local
AWS_SESSION_TOKEN=local
AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128
RUST_LOG=info
EOF
set -a
# shellcheck disable=SC1091
source "$OUT/env"
set +a

"$TOOLS/devstack" tables --endpoint "$DYNAMODB_ENDPOINT" --table "$BILLING_TABLE"
"$TOOLS/dns-seed" --seed-now >"$OUT/seed.log" 2>&1
start_bg "VirtFusion stand-in" "$OUT/virtfusion.log" "$TOOLS/devstack" virtfusion --port "$VF_PORT"
wait_http "$VIRTFUSION_BASE_URL/" 30 "" "$LAST_PID"
start_bg "PayPal stand-in" "$OUT/paypal.log" "$TOOLS/devstack" paypal --port "$PP_PORT" \
  --webhook-target "http://127.0.0.1:9/unused" --state "$OUT/paypal-state.json"
wait_http "$PAYPAL_BASE_URL/" 30 "" "$LAST_PID"

# Events: the repository's, else freshly generated ones (same token secret).
# Either way with fresh tokens: the committed files' fixed ones exceed the
# 24 h maximum lifetime the functions enforce (they would answer 401).
rm -rf "$OUT/events" "$OUT/generated"
mkdir -p "$OUT/events"
USER_TOKEN=$("$TOOLS/devstack" token --sub 1001)
ADMIN_TOKEN=$("$TOOLS/devstack" token --sub 1 --admin)
SERVICE_TOKEN=$("$TOOLS/devstack" token --sub svc-panel --service)
"$TOOLS/devstack" events --out "$OUT/generated" --token "$USER_TOKEN" \
  --admin-token "$ADMIN_TOKEN" --service-token "$SERVICE_TOKEN" >/dev/null
# An event's bearer token replaced by the fresh one for its route (in place).
fresh_token() {
  python3 - "$1" "$USER_TOKEN" "$ADMIN_TOKEN" "$SERVICE_TOKEN" <<'PY'
import json, sys
path, user, admin, service = sys.argv[1:]
with open(path) as f:
    event = json.load(f)
headers = event.get("headers")
if isinstance(headers, dict) and "authorization" in headers:
    route = event.get("rawPath", "")
    token = admin if route.startswith("/api/admin") else service if route.startswith("/api/services") else user
    headers["authorization"] = "Bearer " + token
    with open(path, "w") as f:
        json.dump(event, f, indent=2)
PY
}
pick_event() {
  local fn=$1 dir f
  for dir in events "$OUT/generated"; do
    for f in "$dir/$fn.get.json" "$dir/$fn".*.json "$dir/$fn.json"; do
      [ -f "$f" ] && { echo "$f"; return 0; }
    done
  done
  return 1
}
cases=()
for fn in "${FUNCTIONS[@]}"; do
  src=$(pick_event "$fn") || { log "no event for $fn"; exit 1; }
  # dns-seed answers CloudFormation at ResponseURL: point it back at the harness.
  sed -E 's#"ResponseURL": *"[^"]*"#"ResponseURL": "http://{RUNTIME_API}/cloudformation-response"#' \
    "$src" >"$OUT/events/$fn.json"
  fresh_token "$OUT/events/$fn.json"
  echo "$fn: ${src#"$ROOT"/}" >>"$OUT/events/SOURCES"
  cases+=(--case "$fn|$OUT/events/$fn.json|$RELEASE/$fn")
done
GET_EVENT=$(pick_event balance) || exit 1
cases+=(--case "rust-bare-hello|$GET_EVENT|$RELEASE/coldstart-hello")
cases+=(--case "node20-getitem|$GET_EVENT|$(command -v node) $ROOT/infra/coldstart/node/bootstrap.mjs")
cases+=(--case "node20-getitem-bundled|$GET_EVENT|$(command -v node) $ROOT/infra/coldstart/node/dist/bootstrap.bundle.mjs")

# Give user 1001 an account (so every GetItem finds an item): one credit.
python3 infra/coldstart/harness.py --runs 1 --env-file "$OUT/env" --logs "$OUT/seed" \
  --case "admin-credits|$(pick_event admin-credits.post)|$TOOLS/admin-credits" >/dev/null

LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
log "measuring: $RUNS runs of ${#FUNCTIONS[@]} functions + Node (load: $(cut -d' ' -f1-3 /proc/loadavg))"
python3 infra/coldstart/harness.py --runs "$RUNS" --env-file "$OUT/env" --logs "$OUT/logs" \
  --reference node20-getitem-bundled --floor rust-bare-hello --json "$OUT/results.json" --markdown "$OUT/table.md" "${cases[@]}"
LOAD_AFTER=$(cut -d' ' -f1 /proc/loadavg)
log "load after: $(cut -d' ' -f1-3 /proc/loadavg); table: ${OUT#"$ROOT"/}/table.md"
# The chart (docs/charts/coldstart.png; COLDSTART_CHART=0 skips it).
if [ "${COLDSTART_CHART:-1}" = 1 ]; then
  draw_chart coldstart --json "$OUT/results.json" --out "$ROOT/docs/charts/coldstart.png" \
    --note "load avg $LOAD_BEFORE → $LOAD_AFTER"
fi
