"""Drives a RunPod API with RunPod's own SDK (``runpod`` from PyPI), run in ``.venv-runpod``.

    RUNPOD_API_BASE_URL=http://127.0.0.1:PORT .venv-runpod/bin/python tests/contract/runpod_sdk.py

Prints one JSON object: what each SDK call returned. The contract tests start the loopback RunPod,
run this, and check both the answers the SDK parsed and the requests the loopback recorded.
"""
import json
import os
import sys

import runpod

runpod.api_key = "sdk-contract-key"
GPU = "NVIDIA GeForce RTX 4090"
out = {}
out["gpu"] = runpod.get_gpu(GPU, 2)
# SDK_DOCKER_ARGS: the pod's command after its image's entrypoint, as the SDK sends it.
pod = runpod.create_pod("contract-pod", "ollama/ollama:0.12.6", GPU, gpu_count=2, ports="22/tcp,11434/http,8080/tcp",
                        env={"OLLAMA_KEEP_ALIVE": "30m"}, container_disk_in_gb=50, cloud_type="ALL",
                        docker_args=os.environ.get("SDK_DOCKER_ARGS", ""))
out["create"] = pod
out["get"] = runpod.get_pod(pod["id"])
out["get_running"] = runpod.get_pod(pod["id"])
out["list"] = runpod.get_pods()
out["stop"] = runpod.stop_pod(pod["id"])
out["resume"] = runpod.resume_pod(pod["id"], 2)
out["terminate"] = runpod.terminate_pod(pod["id"])
try:
    runpod.get_pod(pod["id"])
    out["after_terminate"] = "found"
except Exception as err:  # the SDK raises on GraphQL errors
    out["after_terminate"] = f"{type(err).__name__}: {err}"
json.dump(out, sys.stdout, default=str)
