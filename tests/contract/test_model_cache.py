"""Warm starts against the real things: the model library's provider pulls the project's tiny model into a
real Ollama from the loopback CNCF registry and keeps it in the bucket; a new machine (a fresh Ollama) is
filled from the bucket with the registry gone; a cached blob with other bytes is refused by Ollama's digest
check and the model is pulled instead. Each runs against both stores: ``s3://`` on moto's S3 server (boto3)
and ``gs://`` on fake-gcs-server (google-cloud-storage).

Skipped where the real Ollama, the registry or a bucket server is missing, except on the project's CI.
"""
import hashlib

import pytest
import requests

import sandbox
from providers import model_cache
from providers.ollama import OllamaClient, OllamaModelProvider
from sandbox import gcs as loopback_gcs, real_ollama, registry as loopback_registry, s3 as loopback_s3
from sandbox.tiny_model import PARAMETERS, write_tiny_gguf

BUCKET = "estate-cache"


class Bucket:
    """The test's own view of the bucket, through the store's own client."""

    def __init__(self, scheme, server):
        self.scheme, self.server, self.cache = scheme, server, f"{scheme}://{BUCKET}/cache/vm"

    def keys(self):
        if self.scheme == "s3":
            return {o["Key"] for o in self.server.client().list_objects_v2(Bucket=BUCKET)["Contents"]}
        return {b.name for b in self.server.client().list_blobs(BUCKET)}

    def put(self, key, data):
        if self.scheme == "s3":
            self.server.client().put_object(Bucket=BUCKET, Key=key, Body=data)
        else:
            self.server.client().bucket(BUCKET).blob(key).upload_from_string(data)

    def get(self, key):
        if self.scheme == "s3":
            return self.server.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return self.server.client().bucket(BUCKET).blob(key).download_as_bytes()


@pytest.fixture(params=["s3", "gs"])
def parts(request, tmp_path, monkeypatch):
    server_module = loopback_s3 if request.param == "s3" else loopback_gcs
    why = [w for w in (server_module.missing(), loopback_registry.missing()) if w]
    if why:
        if sandbox.vm_required():
            pytest.fail("; ".join(why))
        pytest.skip("; ".join(why))
    server = loopback_s3.LoopbackS3() if request.param == "s3" else loopback_gcs.LoopbackGcs()
    with server, loopback_registry.LoopbackRegistry() as registry:
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        server.create_bucket(BUCKET)
        gguf = write_tiny_gguf(tmp_path / "tiny.gguf", seed=5)
        registry.publish("tiny", "1", gguf, PARAMETERS)
        yield Bucket(request.param, server), registry, hashlib.sha256(gguf.read_bytes()).hexdigest()


def props(url: str, registry, bucket) -> dict:
    return {"node": "vm", "model": registry.name("tiny", "1"), "endpoint": url, "active": True, "insecure": True,
            "cache": bucket.cache}


def gguf_of(url: str, tag: str) -> str:
    shown = requests.post(f"{url}/api/show", json={"model": tag}, timeout=10).json()
    return shown["modelfile"].split("sha256-", 1)[1][:64], shown["parameters"]


def test_a_pulled_model_fills_a_new_machine_from_the_bucket(parts):
    bucket, registry, gguf = parts
    tag = registry.name("tiny", "1")
    provider = OllamaModelProvider()
    with real_ollama.OllamaServer() as first:
        provider.create(props(first.url, registry, bucket))
    keys = bucket.keys()
    assert f"cache/vm/manifests/{registry.host}/library/tiny/1" in keys
    assert f"cache/vm/blobs/sha256-{gguf}" in keys

    registry.close()  # the internet is gone: only the bucket can fill the next machine
    with real_ollama.OllamaServer() as second:
        outs = provider.create(props(second.url, registry, bucket)).outs
        assert outs["digest"] == outs["pulled_digest"]
        blob, parameters = gguf_of(second.url, tag)
        assert blob == gguf and "num_predict" in parameters
        said = requests.post(f"{second.url}/api/generate", timeout=60, json={
            "model": tag, "prompt": "hello", "stream": False, "options": {"num_predict": 4}}).json()
        assert said["response"].strip()


def test_a_cached_blob_with_other_bytes_is_refused_and_the_model_pulled(parts):
    bucket, registry, gguf = parts
    provider = OllamaModelProvider()
    with real_ollama.OllamaServer() as first:
        provider.create(props(first.url, registry, bucket))
    bucket.put(f"cache/vm/blobs/sha256-{gguf}", b"GGUF not the model")
    with real_ollama.OllamaServer() as second:
        with pytest.raises(model_cache.CacheError, match="digest mismatch"):
            model_cache.restore(OllamaClient(second.url), bucket.cache, registry.name("tiny", "1"))
        provider.create(props(second.url, registry, bucket))  # pulled from the registry, and cached again
        assert gguf_of(second.url, registry.name("tiny", "1"))[0] == gguf
    cached = bucket.get(f"cache/vm/blobs/sha256-{gguf}")
    assert hashlib.sha256(cached).hexdigest() == gguf

