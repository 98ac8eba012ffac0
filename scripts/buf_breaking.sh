#!/usr/bin/env bash
# `buf breaking` for protos/ against the previous commit of main (skipped when there is none with protos).
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=.venv/bin/buf
if ! git rev-parse --verify -q HEAD~1 >/dev/null 2>&1; then
  echo "buf breaking: no previous commit (shallow clone or first commit); skipped"
  exit 0
fi
if ! git cat-file -e HEAD~1:buf.yaml 2>/dev/null || ! git cat-file -e HEAD~1:protos 2>/dev/null; then
  echo "buf breaking: previous commit has no buf module; skipped"
  exit 0
fi
"$BUF" breaking --against ".git#ref=HEAD~1"
echo "buf breaking: no breaking change against HEAD~1"
