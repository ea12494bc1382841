#!/usr/bin/env bash
# The CNCF registry (distribution) at a pinned version: the loopback registry the sandbox and the tests
# push the project's own tiny model into and have the estate's model library pull from
# (sandbox/registry.py runs it on 127.0.0.1 only, over HTTP).
#
#   bash scripts/build-registry.sh    # prints the binary's path and records it in $CACHE/registry-bin
#
# `go install` from the Go module proxy, about a minute cold; a second run builds nothing.
set -euo pipefail

REGISTRY_VERSION="${REGISTRY_VERSION:-3.1.2}"
CACHE="${GPU_ESTATE_CACHE:-$HOME/.cache/gpu-estate}"
PREFIX="$CACHE/registry-v$REGISTRY_VERSION"
say() { echo "build-registry: $*" >&2; }
mkdir -p "$PREFIX"

if [ ! -x "$PREFIX/bin/registry" ]; then
  command -v go >/dev/null || { say "Go is required to build the registry here"; exit 1; }
  say "building the CNCF registry v$REGISTRY_VERSION from the Go module proxy (about a minute cold)"
  start=$(date +%s)
  rm -rf "$PREFIX/bin.tmp"
  GOBIN="$PREFIX/bin.tmp" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go install -trimpath -ldflags "-s -w -X github.com/distribution/distribution/v3/version.version=v$REGISTRY_VERSION" \
    "github.com/distribution/distribution/v3/cmd/registry@v$REGISTRY_VERSION" >&2
  mkdir -p "$PREFIX/bin"
  mv "$PREFIX/bin.tmp/registry" "$PREFIX/bin/registry" && rmdir "$PREFIX/bin.tmp"
  say "built in $(( $(date +%s) - start ))s"
fi
echo "$PREFIX/bin/registry" | tee "$CACHE/registry-bin"
