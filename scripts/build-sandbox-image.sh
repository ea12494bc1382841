#!/usr/bin/env bash
# The sandbox's images, made on this machine: no image registry is reachable, so each image is a root
# filesystem assembled from files on this machine and imported with `docker import`.
# - gpu-estate/ollama:<version>: the real Ollama, the binary scripts/build-ollama.sh built (run it first)
#   with the shared libraries it loads. `ollama serve` is its command and it keeps its models under
#   /root/.ollama, as the official image does; `ollama list` answers the compose healthcheck. The
#   sandbox's VM node runs it.
# - gpu-estate/loopback-ollama:sandbox: the host's Debian Python (the interpreter, the shared libraries it
#   and its extension modules load, the standard library) plus the project's loopback package. It runs
#   the loopback Ollama (loopback/ollama.py) on 0.0.0.0:11434 by default; the sandbox's VM node runs its
#   stand-ins (Open WebUI, a container of the stack's own) from it, and tests run the loopback servers.
#
#   bash scripts/build-sandbox-image.sh            # builds either image if stale
#
# Each image carries a label with a digest of what went in; an image whose label matches is kept.
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

# current <image> <digest>: whether the image exists with that digest label (then it is kept).
current() {
  [ "$(docker image inspect -f '{{ index .Config.Labels "gpu-estate.digest" }}' "$1" 2>/dev/null || true)" = "$2" ] \
    && echo "build-sandbox-image: $1 is current ($2)"
}
# rootfs <dir>: an empty root filesystem with root's account.
rootfs() {
  mkdir -p "$1"/{bin,usr/bin,tmp,root/.ollama,etc} && chmod 1777 "$1/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$1/etc/passwd"
  printf 'root:x:0:\n' > "$1/etc/group"
}
# copy_libs <dir>: the shared libraries named in ldd's output on stdin, copied to their own paths (the
# dynamic loader comes along as an absolute path).
copy_libs() {
  grep -o '/[^ ]*\.so[^ ]*' | sort -u | while read -r lib; do
    mkdir -p "$1$(dirname "$lib")"
    cp -L "$lib" "$1$lib"
  done
}

# The real Ollama's image from its binary, or a warning where it was not built.
OLLAMA_BIN="$(cat "${GPU_ESTATE_CACHE:-$HOME/.cache/gpu-estate}/ollama-bin" 2>/dev/null || true)"
ollama_image() {
  if [ -z "$OLLAMA_BIN" ] || [ ! -x "$OLLAMA_BIN" ]; then
    echo "build-sandbox-image: WARNING: no Ollama binary (scripts/build-ollama.sh); the VM node's real Ollama image is not built" >&2
    return "${GPU_ESTATE_REQUIRE_VM:-0}"
  fi
  local version image sum work
  version="$(OLLAMA_HOST=127.0.0.1:1 "$OLLAMA_BIN" --version 2>&1 | grep -o '[0-9][0-9.]*' | tail -1)"
  image="gpu-estate/ollama:$version"
  sum="$( (cat "$0"; sha256sum < "$OLLAMA_BIN") | sha256sum | cut -c1-16)"
  current "$image" "$sum" && return 0
  work="$(mktemp -d)"
  rootfs "$work/fs"
  cp -L "$OLLAMA_BIN" "$work/fs/usr/bin/ollama"
  ldd "$OLLAMA_BIN" | copy_libs "$work/fs"
  printf '127.0.0.1 localhost\n::1 localhost\n' > "$work/fs/etc/hosts"
  tar -C "$work/fs" -cf - . | docker import \
    -c 'ENV HOME=/root OLLAMA_HOST=0.0.0.0:11434' \
    -c 'ENTRYPOINT ["/usr/bin/ollama"]' -c 'CMD ["serve"]' \
    -c "LABEL gpu-estate.digest=$sum org.opencontainers.image.version=$version" \
    -m "Ollama $version built from its Go module for the gpu-estate sandbox" - "$image" >/dev/null
  rm -rf "$work"
  echo "build-sandbox-image: built $image ($sum, $(docker image inspect -f '{{.Size}}' "$image") bytes)"
}
ollama_image

PYVER="$($PY -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
STDLIB="/usr/lib/python${PYVER}"
SUM="$( (cat "$0"; $PY --version; cat "$ROOT"/loopback/*.py) | sha256sum | cut -c1-16)"
current "$IMAGE" "$SUM" && exit 0

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
FS="$WORK/rootfs"
rootfs "$FS"
mkdir -p "$FS/opt/loopback"

# The interpreter and a shell, then every shared library they and the standard library's extension
# modules need (ldd names them).
cp -L "$PY" "$FS/usr/bin/python3"
cp -L /bin/dash "$FS/bin/sh"
{ ldd "$PY"; ldd /bin/dash; find "$STDLIB/lib-dynload" -name '*.so' -exec ldd {} \; ; } 2>/dev/null | copy_libs "$FS"
mkdir -p "$FS$STDLIB"
tar -C "$STDLIB" --exclude=test --exclude=idlelib --exclude=tkinter --exclude=ensurepip \
    --exclude=__pycache__ --exclude=site-packages --exclude=dist-packages -cf - . | tar -C "$FS$STDLIB" -xf -
cp -r "$ROOT/loopback" "$FS/opt/loopback/" && rm -rf "$FS/opt/loopback/loopback/__pycache__"
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
