#!/usr/bin/env bash
# Install what the benchmarks need beyond the Python packages, idempotently (a second run only checks):
# h2load (Debian nghttp2-client) drives gRPC unary calls in bench/fleet_unary_h2load.py; redis-server
# runs the fleet benchmarks' Redis (bench/fleet*.py).
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
command -v redis-server >/dev/null || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
