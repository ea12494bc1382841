#!/usr/bin/env bash
# Builds the pinned Pulumi CLI from the Go module proxy into a cache outside the clone, and installs
# next to it the Python plugins the engine looks up on PATH: the language host, its program runner,
# and the dynamic-provider host (scripts/ in this repository).
# The upstream Go language host is a separate module with no tags that the proxy here does not serve
# at any version, so the project ships its own host over the SDK's gRPC stubs instead.
# Prints the bin directory on success. A second run with the cache present does nothing.
set -euo pipefail

PULUMI_VERSION="${PULUMI_VERSION:-3.259.0}"
CACHE="${GPU_ESTATE_CACHE:-$HOME/.cache/gpu-estate}"
PREFIX="$CACHE/pulumi-v$PULUMI_VERSION"
BIN="$PREFIX/bin"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

PLUGINS=(pulumi-language-python language_host.py pulumi-language-python-exec pulumi-resource-pulumi-python)
install_plugins() { for p in "${PLUGINS[@]}"; do install -m 0755 "$HERE/$p" "$BIN/$p"; done; }

if [ -x "$BIN/pulumi" ]; then
  install_plugins
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "build-pulumi: Go is required to build the Pulumi CLI" >&2; exit 1; }

SRC="$PREFIX/src"
mkdir -p "$SRC" "$BIN"
cd "$SRC"
export GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=mod"
export CGO_ENABLED=0
if [ ! -f go.mod ]; then
  go mod init gpu-estate.local/pulumi-build >&2
fi
# pkg/go.mod carries replace directives, so `go install pkg@version` refuses; requiring it from a
# module of our own (as a tool) resolves the same versions without the replaces.
go get -tool "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@v$PULUMI_VERSION" >&2
go get "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" >&2

LDFLAGS="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION"
go build -trimpath -tags osusergo,grpcnotrace -ldflags "$LDFLAGS" -o "$BIN/pulumi.tmp" \
  github.com/pulumi/pulumi/pkg/v3/cmd/pulumi >&2
mv "$BIN/pulumi.tmp" "$BIN/pulumi"
install_plugins
echo "$BIN"
