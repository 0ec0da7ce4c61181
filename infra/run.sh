#!/usr/bin/env bash
# Starts the whole local stack on this machine, from a fresh clone:
#
#   DynamoDB Local       http://127.0.0.1:8000  (data kept in .local/dynamodb;
#                        skipped when DYNAMODB_ENDPOINT is set: that one is used)
#   VirtFusion stand-in  http://127.0.0.1:8091
#   cargo-lambda emulator http://127.0.0.1:9000 (every function; `cargo lambda invoke` works)
#   local API gateway    http://127.0.0.1:3000  (the routes of template.yaml; GET /health)
#   the billing page     http://127.0.0.1:5173  (web/, built here; its own origin, as
#                        deployed: the gateway allows it through template.yaml's CORS)
#
# Installs what it needs first (npm in infra/, .venv with cargo-lambda), builds
# the workspace, creates the tables and seed data, then prints example tokens
# and a curl command. Ctrl-C stops everything it started. Logs: .local/logs/.
# Reset the local data: stop it, then `rm -rf .local/dynamodb`.
set -euo pipefail
# Started in the background by a non-interactive shell (`infra/run.sh &` in a
# script), bash inherits SIGINT ignored and can then not trap it: restore the
# default so that Ctrl-C / `kill -INT` stops the stack in every case.
sigign=$(awk '/^SigIgn:/ { print $2 }' /proc/$$/status 2>/dev/null || true)
if [ -n "$sigign" ] && (((16#$sigign & 2) != 0)) && [ -z "${DEVSTACK_SIGNALS_RESET:-}" ]; then
  export DEVSTACK_SIGNALS_RESET=1
  exec env --default-signal=INT,QUIT bash "$0" "$@"
fi
cd "$(dirname "$0")/.."
# shellcheck source=infra/lib.sh
source infra/lib.sh
ROOT=$DEVSTACK_ROOT

# The emulator listens on every local address (cargo-lambda's default, `::`)
# so that both the gateway (127.0.0.1) and a bare `cargo lambda invoke`
# (which calls [::1]) reach it; 127.0.0.1 only where there is no IPv6.
if [ -z "${EMULATOR_BIND:-}" ]; then
  if grep -qs ' lo$' /proc/net/if_inet6; then EMULATOR_BIND="::"; else EMULATOR_BIND=127.0.0.1; fi
fi
# DEVSTACK_RELOAD=0: functions are not rebuilt and restarted on code changes.
DEVSTACK_RELOAD=${DEVSTACK_RELOAD:-1}
GATEWAY_PORT=${GATEWAY_PORT:-3000}
EMULATOR_PORT=${EMULATOR_PORT:-9000}
VIRTFUSION_PORT=${VIRTFUSION_PORT:-8091}
PAYPAL_PORT=${PAYPAL_PORT:-8092}
DYNAMODB_PORT=${DYNAMODB_PORT:-8000}
WEB_PORT=${WEB_PORT:-5173}
# WEB=0: no page (API only).
WEB=${WEB:-1}
MOTO_PORT=${MOTO_PORT:-8093}
# Local IAM (docs/reliability.md): the functions reach DynamoDB and moto
# through devstack's proxy, which checks each call against the calling
# function's policy in template.yaml. LOCAL_IAM=off: the proxies check nothing.
DYNAMODB_IAM_PORT=${DYNAMODB_IAM_PORT:-8094}
MOTO_IAM_PORT=${MOTO_IAM_PORT:-8095}
export LOCAL_IAM=${LOCAL_IAM:-enforce}

export BILLING_TABLE=${BILLING_TABLE:-billing}
export BILLING_JWT_SECRET=${BILLING_JWT_SECRET:-local-dev-secret}
export VIRTFUSION_API_TOKEN=${VIRTFUSION_API_TOKEN:-local-virtfusion-token}
export VIRTFUSION_BASE_URL="http://127.0.0.1:$VIRTFUSION_PORT"
export PAYPAL_BASE_URL="http://127.0.0.1:$PAYPAL_PORT"
export PAYPAL_CLIENT_ID=${PAYPAL_CLIENT_ID:-local-client}
export PAYPAL_CLIENT_SECRET=${PAYPAL_CLIENT_SECRET:-local-secret}
export PAYPAL_WEBHOOK_ID=${PAYPAL_WEBHOOK_ID:-local-webhook}
# DynamoDB Local accepts any credentials; never use real ones here.
export AWS_REGION=${AWS_REGION:-us-east-1}
export AWS_ACCESS_KEY_ID=local
export AWS_SECRET_ACCESS_KEY=local
unset AWS_SESSION_TOKEN AWS_PROFILE
export RUST_LOG=${RUST_LOG:-info}

# shellcheck disable=SC2317 # called through trap
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ "${#STARTED_PIDS[@]}" -gt 0 ]; then
    echo >&2
    log "stopping the local stack"
    stop_started
    log "stopped"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
  log "error: $*"
  exit 1
}

# 1. Tools (idempotent).
ensure_curl
ensure_venv
export PATH="$ROOT/.venv/bin:$PATH"
have cargo || fail "cargo not found: install Rust (https://rustup.rs)"
if [ "$WEB" = 1 ]; then
  ensure_web_build || fail "the billing page did not build (web/; WEB=0 skips it)"
fi
ports=("$GATEWAY_PORT" "$EMULATOR_PORT" "$VIRTFUSION_PORT" "$PAYPAL_PORT" "$MOTO_PORT" "$DYNAMODB_IAM_PORT" "$MOTO_IAM_PORT")
if [ "$WEB" = 1 ]; then ports+=("$WEB_PORT"); fi
for port in "${ports[@]}"; do
  if port_in_use "$port"; then
    fail "port $port is already in use (is another local stack running?)"
  fi
done

# 2. DynamoDB.
if [ -n "${DYNAMODB_ENDPOINT:-}" ]; then
  log "using DynamoDB at $DYNAMODB_ENDPOINT"
  wait_http "$DYNAMODB_ENDPOINT" 30 || fail "DYNAMODB_ENDPOINT=$DYNAMODB_ENDPOINT does not answer"
else
  ensure_node_deps
  if port_in_use "$DYNAMODB_PORT"; then
    fail "port $DYNAMODB_PORT is in use; stop what runs there, or set DYNAMODB_ENDPOINT to use it"
  fi
  log "starting DynamoDB Local on :$DYNAMODB_PORT (data in .local/dynamodb)"
  start_dynamodb_local "$DYNAMODB_PORT" "$ROOT/.local/dynamodb" || fail "DynamoDB Local did not start"
  export DYNAMODB_ENDPOINT="http://127.0.0.1:$DYNAMODB_PORT"
fi

# 3. Build every binary once (the emulator then reuses these artifacts).
log "cargo build --workspace --bins"
cargo build --workspace --bins
DEVSTACK="${CARGO_TARGET_DIR:-$ROOT/target}/debug/devstack"
[ -x "$DEVSTACK" ] || fail "$DEVSTACK was not built"

# 4. Tables and seed data.
"$DEVSTACK" tables --endpoint "$DYNAMODB_ENDPOINT" --table "$BILLING_TABLE"
"${CARGO_TARGET_DIR:-$ROOT/target}/debug/dns-seed" --seed-now

# 5. Stand-ins. PayPal's delivers signed webhooks to the local webhook route
# and keeps its orders in .local/ (so they persist between runs).
log "starting the PayPal stand-in on :$PAYPAL_PORT"
start_bg "PayPal stand-in" "$DEVSTACK_LOG_DIR/paypal.log" \
  "$DEVSTACK" paypal --port "$PAYPAL_PORT" --webhook-target "http://127.0.0.1:$GATEWAY_PORT/webhooks/paypal" \
  --state "${PAYPAL_STATE:-$ROOT/.local/paypal-state.json}"
PAYPAL_PID=$LAST_PID
wait_http "$PAYPAL_BASE_URL/" 30 "" "$PAYPAL_PID" || fail "the PayPal stand-in did not start (.local/logs/paypal.log)"

log "starting the VirtFusion stand-in on :$VIRTFUSION_PORT"
start_bg "VirtFusion stand-in" "$DEVSTACK_LOG_DIR/virtfusion.log" \
  "$DEVSTACK" virtfusion --port "$VIRTFUSION_PORT"
VIRTFUSION_PID=$LAST_PID
wait_http "$VIRTFUSION_BASE_URL/" 30 "" "$VIRTFUSION_PID" || fail "the VirtFusion stand-in did not start (.local/logs/virtfusion.log)"

# 5b. moto: the EventBridge API the outbox publisher publishes to.
log "starting moto (EventBridge + SQS API) on :$MOTO_PORT"
start_moto "$MOTO_PORT" || fail "moto did not start (.local/logs/moto-$MOTO_PORT.log)"
EVENTBRIDGE_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
EVENT_BUS_NAME=${EVENT_BUS_NAME:-billing-local}

# 5c. Local IAM: the functions' DynamoDB and moto calls go through devstack's
# proxy, which refuses (AccessDeniedException) what the calling function's
# policy in template.yaml does not allow. Each function signs with its own
# name as access key (LOCAL_IAM_CREDENTIALS=function, shared/config).
log "starting local IAM (LOCAL_IAM=$LOCAL_IAM) for DynamoDB on :$DYNAMODB_IAM_PORT and moto on :$MOTO_IAM_PORT"
start_bg "local IAM (DynamoDB)" "$DEVSTACK_LOG_DIR/iam-dynamodb.log" \
  "$DEVSTACK" faultproxy --port "$DYNAMODB_IAM_PORT" --upstream "$DYNAMODB_ENDPOINT"
DYNAMODB_IAM_PID=$LAST_PID
start_bg "local IAM (moto)" "$DEVSTACK_LOG_DIR/iam-moto.log" \
  "$DEVSTACK" faultproxy --port "$MOTO_IAM_PORT" --upstream "$EVENTBRIDGE_ENDPOINT"
MOTO_IAM_PID=$LAST_PID
wait_http "http://127.0.0.1:$DYNAMODB_IAM_PORT/_faultproxy/stats" 30 200 "$DYNAMODB_IAM_PID" ||
  fail "local IAM for DynamoDB did not start (.local/logs/iam-dynamodb.log)"
wait_http "http://127.0.0.1:$MOTO_IAM_PORT/_faultproxy/stats" 30 200 "$MOTO_IAM_PID" ||
  fail "local IAM for moto did not start (.local/logs/iam-moto.log)"

# 6. The functions, in the cargo-lambda emulator, with their local environment.
FUNCTIONS_ENV="$ROOT/.local/functions.env"
mkdir -p "$ROOT/.local"
cat >"$FUNCTIONS_ENV" <<EOF
DYNAMODB_ENDPOINT=http://127.0.0.1:$DYNAMODB_IAM_PORT
LOCAL_IAM_CREDENTIALS=function
BILLING_TABLE=$BILLING_TABLE
BILLING_JWT_SECRET=$BILLING_JWT_SECRET
VIRTFUSION_BASE_URL=$VIRTFUSION_BASE_URL
VIRTFUSION_API_TOKEN=$VIRTFUSION_API_TOKEN
PAYPAL_BASE_URL=$PAYPAL_BASE_URL
PAYPAL_CLIENT_ID=$PAYPAL_CLIENT_ID
PAYPAL_CLIENT_SECRET=$PAYPAL_CLIENT_SECRET
PAYPAL_WEBHOOK_ID=$PAYPAL_WEBHOOK_ID
AWS_REGION=$AWS_REGION
AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
RUST_LOG=$RUST_LOG
RECONCILE_MAX_CLOCK_SKEW_SECONDS=off
EVENTBRIDGE_ENDPOINT=http://127.0.0.1:$MOTO_IAM_PORT
EVENT_BUS_NAME=$EVENT_BUS_NAME
RENEWAL_MAX_CLOCK_SKEW_SECONDS=off
EOF
log "starting the cargo-lambda emulator on :$EMULATOR_PORT ($("$DEVSTACK" functions | tr '\n' ' '))"
watch_args=(--invoke-address "$EMULATOR_BIND" --invoke-port "$EMULATOR_PORT" --env-file "$FUNCTIONS_ENV")
if [ "$DEVSTACK_RELOAD" = 0 ]; then
  watch_args+=(--ignore-changes)
fi
start_bg "cargo-lambda emulator" "$DEVSTACK_LOG_DIR/emulator.log" cargo lambda watch "${watch_args[@]}"
EMULATOR_PID=$LAST_PID
EMULATOR_URL="http://127.0.0.1:$EMULATOR_PORT"
wait_http "$EMULATOR_URL/" 120 "" "$EMULATOR_PID" || fail "the emulator did not start (.local/logs/emulator.log)"

# 6b. Warm every function: the emulator builds/starts each one at its first
# invocation, which can take a while; do it now so /health means "ready".
# HTTP functions get an empty event (refused before any work); the job gets a
# clock in the past (nothing is due then).
log "warming the functions"
for fn in $("$DEVSTACK" functions); do
  case "$fn" in
    renewal-cron) event='{"time": "2000-01-01T00:00:00Z"}' ;;
    renewal-worker) event='{"Records": []}' ;;
    reconcile-cron) event='{"time": "2000-01-02T00:00:00Z", "detail": {"windowDays": 1}}' ;;
    *) event='{}' ;;
  esac
  curl --noproxy '*' -s -o /dev/null --max-time 300 -X POST \
    "$EMULATOR_URL/2015-03-31/functions/$fn/invocations" -d "$event" || log "warming $fn failed (it starts on first use)"
done

# 7. The local API gateway, with the HttpApi's CORS for the page's origins
# (template.yaml's FrontendOrigin parameter, overridden as a deploy would):
# the address Vite prints (localhost) and the one the page is served on here
# (127.0.0.1), as the template's default allows both.
WEB_ORIGIN="http://127.0.0.1:$WEB_PORT"
log "starting the local API gateway on :$GATEWAY_PORT"
start_bg "local API gateway" "$DEVSTACK_LOG_DIR/gateway.log" \
  "$DEVSTACK" gateway --port "$GATEWAY_PORT" --emulator "$EMULATOR_URL" \
  --parameter "FrontendOrigin=${FRONTEND_ORIGIN:-http://localhost:$WEB_PORT,http://127.0.0.1:$WEB_PORT}" \
  --check "dynamodb=$DYNAMODB_ENDPOINT" --check "virtfusion=$VIRTFUSION_BASE_URL/" --check "paypal=$PAYPAL_BASE_URL/"
GATEWAY_PID=$LAST_PID
API="http://127.0.0.1:$GATEWAY_PORT"
if ! wait_http "$API/health" 120 200 "$GATEWAY_PID"; then
  curl --noproxy '*' -s "$API/health" >&2 || true
  fail "the local stack is not healthy (logs in .local/logs/)"
fi

# 8. The outbox: the table's stream -> events-publisher (as Lambda's event
# source mapping would) -> EventBridge (moto) -> queue billing-events. Every
# published event is printed here and kept in .local/logs/events.log.
log "starting the outbox poller (events are printed below)"
start_bg "outbox poller" "$DEVSTACK_LOG_DIR/events.log" \
  "$DEVSTACK" outbox --table "$BILLING_TABLE" --emulator "$EMULATOR_URL" \
  --eventbridge "$EVENTBRIDGE_ENDPOINT" --bus "$EVENT_BUS_NAME" --queue billing-events
start_bg "events printer" /dev/stdout tail -n +1 -F "$DEVSTACK_LOG_DIR/events.log"

USER_TOKEN=$("$DEVSTACK" token --sub 1001)
ADMIN_TOKEN=$("$DEVSTACK" token --sub 1 --admin)
SERVICE_TOKEN=$("$DEVSTACK" token --sub svc-panel --service)
# The sample events with these tokens (the committed events/ carry fixed ones
# that a token's 24 h maximum lifetime refuses): for `cargo lambda invoke`.
"$DEVSTACK" events --out "$ROOT/.local/events" --token "$USER_TOKEN" \
  --admin-token "$ADMIN_TOKEN" --service-token "$SERVICE_TOKEN" >/dev/null

# 8. The billing page (web/dist), on its own origin; its runtime config
# points it at this API and at the PayPal stand-in's approval page.
PAGE_LINES="  billing page              (WEB=0: not served)"
if [ "$WEB" = 1 ]; then
  WEB_CONFIG="$ROOT/.local/web-config.json"
  printf '{"apiBaseUrl": "%s", "paypal": {"mode": "standin"}}\n' "$API" >"$WEB_CONFIG"
  log "serving the billing page on :$WEB_PORT"
  start_bg "billing page" "$DEVSTACK_LOG_DIR/web.log" \
    "$DEVSTACK" web --port "$WEB_PORT" --dir "$ROOT/web/dist" --config "$WEB_CONFIG"
  wait_http "$WEB_ORIGIN/" 30 200 "$LAST_PID" || fail "the billing page did not start (.local/logs/web.log)"
  PAGE_LINES="  billing page (user 1001)  $WEB_ORIGIN/#token=$USER_TOKEN
  admin console (admin 1)   $WEB_ORIGIN/admin#token=$ADMIN_TOKEN"
fi

cat <<EOF

The local stack is running (Ctrl-C stops it):
  API (local API gateway)   $API          health: $API/health
  Lambda emulator           $EMULATOR_URL   e.g. cargo lambda invoke balance --data-file .local/events/balance.get.json
  DynamoDB                  $DYNAMODB_ENDPOINT   table: $BILLING_TABLE
  VirtFusion stand-in       $VIRTFUSION_BASE_URL   token: $VIRTFUSION_API_TOKEN
  PayPal stand-in           $PAYPAL_BASE_URL   (approveUrl: open it to approve, as a buyer)
  EventBridge (moto)        $EVENTBRIDGE_ENDPOINT   bus: $EVENT_BUS_NAME; events printed here, and in queue billing-events:
                            curl -s $EVENTBRIDGE_ENDPOINT -H 'x-amz-target: AmazonSQS.ReceiveMessage' -H 'content-type: application/x-amz-json-1.0' \\
                              -d '{"QueueUrl": "$EVENTBRIDGE_ENDPOINT/123456789012/billing-events", "MaxNumberOfMessages": 10}'
  logs                      .local/logs/

Open in a browser (the token rides in the URL fragment; buy with the PayPal stand-in's page):
$PAGE_LINES

User token (sub 1001, 24 h):
USER_TOKEN=$USER_TOKEN

Admin token (sub 1, role admin, 24 h):
ADMIN_TOKEN=$ADMIN_TOKEN

Service token (sub svc-panel, role service: the /api/services routes, 24 h):
SERVICE_TOKEN=$SERVICE_TOKEN

Try:
  curl -s -H "authorization: Bearer $USER_TOKEN" $API/api/billing/balance

EOF

# Run until Ctrl-C, or until one of the services dies.
set +e
wait -n "${STARTED_PIDS[@]}"
set -e
for i in "${!STARTED_PIDS[@]}"; do
  if ! kill -0 "${STARTED_PIDS[$i]}" 2>/dev/null; then
    log "${STARTED_NAMES[$i]} exited unexpectedly; see .local/logs/"
  fi
done
exit 1
