#!/usr/bin/env bash
# The sandbox's job image: gpu-estate/sandbox-trainer:1, the sandbox's Debian Python image
# (scripts/build-sandbox-image.sh, run first) with the tiny CPU "training" of sandbox/trainer.py at /trainer.py.
# The trainer writes its model as a GGUF through sandbox/tiny_model.py's writer, so the image also carries that
# module and the packages it imports (gguf, numpy, and gguf's own imports pyyaml and tqdm) as the program's venv
# installed them from requirements.txt, with the shared libraries numpy's extension modules load: no network at
# build time, and the very versions the project pins. numpy is an extension module built for one CPython, so the
# venv's Python must be the base image's minor version (both are 3.11 on the project's machine); the build says
# so and stops where they differ, and the image is checked to import them before it is kept.
# The engine tests of GPU jobs run it on the sandbox's VM node. No registry is reachable: it is built FROM the
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
VPY="${GPU_ESTATE_VENV_PYTHON:-$ROOT/.venv/bin/python}"
PACKAGES="gguf numpy numpy.libs yaml tqdm"
if ! SITE="$("$VPY" -c 'import gguf, numpy, yaml, tqdm, os; print(os.path.dirname(os.path.dirname(numpy.__file__)))' 2>/dev/null)"; then
  echo "build-trainer-image: the program's venv ($VPY) has no gguf/numpy (make setup installs requirements.txt)" >&2
  exit 1
fi
HAVE="$("$VPY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
WANT="$(docker run --rm "$BASE" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$HAVE" != "$WANT" ]; then
  echo "build-trainer-image: the program's venv is Python $HAVE but $BASE is Python $WANT: numpy's extension modules would not load" >&2
  exit 1
fi
SUM="$( (docker image inspect -f '{{.Id}}' "$BASE"; cat "$0" "$ROOT/sandbox/trainer.py" "$ROOT/sandbox/tiny_model.py"
        cd "$SITE" && ls -d gguf-*.dist-info numpy-*.dist-info pyyaml-*.dist-info tqdm-*.dist-info) | sha256sum | cut -c1-16)"
if [ "$(docker image inspect -f '{{ index .Config.Labels "gpu-estate.digest" }}' "$IMAGE" 2>/dev/null || true)" = "$SUM" ]; then
  echo "build-trainer-image: $IMAGE is current ($SUM)"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/fs/opt/trainer/sandbox"
cp "$ROOT/sandbox/trainer.py" "$work/fs/trainer.py"
cp "$ROOT/sandbox/tiny_model.py" "$work/fs/opt/trainer/sandbox/tiny_model.py"
for package in $PACKAGES; do
  cp -r "$SITE/$package" "$work/fs/opt/trainer/$package"
done
find "$work/fs/opt/trainer" -name __pycache__ -prune -exec rm -rf {} +
# The system libraries numpy's and pyyaml's extension modules load (numpy.libs came along with numpy).
find "$SITE/numpy" "$SITE/yaml" -name '*.so' -exec ldd {} \; 2>/dev/null | grep -o '/[^ ]*\.so[^ ]*' | grep -v "^$SITE/" \
  | sort -u | while read -r lib; do
    mkdir -p "$work/fs$(dirname "$lib")"
    cp -L "$lib" "$work/fs$lib"
  done
printf 'FROM %s\nCOPY fs/ /\nENV PYTHONPATH=/opt/trainer\nLABEL gpu-estate.digest=%s\nCMD ["python3", "/trainer.py"]\n' \
  "$BASE" "$SUM" > "$work/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$work" >/dev/null 2>&1 || docker build -t "$IMAGE" "$work"
if ! docker run --rm "$IMAGE" python3 -c 'from sandbox.tiny_model import write_tiny_gguf; write_tiny_gguf("/tmp/m.gguf")'; then
  docker image rm "$IMAGE" >/dev/null 2>&1 || true
  echo "build-trainer-image: $IMAGE cannot write a GGUF (see above); removed" >&2
  exit 1
fi
echo "build-trainer-image: built $IMAGE ($SUM)"
