#!/usr/bin/env bash
# `make fleet`: a local two-worker fleet for trying it: its own Redis, one sandbox exchange, and
# `alp-gateway serve --workers 2` on 127.0.0.1:50051 (dev mode). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
REDIS_PORT=${REDIS_PORT:-6399}
SANDBOX_PORT=${SANDBOX_PORT:-8085}
PORT=${PORT:-50051}
command -v redis-server >/dev/null || bash scripts/polyglot_deps.sh
workdir=$(mktemp -d)
cleanup() {
  # shellcheck disable=SC2046  # one pid per word
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$workdir" \
  >"$workdir/redis.log" 2>&1 &
"$BIN/alp-gateway" sandbox --port "$SANDBOX_PORT" &
sleep 1
export ALP_GATEWAY_UPSTREAM_REST_URL="http://127.0.0.1:$SANDBOX_PORT/api/v3"
export ALP_GATEWAY_UPSTREAM_WS_URL="ws://127.0.0.1:$SANDBOX_PORT/ws"
export ALP_GATEWAY_CLUSTER_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export ALP_GATEWAY_ACCOUNT_DEMO_API_KEY=demo-key ALP_GATEWAY_ACCOUNT_DEMO_API_SECRET=demo-secret
export ALP_GATEWAY_AUDIT_PATH="$workdir/audit.jsonl"
"$BIN/alp-gateway" serve --workers 2 --port "$PORT" --dev-mode
