#!/usr/bin/env bash
# The sandbox's job image: gpu-estate/sandbox-trainer:1, the sandbox's Debian Python image
# (scripts/build-sandbox-image.sh, run first) with the tiny CPU "training" of sandbox/trainer.py at /trainer.py.
# The engine test of GPU jobs runs it on the sandbox's VM node. No registry is reachable: it is built FROM the
# local image, and kept while its label matches the digest of what went in.
#
#   bash scripts/build-trainer-image.sh
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
IMAGE=gpu-estate/sandbox-trainer:1
BASE=gpu-estate/loopback-ollama:sandbox
if ! docker info >/dev/null 2>&1; then
  echo "build-trainer-image: no Docker engine answers; the GPU job engine test will not run" >&2
  exit "${GPU_ESTATE_REQUIRE_VM:-0}"
fi
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  echo "build-trainer-image: no $BASE (scripts/build-sandbox-image.sh builds it)" >&2
  exit "${GPU_ESTATE_REQUIRE_VM:-0}"
fi
SUM="$( (docker image inspect -f '{{.Id}}' "$BASE"; cat "$ROOT/sandbox/trainer.py") | sha256sum | cut -c1-16)"
if [ "$(docker image inspect -f '{{ index .Config.Labels "gpu-estate.digest" }}' "$IMAGE" 2>/dev/null || true)" = "$SUM" ]; then
  echo "build-trainer-image: $IMAGE is current ($SUM)"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$ROOT/sandbox/trainer.py" "$work/trainer.py"
printf 'FROM %s\nCOPY trainer.py /trainer.py\nLABEL gpu-estate.digest=%s\nCMD ["python3", "/trainer.py"]\n' "$BASE" "$SUM" > "$work/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$work" >/dev/null 2>&1 || docker build -t "$IMAGE" "$work"
echo "build-trainer-image: built $IMAGE ($SUM)"
