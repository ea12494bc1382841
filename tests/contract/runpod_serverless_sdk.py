"""Drives a RunPod API's serverless half with RunPod's own SDK (``runpod`` from PyPI), run in ``.venv-runpod``.

    RUNPOD_API_BASE_URL=http://127.0.0.1:PORT .venv-runpod/bin/python tests/contract/runpod_serverless_sdk.py

Prints one JSON object: what each SDK call returned (a template, an endpoint on it, the endpoint list, the
endpoint moved to a second template). The contract tests start the loopback RunPod, run this, and check
the answers the SDK parsed and the requests the loopback recorded.
"""
import json
import sys

import runpod

runpod.api_key = "sdk-contract-key"
out = {}
out["template"] = runpod.create_template(
    "contract-endpoint", "runpod/worker-v1-vllm:v2.27.0", container_disk_in_gb=20, is_serverless=True,
    env={"MODEL_NAME": "Qwen/Qwen3-8B", "HF_TOKEN": "{{ RUNPOD_SECRET_hf-token }}"})
out["endpoint"] = runpod.create_endpoint(
    "contract-endpoint", out["template"]["id"], gpu_ids="AMPERE_24,ADA_24", locations="US", idle_timeout=300,
    workers_min=0, workers_max=5, flashboot=True, gpu_count=1)
out["list"] = runpod.get_endpoints()
out["second_template"] = runpod.create_template("contract-endpoint-2", "runpod/worker-v1-vllm:v2.28.0",
                                                is_serverless=True)
out["moved"] = runpod.update_endpoint_template(out["endpoint"]["id"], out["second_template"]["id"])
try:
    runpod.create_template("contract-endpoint", "runpod/worker-v1-vllm:v2.27.0", is_serverless=True)
    out["duplicate"] = "created"
except Exception as err:  # the SDK raises on GraphQL errors
    out["duplicate"] = f"{type(err).__name__}: {err}"
json.dump(out, sys.stdout, default=str)
