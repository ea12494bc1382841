#!/usr/bin/env bash
# The real Ollama server at a pinned version, for the sandbox's VM node (its image is made from this
# binary by scripts/build-sandbox-image.sh) and for the tests that hold the loopback Ollama to it.
#
#   bash scripts/build-ollama.sh      # prints the binary's path and records it in $CACHE/ollama-bin
#
# Built from its Go module with cgo (the CPU backend): `go install github.com/ollama/ollama@v$VERSION`.
# Go module zips leave out every directory named `vendor`, so three of llama.cpp's vendored headers
# come from elsewhere: nlohmann/json (Debian nlohmann-json3-dev) and stb_image (Debian libstb-dev), both
# found under /usr/include as llama.cpp includes them, and miniaudio.h, which no Debian package here
# has, from the PyPI sdist of `miniaudio` (it carries the header under miniaudio-<v>/miniaudio/).
# About 2 minutes once the module cache is filled; a second run with the binary present builds nothing.
set -euo pipefail

OLLAMA_VERSION="${OLLAMA_VERSION:-0.17.4}"
MINIAUDIO_VERSION="1.71"
CACHE="${GPU_ESTATE_CACHE:-$HOME/.cache/gpu-estate}"
PREFIX="$CACHE/ollama-v$OLLAMA_VERSION"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
say() { echo "build-ollama: $*" >&2; }
mkdir -p "$PREFIX/bin"

if [ ! -x "$PREFIX/bin/ollama" ]; then
  command -v go >/dev/null || { say "Go is required to build Ollama here"; exit 1; }
  for header in /usr/include/nlohmann/json.hpp /usr/include/stb/stb_image.h; do
    [ -f "$header" ] || { say "$header is missing (scripts/install-tools.sh installs nlohmann-json3-dev, libstb-dev)"; exit 1; }
  done
  command -v g++ >/dev/null || { say "g++ is missing (scripts/install-tools.sh installs it)"; exit 1; }
  AUDIO="$PREFIX/miniaudio-$MINIAUDIO_VERSION"
  if [ ! -f "$AUDIO/miniaudio/miniaudio.h" ]; then
    PY="$ROOT/.venv/bin/python"
    [ -x "$PY" ] || PY=python3
    rm -rf "$PREFIX/sdist" && mkdir -p "$PREFIX/sdist"
    "$PY" -m pip download -q --no-deps --no-binary :all: -d "$PREFIX/sdist" "miniaudio==$MINIAUDIO_VERSION" >&2
    tar -C "$PREFIX" -xzf "$PREFIX/sdist/miniaudio-$MINIAUDIO_VERSION.tar.gz" "miniaudio-$MINIAUDIO_VERSION/miniaudio"
  fi
  say "building Ollama v$OLLAMA_VERSION from the Go module proxy (about 2 minutes once its modules are cached)"
  start=$(date +%s)
  GOBIN="$PREFIX/bin.tmp" CGO_ENABLED=1 CGO_CPPFLAGS="-I$AUDIO" GOFLAGS=-buildvcs=false \
    go install -trimpath -ldflags "-s -w -X github.com/ollama/ollama/version.Version=$OLLAMA_VERSION" \
    "github.com/ollama/ollama@v$OLLAMA_VERSION" >&2
  mv "$PREFIX/bin.tmp/ollama" "$PREFIX/bin/ollama" && rmdir "$PREFIX/bin.tmp"
  say "built in $(( $(date +%s) - start ))s"
fi
echo "$PREFIX/bin/ollama" | tee "$CACHE/ollama-bin"
