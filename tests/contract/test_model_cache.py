"""Warm starts against the real things: the model library's provider pulls the project's tiny model into a
real Ollama from the loopback CNCF registry and keeps it in moto's S3; a new machine (a fresh Ollama) is
filled from the bucket with the registry gone; a cached blob with other bytes is refused by Ollama's digest
check and the model is pulled instead.

Skipped where the real Ollama, the registry or moto's server is missing, except on the project's CI.
"""
import hashlib

import pytest
import requests

import sandbox
from providers import model_cache
from providers.ollama import OllamaClient, OllamaModelProvider
from sandbox import real_ollama, registry as loopback_registry, s3 as loopback_s3
from sandbox.tiny_model import PARAMETERS, write_tiny_gguf

BUCKET = "estate-cache"
CACHE = f"s3://{BUCKET}/cache/vm"


@pytest.fixture()
def parts(tmp_path, monkeypatch):
    why = [w for w in (loopback_s3.missing(), loopback_registry.missing()) if w]
    if why:
        if sandbox.vm_required():
            pytest.fail("; ".join(why))
        pytest.skip("; ".join(why))
    with loopback_s3.LoopbackS3() as s3, loopback_registry.LoopbackRegistry() as registry:
        for k, v in s3.env().items():
            monkeypatch.setenv(k, v)
        s3.create_bucket(BUCKET)
        gguf = write_tiny_gguf(tmp_path / "tiny.gguf", seed=5)
        registry.publish("tiny", "1", gguf, PARAMETERS)
        yield s3, registry, hashlib.sha256(gguf.read_bytes()).hexdigest()


def props(url: str, registry) -> dict:
    return {"node": "vm", "model": registry.name("tiny", "1"), "endpoint": url, "active": True, "insecure": True,
            "cache": CACHE}


def gguf_of(url: str, tag: str) -> str:
    shown = requests.post(f"{url}/api/show", json={"model": tag}, timeout=10).json()
    return shown["modelfile"].split("sha256-", 1)[1][:64], shown["parameters"]


def test_a_pulled_model_fills_a_new_machine_from_the_bucket(parts):
    s3, registry, gguf = parts
    tag = registry.name("tiny", "1")
    provider = OllamaModelProvider()
    with real_ollama.OllamaServer() as first:
        provider.create(props(first.url, registry))
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert f"cache/vm/manifests/{registry.host}/library/tiny/1" in keys
    assert f"cache/vm/blobs/sha256-{gguf}" in keys

    registry.close()  # the internet is gone: only the bucket can fill the next machine
    with real_ollama.OllamaServer() as second:
        outs = provider.create(props(second.url, registry)).outs
        assert outs["digest"] == outs["pulled_digest"]
        blob, parameters = gguf_of(second.url, tag)
        assert blob == gguf and "num_predict" in parameters
        said = requests.post(f"{second.url}/api/generate", timeout=60, json={
            "model": tag, "prompt": "hello", "stream": False, "options": {"num_predict": 4}}).json()
        assert said["response"].strip()


def test_a_cached_blob_with_other_bytes_is_refused_and_the_model_pulled(parts):
    s3, registry, gguf = parts
    provider = OllamaModelProvider()
    with real_ollama.OllamaServer() as first:
        provider.create(props(first.url, registry))
    s3.client().put_object(Bucket=BUCKET, Key=f"cache/vm/blobs/sha256-{gguf}", Body=b"GGUF not the model")
    with real_ollama.OllamaServer() as second:
        with pytest.raises(model_cache.CacheError, match="digest mismatch"):
            model_cache.restore(OllamaClient(second.url), CACHE, registry.name("tiny", "1"))
        provider.create(props(second.url, registry))  # pulled from the registry, and cached again
        assert gguf_of(second.url, registry.name("tiny", "1"))[0] == gguf
    cached = s3.client().get_object(Bucket=BUCKET, Key=f"cache/vm/blobs/sha256-{gguf}")["Body"].read()
    assert hashlib.sha256(cached).hexdigest() == gguf

