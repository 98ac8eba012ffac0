#!/usr/bin/env bash
# Build the Go client in GOPATH mode from the committed protos with Debian's Go gRPC packages.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/.build/go}"
gopath="$out/gopath"
pkg="$gopath/src/alpgateway/gen/go/alp/v3"
rm -rf "$gopath/src/alpgateway"
mkdir -p "$pkg" "$gopath/src/alpclient"
protoc -I "$root/protos" --go_out="$gopath/src" --go_opt=paths=import \
  --go-grpc_out="$gopath/src" --go-grpc_opt=paths=import "$root"/protos/alp/v3/*.proto
cp "$here/main.go" "$gopath/src/alpclient/main.go"
cd "$gopath/src/alpclient"
GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="$out/cache" go build -o "$out/alpclient" .
echo "$out/alpclient"
