#!/usr/bin/env bash
# Docker Compose v2 as a Docker CLI plugin. Debian ships no compose v2 package; where `docker compose`
# already answers with v2 it is used as it is, else v2.40.0 is built from the Go module proxy (its
# go.mod has replace directives, so it builds from a small wrapper module rather than `go install`)
# into the cache and linked into ~/.docker/cli-plugins.
set -euo pipefail
VERSION=v2.40.0
CACHE="${GPU_ESTATE_CACHE:-$HOME/.cache/gpu-estate}"
OUT="$CACHE/docker-compose-$VERSION"
PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

if ! command -v docker >/dev/null; then
  echo "build-compose: no docker CLI (scripts/install-tools.sh installs docker.io); skipped" >&2
  exit "${GPU_ESTATE_REQUIRE_VM:-0}"
fi
if docker compose version 2>/dev/null | grep -q "v2\."; then
  echo "docker compose: $(docker compose version --short 2>/dev/null) already installed"
  exit 0
fi
if [ ! -x "$OUT/docker-compose" ]; then
  command -v go >/dev/null || { echo "build-compose: go is missing (Go 1.26 from the toolchain)" >&2; exit 1; }
  mkdir -p "$OUT/src"
  cd "$OUT/src"
  [ -f go.mod ] || printf 'module composebuild\n\ngo 1.26\n' > go.mod
  echo "docker compose $VERSION: building from the Go module proxy (a few minutes the first time)"
  GOFLAGS=-mod=mod go get -tool "github.com/docker/compose/v2/cmd@$VERSION" >/dev/null 2>&1
  GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$VERSION" \
    -o "$OUT/docker-compose.tmp" github.com/docker/compose/v2/cmd
  mv "$OUT/docker-compose.tmp" "$OUT/docker-compose"
fi
mkdir -p "$PLUGIN_DIR"
ln -sf "$OUT/docker-compose" "$PLUGIN_DIR/docker-compose"
echo "docker compose: $(docker compose version --short) installed from $OUT"
