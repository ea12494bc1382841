#!/usr/bin/env bash
# fake-gcs-server (github.com/fsouza/fake-gcs-server) at a pinned version: the Google Cloud Storage
# emulator the tests and the sandbox run on 127.0.0.1 (sandbox/gcs.py) so that the estate's gs:// warm
# starts and own models go through Google's own client library against a real GCS JSON API.
#
#   bash scripts/build-fake-gcs.sh    # prints the binary's path and records it in $CACHE/fake-gcs-bin
#
# `go install` from the Go module proxy; a second run with the binary present builds nothing.
set -euo pipefail

FAKE_GCS_VERSION="${FAKE_GCS_VERSION:-1.56.1}"
CACHE="${GPU_ESTATE_CACHE:-$HOME/.cache/gpu-estate}"
PREFIX="$CACHE/fake-gcs-server-v$FAKE_GCS_VERSION"
say() { echo "build-fake-gcs: $*" >&2; }
mkdir -p "$PREFIX"

if [ ! -x "$PREFIX/bin/fake-gcs-server" ]; then
  command -v go >/dev/null || { say "Go is required to build fake-gcs-server here"; exit 1; }
  say "building fake-gcs-server v$FAKE_GCS_VERSION from the Go module proxy"
  start=$(date +%s)
  rm -rf "$PREFIX/bin.tmp"
  GOBIN="$PREFIX/bin.tmp" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go install -trimpath -ldflags "-s -w" \
    "github.com/fsouza/fake-gcs-server@v$FAKE_GCS_VERSION" >&2
  mkdir -p "$PREFIX/bin"
  mv "$PREFIX/bin.tmp/fake-gcs-server" "$PREFIX/bin/fake-gcs-server" && rmdir "$PREFIX/bin.tmp"
  say "built in $(( $(date +%s) - start ))s"
fi
echo "$PREFIX/bin/fake-gcs-server" | tee "$CACHE/fake-gcs-bin"
