#!/usr/bin/env bash
# The money-conservation simulator (tests/tests/simulator.rs, issue 25) with a
# bigger budget than the test command's: infra/simulate.sh [LIFECYCLES] [SEED].
# An optimised build (profile bench-local: release without fat LTO, quick to
# build); starts its own in-memory DynamoDB Local when DYNAMODB_ENDPOINT is
# unset, and stops it.
# The other SIM_* variables pass through (SIM_WORLD_SIZE, SIM_PARALLEL,
# SIM_SKIP, SIM_AVOID, SIM_SHRINK_RUNS; see the test's header).
#   infra/simulate.sh 10000            # 10,000 lifecycles, a fresh seed
#   infra/simulate.sh 8 1234567        # replay one world of a failure
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=infra/lib.sh
source infra/lib.sh

export SIM_LIFECYCLES=${1:-${SIM_LIFECYCLES:-2000}}
if [ -n "${2:-}" ]; then
  export SIM_SEED=$2
fi

if [ -z "${DYNAMODB_ENDPOINT:-}" ]; then
  ensure_node_deps
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  start_dynamodb_local "$port"
  trap 'stop_started' EXIT
  export DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
fi
echo "== simulator: $SIM_LIFECYCLES lifecycles${SIM_SEED:+, seed $SIM_SEED} against DynamoDB Local at $DYNAMODB_ENDPOINT"
cargo test --profile bench-local -p integration-tests --test simulator -- --nocapture
