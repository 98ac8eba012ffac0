#!/usr/bin/env bash
# Build the image offline with buildah (no Docker engine and no registry on this machine):
#   1. a wheelhouse of the gateway and its dependencies, built here (`wheels/`, git-ignored);
#   2. if no `python:3.11-slim` image is present, a Debian bookworm base from mmdebstrap
#      (python3, venv, ca-certificates), tagged with that name so the Dockerfile stays unchanged;
#   3. `buildah bud` of the Dockerfile, chroot isolation, vfs storage.
# Needs root and the Debian packages buildah and mmdebstrap (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${TAG:-alp-gateway:dev}
STORAGE=(--storage-driver vfs)
command -v buildah >/dev/null && command -v mmdebstrap >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah mmdebstrap
}
rm -rf wheels && .venv/bin/python -m pip wheel -q . -w wheels
# Debian bookworm's python is 3.11.2: redis-py needs async-timeout below 3.11.3 (this host has
# a newer 3.11, so the resolver above did not fetch it)
.venv/bin/python -m pip wheel -q "async-timeout>=4.0.3" -w wheels
if ! buildah "${STORAGE[@]}" inspect --type image python:3.11-slim >/dev/null 2>&1; then
  work=$(mktemp -d)
  mmdebstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$work/base.tar"
  ctr=$(buildah "${STORAGE[@]}" from scratch)
  buildah "${STORAGE[@]}" add "$ctr" "$work/base.tar" / >/dev/null
  buildah "${STORAGE[@]}" commit -q "$ctr" localhost/debian-python:bookworm >/dev/null
  buildah "${STORAGE[@]}" rm "$ctr" >/dev/null
  buildah "${STORAGE[@]}" tag localhost/debian-python:bookworm python:3.11-slim
  rm -rf "$work"
fi
buildah "${STORAGE[@]}" bud --isolation chroot --pull=never -t "$TAG" .
echo "built $TAG"
