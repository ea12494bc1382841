#!/bin/sh
# Stops this node once its GPUs and Ollama have been idle for ESTATE_IDLE_MINUTES.
#
# Busy means: a GPU above ESTATE_IDLE_GPU_PERCENT utilisation, or Ollama holding a model in memory
# (it keeps one loaded for OLLAMA_KEEP_ALIVE after the last request). The first idle check writes the
# time to ESTATE_IDLE_STATE; a busy check removes it; once it is older than the limit the node runs
# ESTATE_STOP_COMMAND, the least privileged stop its provider offers (guest poweroff on VMs, the
# instance-scoped key that Vast.ai and RunPod give each container). `--loop` checks every
# ESTATE_IDLE_INTERVAL seconds, for container nodes that have no systemd timer.
set -eu

: "${ESTATE_IDLE_MINUTES:?set ESTATE_IDLE_MINUTES}"
: "${ESTATE_STOP_COMMAND:?set ESTATE_STOP_COMMAND}"
STATE="${ESTATE_IDLE_STATE:-/var/lib/estate-idle/idle-since}"
OLLAMA_URL="${ESTATE_OLLAMA_URL:-http://127.0.0.1:11434}"
GPU_PERCENT="${ESTATE_IDLE_GPU_PERCENT:-5}"
INTERVAL="${ESTATE_IDLE_INTERVAL:-60}"

busy() {
    if command -v nvidia-smi >/dev/null 2>&1; then
        top=$(nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits 2>/dev/null | sort -n | tail -n 1)
        if [ -n "$top" ] && [ "$top" -gt "$GPU_PERCENT" ]; then
            echo "gpu at ${top}%"
            return 0
        fi
    fi
    if loaded=$(curl -fsS --max-time 5 "$OLLAMA_URL/api/ps" 2>/dev/null) && printf '%s' "$loaded" | grep -q '"name"'; then
        echo "ollama has a model loaded"
        return 0
    fi
    return 1
}

check() {
    now=$(date +%s)
    if reason=$(busy); then
        rm -f "$STATE"
        echo "busy: $reason"
        return 0
    fi
    mkdir -p "$(dirname "$STATE")"
    [ -s "$STATE" ] || echo "$now" > "$STATE"
    since=$(cat "$STATE")
    idle=$(( (now - since) / 60 ))
    if [ "$idle" -ge "$ESTATE_IDLE_MINUTES" ]; then
        echo "idle for ${idle} min (limit ${ESTATE_IDLE_MINUTES}): stopping the node"
        rm -f "$STATE"
        sh -c "$ESTATE_STOP_COMMAND"
        return 0
    fi
    echo "idle for ${idle} min of ${ESTATE_IDLE_MINUTES}"
}

if [ "${1:-}" = "--loop" ]; then
    while true; do
        check || true
        sleep "$INTERVAL"
    done
fi
check
