"""Where a node's cached models are kept: names read as Ollama reads them, keys under the stack's prefix."""
import pytest

from providers import model_cache


@pytest.mark.parametrize("tag,expected", [
    ("qwen3:8b", ("registry.ollama.ai", "library/qwen3", "8b")),
    ("llama3.2", ("registry.ollama.ai", "library/llama3.2", "latest")),
    ("someone/model:q4", ("registry.ollama.ai", "someone/model", "q4")),
    ("127.0.0.1:5000/library/tiny:1", ("127.0.0.1:5000", "library/tiny", "1")),
    ("hf.co/org/Model-GGUF:Q4_K_M", ("hf.co", "org/Model-GGUF", "Q4_K_M")),
])
def test_a_tag_is_read_as_ollama_reads_it(tag, expected):
    assert model_cache.reference(tag) == expected


def test_keys_sit_under_the_cache_prefix():
    bucket, prefix = model_cache.location("s3://acme-models/cache/prod/qwen/")
    assert (bucket, prefix) == ("acme-models", "cache/prod/qwen/")
    assert model_cache.manifest_key(prefix, "qwen3:8b") == "cache/prod/qwen/manifests/registry.ollama.ai/library/qwen3/8b"
    assert model_cache.blob_key(prefix, "sha256:" + "a" * 64) == "cache/prod/qwen/blobs/sha256-" + "a" * 64
    assert model_cache.location("s3://acme-models") == ("acme-models", "")


def test_a_gcs_cache_is_read_as_an_s3_one():
    assert model_cache.location("gs://acme_models/cache/prod/") == ("acme_models", "cache/prod/")
    assert model_cache.location("gs://acme-models") == ("acme-models", "")


@pytest.mark.parametrize("bad,said", [("s3://acme-models/../x", "path segments"), ("s3://Acme/x", "S3 bucket name"),
                                      ("gs://goog-acme/x", "Cloud Storage bucket name"),
                                      ("https://acme/x", "s3:// or gs://")])
def test_a_cache_that_is_not_a_bucket_prefix_is_refused(bad, said):
    with pytest.raises(model_cache.CacheError, match=f"model_cache: .*{said}"):
        model_cache.location(bad)
