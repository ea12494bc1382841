"""Warm starts through the real engine: a Vast.ai node (loopback Vast.ai) whose Ollama is the real one pulls
the project's tiny model from the loopback registry and keeps it in the bucket (``model_cache``): ``s3://`` on
moto's S3 server, ``gs://`` on fake-gcs-server; the vendor takes the machine back, and with the registry
gone the new machine's empty Ollama is filled from the bucket and answers.

Skipped where the engine, the real Ollama, the registry or the bucket's server is missing, except on the
project's CI (GPU_ESTATE_REQUIRE_VM=1), where that fails.
"""
import hashlib
import os

import pytest
import requests

import sandbox
from sandbox import gcs as loopback_gcs, real_ollama, registry as loopback_registry, s3 as loopback_s3
from sandbox.tiny_model import PARAMETERS, write_tiny_gguf

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(bool(sandbox.engine_missing()) and not sandbox.vm_required(), reason=sandbox.engine_missing()),
]

BUCKET = "gpu-estate-sandbox-models"
SERVERS = {"s3": loopback_s3, "gs": loopback_gcs}


def cached_keys(scheme, server):
    if scheme == "s3":
        return {o["Key"] for o in server.client().list_objects_v2(Bucket=BUCKET)["Contents"]}
    return {b.name for b in server.client().list_blobs(BUCKET)}


@pytest.mark.parametrize("scheme", sorted(SERVERS))
def test_a_new_machine_is_filled_from_the_cache_without_the_registry(tmp_path, scheme):
    cache = f"{scheme}://{BUCKET}/cache/sandbox/qwen"
    server_module = SERVERS[scheme]
    why = [w for w in (sandbox.engine_missing(), loopback_registry.missing(), server_module.missing()) if w]
    if why:
        if sandbox.vm_required():
            pytest.fail("; ".join(why))
        pytest.skip("; ".join(why))
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", seed=7)
    start = loopback_s3.LoopbackS3 if scheme == "s3" else loopback_gcs.LoopbackGcs
    with sandbox.fake_clouds() as fakes, loopback_registry.LoopbackRegistry() as registry, start() as server:
        registry.publish("tiny", "1", gguf, PARAMETERS)
        server.create_bucket(BUCKET)
        tag = registry.name("tiny", "1")
        ollama = real_ollama.OllamaServer()
        port = ollama.port
        fakes["vastai"].port_map[11434] = port
        st = sandbox.stack({**sandbox.engine_env(fakes, tmp_path / "engine"), **server.env()},
                           work_dir=sandbox.project_copy(tmp_path / "project"))
        try:
            st.set_config("gpu-estate:nodes", sandbox.auto_config({"qwen": {
                "provider": "vastai", "gpu": {"model": "rtx4090"}, "max_price_per_hour": 0.5, "hours_per_month": 100,
                "idle_shutdown_minutes": 30, "access": "direct", "workloads": {"ollama": {
                    "models": [tag], "insecure_registries": [registry.host], "model_cache": cache,
                    "model_sizes": {tag: {"disk_gb": 0.1, "vram_gb": 0.1}}}}}}))
            for key in ("gpu-estate:gateway", "gpu-estate:serverless", "gpu-estate:spend"):
                st.remove_config(key)
            up = st.up()
            assert f"qwen: {tag} kept in {cache}" in up.stdout
            keys = cached_keys(scheme, server)
            assert f"cache/sandbox/qwen/blobs/sha256-{hashlib.sha256(gguf.read_bytes()).hexdigest()}" in keys

            # Preempted; the new machine's disk is empty and the registry no longer answers.
            (inst,) = fakes["vastai"].alive()
            fakes["vastai"].preempt(inst["id"])
            ollama.close()
            ollama = real_ollama.OllamaServer(port=port)
            registry.close()
            st.refresh()
            again = st.up()
            assert f"qwen: {tag} filled from {cache}" in again.stdout
            assert fakes["vastai"].alive()[0]["id"] != inst["id"]
            said = requests.post(f"{ollama.url}/api/generate", timeout=60, json={
                "model": tag, "prompt": "hello", "stream": False, "options": {"num_predict": 4}}).json()
            assert said["response"].strip()
            assert set(st.up().summary.resource_changes) == {"same"}  # what it holds is what the state says
        finally:
            try:
                st.destroy()
            finally:
                ollama.close()
                for key in server.env():  # sandbox.stack exported them to this process; their server is gone
                    os.environ.pop(key, None)
