#!/usr/bin/env bash
# Install what the Go, Node and Java consumer tests need, idempotently (a second run only checks).
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
command -v go >/dev/null || need_apt+=(golang-go)
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v protoc-gen-go >/dev/null || need_apt+=(protoc-gen-go)
command -v protoc-gen-go-grpc >/dev/null || need_apt+=(protoc-gen-go-grpc)
[ -d /usr/share/gocode/src/google.golang.org/grpc ] || need_apt+=(golang-google-grpc-dev)
[ -d /usr/share/gocode/src/github.com/golang/protobuf ] || need_apt+=(golang-github-golang-protobuf-1-5-dev)
[ -d /usr/share/gocode/src/google.golang.org/protobuf ] || need_apt+=(golang-google-protobuf-dev)
command -v node >/dev/null || need_apt+=(nodejs npm)
command -v javac >/dev/null || need_apt+=(default-jdk-headless)
command -v grpc_java_plugin >/dev/null || need_apt+=(protobuf-compiler-grpc-java-plugin)
for jar in grpc-api grpc-netty protobuf netty-transport netty-codec-http2 perfmark-api guava geronimo-annotation-1.3-spec \
    junit-platform-console-standalone; do
  [ -f "/usr/share/java/$jar.jar" ] || { need_apt+=(libgrpc-java libprotobuf-java libnetty-java \
    libperfmark-java libguava-java libgeronimo-annotation-1.3-spec-java junit5); break; }
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
if [ ! -d clients/node/node_modules/@grpc/grpc-js ] || [ clients/node/package-lock.json -nt clients/node/node_modules ]; then
  (cd clients/node && npm ci --no-audit --no-fund --loglevel=error && touch node_modules)
fi
# the fleet tests (tests/cluster) start their own redis-server on a free port
if ! command -v redis-server >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server
fi
# promtool lints /metrics (tests/gateway/test_metrics_names.py): only that binary is taken from
# Debian's prometheus package, whose installation would also start a Prometheus server
if ! command -v promtool >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  promtool_tmp="$(mktemp -d)"
  chmod 1777 "$promtool_tmp"  # apt downloads as its own user, _apt
  (cd "$promtool_tmp" && apt-get download -qq prometheus && dpkg-deb -x prometheus_*.deb root)
  $SUDO install -m 0755 "$promtool_tmp/root/usr/bin/promtool" /usr/local/bin/promtool
  rm -rf "$promtool_tmp"
fi
