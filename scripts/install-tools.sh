#!/usr/bin/env bash
# The system tools some tests check rendered files with or talk to, from Debian's packages:
# cloud-init (schema validator), caddy (caddy validate), autossh (unit ExecStart), openssh-server
# (the sandbox's VM-like node and the SSH port-forward test), shellcheck (actionlint checks the workflows'
# shell steps with it), docker.io (the Docker engine the sandbox's VM-like node runs its containers on;
# its daemon is started here when none answers), nodejs and npm (mermaid's parser checks the estate's
# drawings), g++ with nlohmann-json3-dev and libstb-dev (llama.cpp's headers the Go module of Ollama leaves
# out: scripts/build-ollama.sh builds the real Ollama with them), prometheus (it scrapes the health agent's metrics), postgresql (the
# health agent's pgvector probe is held to it). Tests that need one skip with the reason where it
# is missing, so this is for CI and for anyone who wants every test to run. Needs root and apt-get.
set -euo pipefail
want=()
command -v cloud-init >/dev/null || want+=(cloud-init)
command -v caddy >/dev/null || want+=(caddy)
command -v autossh >/dev/null || want+=(autossh)
[ -x /usr/sbin/sshd ] || want+=(openssh-server)
command -v systemd-analyze >/dev/null || want+=(systemd)
command -v shellcheck >/dev/null || want+=(shellcheck)
command -v dockerd >/dev/null || want+=(docker.io)
command -v npm >/dev/null || want+=(nodejs npm)
command -v g++ >/dev/null || want+=(g++)
[ -f /usr/include/nlohmann/json.hpp ] || want+=(nlohmann-json3-dev)
[ -f /usr/include/stb/stb_image.h ] || want+=(libstb-dev)
command -v prometheus >/dev/null || want+=(prometheus)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || want+=(postgresql)
if [ ${#want[@]} -eq 0 ]; then
    echo "system tools: all present"
elif [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "system tools missing (${want[*]}): not root or no apt-get, the tests that need them will skip" >&2
else
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
    echo "system tools installed: ${want[*]}"
fi

# A Docker engine that answers: start Debian's daemon where none runs (no systemd on these machines).
if command -v docker >/dev/null && ! docker info >/dev/null 2>&1 && command -v dockerd >/dev/null \
        && [ "$(id -u)" -eq 0 ]; then
    nohup dockerd >/var/log/dockerd.log 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
if docker info >/dev/null 2>&1; then
    echo "docker engine: $(docker info -f '{{.ServerVersion}}' 2>/dev/null) answers"
else
    echo "docker engine: none answers (see /var/log/dockerd.log); the sandbox's VM node cannot run" >&2
fi
