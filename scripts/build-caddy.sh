#!/usr/bin/env bash
# Caddy at the version the gateway host runs (assets/images/compose.yaml's caddy image): the front of the
# gateway's LiteLLM instances and the edge, run by the contract tests as the host runs it (Debian's caddy is
# older, and its retries and reloads behave otherwise).
#
#   bash scripts/build-caddy.sh    # prints the binary's path and records it in $CACHE/caddy-bin
#
# `go install` from the Go module proxy, a few minutes cold; a second run builds nothing.
set -euo pipefail

CADDY_VERSION="${CADDY_VERSION:-2.10.2}"
CACHE="${GPU_ESTATE_CACHE:-$HOME/.cache/gpu-estate}"
PREFIX="$CACHE/caddy-v$CADDY_VERSION"
say() { echo "build-caddy: $*" >&2; }
mkdir -p "$PREFIX"

if [ ! -x "$PREFIX/bin/caddy" ]; then
  command -v go >/dev/null || { say "Go is required to build Caddy here"; exit 1; }
  say "building Caddy v$CADDY_VERSION from the Go module proxy (a few minutes cold)"
  start=$(date +%s)
  rm -rf "$PREFIX/bin.tmp"
  GOBIN="$PREFIX/bin.tmp" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go install -trimpath -ldflags "-s -w" "github.com/caddyserver/caddy/v2/cmd/caddy@v$CADDY_VERSION" >&2
  mkdir -p "$PREFIX/bin"
  mv "$PREFIX/bin.tmp/caddy" "$PREFIX/bin/caddy" && rmdir "$PREFIX/bin.tmp"
  say "built in $(( $(date +%s) - start ))s"
fi
echo "$PREFIX/bin/caddy" | tee "$CACHE/caddy-bin"
