#!/usr/bin/env bash
# The sandbox's Ollama image, made on this machine: no image registry is reachable, so the image is a
# root filesystem assembled from the host's Debian Python (the interpreter, the shared libraries it and
# its extension modules load, the standard library) plus the project's loopback package, imported with
# `docker import`. It runs the loopback Ollama (loopback/ollama.py) on 0.0.0.0:11434 inside its container,
# keeps its models under /root/.ollama like Ollama does, and answers `ollama list` for the healthcheck.
#
#   bash scripts/build-sandbox-image.sh            # builds gpu-estate/loopback-ollama:sandbox if stale
#
# The image carries a label with a digest of what went in; an image whose label matches is kept.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
IMAGE="${GPU_ESTATE_SANDBOX_IMAGE:-gpu-estate/loopback-ollama:sandbox}"
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "build-sandbox-image: $PY is missing (apt-get install python3)" >&2; exit 1; }
if ! docker info >/dev/null 2>&1; then
  # The project's CI sets GPU_ESTATE_REQUIRE_VM=1: there the VM-like node must run, not skip.
  echo "build-sandbox-image: no Docker engine answers (scripts/install-tools.sh starts one); the sandbox's VM node and its tests will not run" >&2
  exit "${GPU_ESTATE_REQUIRE_VM:-0}"
fi

PYVER="$($PY -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
STDLIB="/usr/lib/python${PYVER}"
SUM="$( (cat "$0"; $PY --version; cat "$ROOT"/loopback/*.py) | sha256sum | cut -c1-16)"
if [ "$(docker image inspect -f '{{ index .Config.Labels "gpu-estate.digest" }}' "$IMAGE" 2>/dev/null || true)" = "$SUM" ]; then
  echo "build-sandbox-image: $IMAGE is current ($SUM)"
  exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
FS="$WORK/rootfs"
mkdir -p "$FS"/{bin,usr/bin,tmp,root/.ollama,etc,opt/loopback} && chmod 1777 "$FS/tmp"

# The interpreter and a shell, then every shared library they and the standard library's extension
# modules need (ldd names them; the dynamic loader comes along as an absolute path).
cp -L "$PY" "$FS/usr/bin/python3"
cp -L /bin/dash "$FS/bin/sh"
{ ldd "$PY"; ldd /bin/dash; find "$STDLIB/lib-dynload" -name '*.so' -exec ldd {} \; ; } 2>/dev/null \
  | grep -o '/[^ ]*\.so[^ ]*' | sort -u | while read -r lib; do
      mkdir -p "$FS$(dirname "$lib")"
      cp -L "$lib" "$FS$lib"
    done
mkdir -p "$FS$STDLIB"
tar -C "$STDLIB" --exclude=test --exclude=idlelib --exclude=tkinter --exclude=ensurepip \
    --exclude=__pycache__ --exclude=site-packages --exclude=dist-packages -cf - . | tar -C "$FS$STDLIB" -xf -
cp -r "$ROOT/loopback" "$FS/opt/loopback/" && rm -rf "$FS/opt/loopback/loopback/__pycache__"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$FS/etc/passwd"
printf 'root:x:0:\n' > "$FS/etc/group"
cat > "$FS/usr/bin/ollama" <<'SHIM'
#!/bin/sh
# `ollama list` (the compose healthcheck) against the server in this container.
exec python3 -m loopback.ollama --list
SHIM
chmod 0755 "$FS/usr/bin/ollama"

tar -C "$FS" -cf - . | docker import \
  -c 'ENV PYTHONPATH=/opt/loopback PYTHONDONTWRITEBYTECODE=1 LOOPBACK_HOST=0.0.0.0 LOOPBACK_PORT=11434 LOOPBACK_STATE=/root/.ollama/models.json' \
  -c 'CMD ["python3", "-m", "loopback.ollama"]' \
  -c "LABEL gpu-estate.digest=$SUM" \
  -m "loopback Ollama for the gpu-estate sandbox" - "$IMAGE" >/dev/null
echo "build-sandbox-image: built $IMAGE ($SUM, $(docker image inspect -f '{{.Size}}' "$IMAGE") bytes)"
