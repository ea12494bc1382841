#!/usr/bin/env bash
# Fly.io's own Go client (github.com/superfly/fly-go's flaps package, the Machines API client flyctl uses)
# at a pinned version, in a tiny program (tests/contract/fly_client) the contract test drives against the
# loopback Fly Machines API (loopback/fly.py).
#
#   bash scripts/build-fly-client.sh   # prints the binary's path and records it in $CACHE/fly-client-bin
#
# Built from the Go module proxy with the pins of tests/contract/fly_client/go.mod and go.sum (fly-go
# v0.1.55; golang.org/x/tools raised to v0.38.0, as v0.24.0, which fly-go asks for, no longer compiles
# with Go 1.26). About a minute cold; a second run with the binary present builds nothing.
set -euo pipefail

FLY_GO_VERSION="0.1.55"
CACHE="${GPU_ESTATE_CACHE:-$HOME/.cache/gpu-estate}"
PREFIX="$CACHE/fly-client-v$FLY_GO_VERSION"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SRC="$ROOT/tests/contract/fly_client"
say() { echo "build-fly-client: $*" >&2; }
grep -q "github.com/superfly/fly-go v$FLY_GO_VERSION" "$SRC/go.mod" || { say "go.mod does not pin fly-go v$FLY_GO_VERSION"; exit 1; }
# The binary is rebuilt when the program or its pins change.
STAMP="$(cat "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" | sha256sum | cut -c1-12)"
BIN="$PREFIX/bin/fly-client-$STAMP"
mkdir -p "$PREFIX/bin"

if [ ! -x "$BIN" ]; then
  command -v go >/dev/null || { say "Go is required to build fly-go's client here"; exit 1; }
  say "building fly-go v$FLY_GO_VERSION's client from the Go module proxy (about a minute cold)"
  start=$(date +%s)
  (cd "$SRC" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" .)
  mv "$BIN.tmp" "$BIN"
  say "built in $(( $(date +%s) - start ))s"
fi
echo "$BIN" | tee "$CACHE/fly-client-bin"
