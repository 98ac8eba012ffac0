#!/usr/bin/env bash
# Generate Java code with Debian's protoc + grpc_java_plugin and compile the JUnit 5 test with plain
# javac against Debian's jars (Maven Central is not reachable). Prints the classpath to run with.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/.build/java}"
rpc_protos="$2"   # directory holding google/rpc/*.proto (shipped by googleapis-common-protos)
rm -rf "$out/gen" "$out/classes"
mkdir -p "$out/gen" "$out/classes"
/usr/bin/protoc -I "$root/protos" -I "$rpc_protos" --java_out="$out/gen" \
  --plugin=protoc-gen-grpc-java=/usr/bin/grpc_java_plugin --grpc-java_out="$out/gen" \
  "$root"/protos/alp/v3/*.proto "$rpc_protos/google/rpc/status.proto" \
  "$rpc_protos/google/rpc/error_details.proto"
J=/usr/share/java
cp="$J/grpc-api.jar:$J/grpc-core.jar:$J/grpc-stub.jar:$J/grpc-protobuf.jar:$J/grpc-protobuf-lite.jar"
cp="$cp:$J/grpc-netty.jar:$J/grpc-context.jar:$J/protobuf.jar:$J/guava.jar"
for jar in netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-codec-socks netty-common \
    netty-handler netty-handler-proxy netty-resolver netty-transport; do
  cp="$cp:$J/$jar.jar"
done
cp="$cp:$J/perfmark-api.jar:$J/geronimo-annotation-1.3-spec.jar:$J/junit-jupiter-api.jar"
cp="$cp:$J/apiguardian-api.jar:$J/error_prone_annotations.jar"
find "$out/gen" "$here/src" -name '*.java' > "$out/sources.txt"
javac -nowarn -d "$out/classes" -cp "$cp" @"$out/sources.txt" 2>&1 | grep -v "^Note:" || true
test -f "$out/classes/GatewayClientTest.class"
echo "$out/classes:$cp"
