#!/usr/bin/env bash
# schemathesis against the local stack, driven by docs/openapi.yaml (called by
# infra/test.sh after `cargo test`; runs on its own too).
#
# Starts infra/run.sh in the background on free ports (DynamoDB: the one in
# DYNAMODB_ENDPOINT, else an in-memory DynamoDB Local started here; a table of
# its own either way), waits for GET /health, then:
#
#   1. every route with a valid user token (sub 1001): admin routes must be 403;
#   2. the admin routes with a valid admin token;
#   3. every /api route with no token, a malformed one, one signed with another
#      secret and an expired one: every answer must be 401/403.
#
# Checks: not_a_server_error (no 5xx), status_code_conformance (every status
# documented), content_type_conformance, response_schema_conformance (every
# body matches), plus auth_is_refused (infra/schemathesis_hooks.py) in run 3.
# Bounded: ST_MAX_EXAMPLES examples per operation (default 50; ST_AUTH_EXAMPLES,
# 10, in the token runs), each run at most ST_RUN_TIMEOUT seconds, and a fixed
# seed (ST_SEED) so a failure can be replayed. Stops the stack when done.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=infra/lib.sh
source infra/lib.sh
ROOT=$DEVSTACK_ROOT

ST_MAX_EXAMPLES=${ST_MAX_EXAMPLES:-50}
ST_SEED=${ST_SEED:-20261125}
# One worker: Hypothesis is not thread-safe everywhere (seen: "AST constructor
# recursion depth mismatch" with 2), and the debug stack is the bottleneck anyway.
ST_WORKERS=${ST_WORKERS:-1}
SPEC="$ROOT/docs/openapi.yaml"
REPORT_DIR="$ROOT/.local/schemathesis"

ensure_schemathesis
ensure_curl

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

export GATEWAY_PORT=${ST_GATEWAY_PORT:-$(free_port)}
export EMULATOR_PORT=${ST_EMULATOR_PORT:-$(free_port)}
export VIRTFUSION_PORT=${ST_VIRTFUSION_PORT:-$(free_port)}
export PAYPAL_PORT=${ST_PAYPAL_PORT:-$(free_port)}
export WEB_PORT=${ST_WEB_PORT:-$(free_port)}
# Only the page's own origin (run.sh allows localhost too by default): the
# browser tests check that another origin (the same page on localhost) is
# refused.
export FRONTEND_ORIGIN=${FRONTEND_ORIGIN:-http://127.0.0.1:$WEB_PORT}
export DYNAMODB_IAM_PORT=$(free_port) MOTO_IAM_PORT=$(free_port)
export DEVSTACK_RELOAD=0
export BILLING_TABLE="schemathesis-$(date +%s)-$$"
export BILLING_JWT_SECRET=${BILLING_JWT_SECRET:-local-dev-secret}
export PAYPAL_STATE="$ROOT/.local/schemathesis/paypal-state.json"
export DEVSTACK_LOG_DIR="$ROOT/.local/logs/schemathesis"
mkdir -p "$REPORT_DIR" "$DEVSTACK_LOG_DIR"
rm -f "$PAYPAL_STATE"

trap 'stop_started' EXIT
if [ -z "${DYNAMODB_ENDPOINT:-}" ]; then
  ensure_node_deps
  port=$(free_port)
  start_dynamodb_local "$port"
  export DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
fi

started=$SECONDS
log "starting the local stack (gateway :$GATEWAY_PORT, DynamoDB $DYNAMODB_ENDPOINT, table $BILLING_TABLE)"
start_bg "local stack" "$DEVSTACK_LOG_DIR/run.log" "$ROOT/infra/run.sh"
STACK_PID=$LAST_PID
API="http://127.0.0.1:$GATEWAY_PORT"
if ! wait_http "$API/health" "${ST_STARTUP_SECONDS:-900}" 200 "$STACK_PID"; then
  tail -n 40 "$DEVSTACK_LOG_DIR/run.log" >&2 || true
  log "the local stack did not become healthy (logs in $DEVSTACK_LOG_DIR)"
  exit 1
fi
log "local stack healthy after $((SECONDS - started)) s"

DEVSTACK="${CARGO_TARGET_DIR:-$ROOT/target}/debug/devstack"
USER_TOKEN=$("$DEVSTACK" token --sub 1001)
ADMIN_TOKEN=$("$DEVSTACK" token --sub 1 --admin)
# An admin token that expired an hour ago, signed with the right secret.
EXPIRED_TOKEN=$(python3 - "$BILLING_JWT_SECRET" <<'EOF'
import base64, hashlib, hmac, json, sys, time
b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = b64(json.dumps({"sub": "1001", "roles": ["admin"], "exp": int(time.time()) - 3600}).encode())
signature = b64(hmac.new(sys.argv[1].encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest())
print(f"{header}.{claims}.{signature}")
EOF
)
FOREIGN_TOKEN=$(BILLING_JWT_SECRET=not-the-secret "$DEVSTACK" token --sub 1001 --admin)

# The user has credits, so purchases get past the balance check sometimes.
curl --noproxy '*' -s -o /dev/null -X POST "$API/api/admin/users/1001/custom-credits" \
  -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
  -d '{"amount": "500.00", "reason": "schemathesis"}'

CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
failed=0

# st NAME [schemathesis run options...] — one run; its JUnit report in .local/schemathesis/.
st() {
  local name=$1
  shift
  local run_started=$SECONDS
  echo "== schemathesis: $name"
  # From .local/schemathesis: schemathesis keeps its crash cache in ./.schemathesis.
  if ! (cd "$REPORT_DIR" && timeout "${ST_RUN_TIMEOUT:-600}" "$ROOT/.venv/bin/schemathesis" run "$SPEC" --url "$API" \
    --seed "$ST_SEED" --workers "$ST_WORKERS" --no-color \
    --generation-database none --request-timeout 30 \
    --report junit --report-junit-path "$REPORT_DIR/$name.xml" \
    "$@"); then
    failed=1
    log "schemathesis run '$name' failed"
  fi
  log "schemathesis run '$name' took $((SECONDS - run_started)) s"
}

st user --checks "$CHECKS" --max-examples "$ST_MAX_EXAMPLES" \
  -H "Authorization: Bearer $USER_TOKEN"
st admin --checks "$CHECKS" --max-examples "$ST_MAX_EXAMPLES" \
  --include-path-regex '^/api/admin/' -H "Authorization: Bearer $ADMIN_TOKEN"

# Refused tokens: any input, every /api route, must answer 401 (403 at most).
export PYTHONPATH="$ROOT/infra${PYTHONPATH:+:$PYTHONPATH}"
export SCHEMATHESIS_HOOKS=schemathesis_hooks
AUTH_CHECKS="auth_is_refused,$CHECKS"
AUTH_EXAMPLES=${ST_AUTH_EXAMPLES:-10}
st no-token --checks "$AUTH_CHECKS" --max-examples "$AUTH_EXAMPLES" \
  --include-path-regex '^/api/' --generation-with-security-parameters false
st garbage-token --checks "$AUTH_CHECKS" --max-examples "$AUTH_EXAMPLES" \
  --include-path-regex '^/api/' -H "Authorization: Bearer not-a.jwt.token"
st foreign-token --checks "$AUTH_CHECKS" --max-examples "$AUTH_EXAMPLES" \
  --include-path-regex '^/api/' -H "Authorization: Bearer $FOREIGN_TOKEN"
st expired-token --checks "$AUTH_CHECKS" --max-examples "$AUTH_EXAMPLES" \
  --include-path-regex '^/api/' -H "Authorization: Bearer $EXPIRED_TOKEN"
unset SCHEMATHESIS_HOOKS

log "schemathesis: $((SECONDS - started)) s in all (stack start included)"

# ST_THEN: a command run against this same stack before it stops (infra/test.sh
# runs the browser tests, infra/e2e.sh, this way: one stack start for both).
if [ -n "${ST_THEN:-}" ]; then
  if ! API="$API" WEB_URL="http://127.0.0.1:$WEB_PORT" $ST_THEN; then
    failed=1
    log "'$ST_THEN' failed"
  fi
fi
if [ "$failed" != 0 ]; then
  log "schemathesis found responses that break docs/openapi.yaml or 5xx (reports: $REPORT_DIR, logs: $DEVSTACK_LOG_DIR)"
  exit 1
fi
