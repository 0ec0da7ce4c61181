#!/usr/bin/env bash
# Browser tests of the billing page (web/e2e/run.mjs): playwright-core driving
# Debian's chromium against the local stack.
#
# With API and WEB_URL set (infra/test.sh runs it through schemathesis.sh's
# ST_THEN, on the stack that script started), it tests that stack. Without
# them it builds the page and starts its own stack the same way
# (infra/run.sh on free ports, its own table), then stops it.
# E2E_SCREENSHOT_DIR=docs/screenshots refreshes the README's screenshots
# (default: .local/e2e/).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=infra/lib.sh
source infra/lib.sh
ROOT=$DEVSTACK_ROOT

ensure_chromium
ensure_web_build
export BILLING_JWT_SECRET=${BILLING_JWT_SECRET:-local-dev-secret}

if [ -z "${API:-}" ] || [ -z "${WEB_URL:-}" ]; then
  free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  }
  export GATEWAY_PORT=$(free_port) EMULATOR_PORT=$(free_port) VIRTFUSION_PORT=$(free_port)
  export PAYPAL_PORT=$(free_port) WEB_PORT=$(free_port)
  export DYNAMODB_IAM_PORT=$(free_port) MOTO_IAM_PORT=$(free_port)
  export DEVSTACK_RELOAD=0
  export BILLING_TABLE="e2e-$(date +%s)-$$"
  export PAYPAL_STATE="$ROOT/.local/e2e/paypal-state.json"
  export DEVSTACK_LOG_DIR="$ROOT/.local/logs/e2e"
  mkdir -p "$DEVSTACK_LOG_DIR" "$ROOT/.local/e2e"
  rm -f "$PAYPAL_STATE"
  trap 'stop_started' EXIT
  if [ -z "${DYNAMODB_ENDPOINT:-}" ]; then
    ensure_node_deps
    port=$(free_port)
    start_dynamodb_local "$port"
    export DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
  fi
  start_bg "local stack" "$DEVSTACK_LOG_DIR/run.log" "$ROOT/infra/run.sh"
  API="http://127.0.0.1:$GATEWAY_PORT"
  WEB_URL="http://127.0.0.1:$WEB_PORT"
  if ! wait_http "$API/health" "${E2E_STARTUP_SECONDS:-900}" 200 "$LAST_PID" \
    || ! wait_http "$WEB_URL/" 60 200 "$LAST_PID"; then
    tail -n 40 "$DEVSTACK_LOG_DIR/run.log" >&2 || true
    exit 1
  fi
fi

started=$SECONDS
echo "== browser tests (chromium) against $WEB_URL (API $API)"
API="$API" WEB_URL="$WEB_URL" E2E_OUT="${E2E_SCREENSHOT_DIR:-$ROOT/.local/e2e}" \
  CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}" node "$ROOT/web/e2e/run.mjs"
log "browser tests took $((SECONDS - started)) s"
