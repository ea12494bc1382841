"""Models of the operator's own in the stack (``gguf_models``): a bad source, a missing digest, a registry
alias without its server, or the key on a kind that makes no models, fail before any resource, naming the
key and the value."""
import pytest

from core.config import parse_spec
from core.errors import ConfigError
from tests.mocks import stack_estate

SHA = "ab" * 32
GOOD = {"source": "s3://acme-models/models/acme/myai/3/model.gguf", "sha256": SHA,
        "template": "{{ .Prompt }}", "system": "Answer briefly.", "parameters": {"num_ctx": 4096, "stop": ["</s>"]}}
SIZES = {"myai:3": {"disk_gb": 4.7, "vram_gb": 6.0}}
PATH = "gpu-estate:nodes.qwen.workloads.ollama"


def with_models(gguf, sizes=SIZES, workload="ollama"):
    cfg = stack_estate("prod")
    w = cfg["nodes"]["qwen"]["workloads"][workload]
    w["gguf_models"] = gguf
    if sizes is not None:
        w.setdefault("model_sizes", {}).update(sizes)
    return cfg


def problems(cfg):
    with pytest.raises(ConfigError) as err:
        parse_spec(cfg)
    return err.value.problems


def test_a_gguf_model_is_served_sized_and_kept_as_given():
    spec = parse_spec(with_models({"myai:3": GOOD}))
    ollama = spec.nodes["qwen"].workloads["ollama"]
    assert "myai:3" in ollama.served_models() and "myai:3" not in ollama.pulled_models()
    own = ollama.own_models()["myai:3"]
    assert (own.sha256, own.parameters["num_ctx"], own.alias()) == (SHA, 4096, None)
    alias = parse_spec(with_models({"myai:3": {"source": "models:/myai@production",
                                               "tracking_uri": "http://mlflow.internal:5000"}}))
    assert alias.nodes["qwen"].workloads["ollama"].own_models()["myai:3"].alias() == ("myai", "production")


BAD = [
    ({**GOOD, "source": "s3://acme-models/models/acme/myai/3/model.bin"}, ".source", "model.bin"),
    ({**GOOD, "source": "ftp://acme-models/models/acme/myai/3/model.gguf"}, ".source", "ftp://"),
    ({**GOOD, "source": "gs://goog-models/models/acme/myai/3/model.gguf"}, ".source", "goog-models"),
    ({**GOOD, "source": "s3://acme_models/models/acme/myai/3/model.gguf"}, ".source", "acme_models"),
    ({**GOOD, "source": "gs://acme-models/models/myai/model.bin"}, ".source", "model.bin"),
    ({**GOOD, "source": "s3://acme-models/../etc/model.gguf"}, ".source", "../etc"),
    ({k: v for k, v in GOOD.items() if k != "sha256"}, ".sha256", "needs the GGUF's sha256"),
    ({**GOOD, "sha256": "xyz"}, ".sha256", "xyz"),
    ({"source": "models:/myai@production"}, ".tracking_uri", "models:/myai@production"),
    ({"source": "models:/myai@production", "tracking_uri": "http://m:5000", "sha256": SHA}, ".sha256",
     "carries its own digest"),
    ({"source": "models:/myai", "tracking_uri": "http://m:5000"}, ".source", "models:/myai"),
    ({**GOOD, "parameters": {"num ctx": 1}}, ".parameters", "num ctx"),
    ({**GOOD, "tracking_uri": "http://m:5000"}, ".tracking_uri", "models:/"),
]


@pytest.mark.parametrize("entry,key,shown", BAD, ids=[f"{b[1]}:{b[2]}"[:50] for b in BAD])
def test_a_bad_entry_names_its_key_and_value(entry, key, shown):
    found = problems(with_models({"myai:3": entry}))
    assert any(p.startswith(f"{PATH}.gguf_models.myai:3") and (shown in m or shown in p) for p, m in found), found
    assert any(p.endswith(key) or key.strip(".") in m for p, m in found), found


def test_an_unsized_model_and_a_tag_both_pulled_and_made_are_refused():
    found = problems(with_models({"myai:3": GOOD}, sizes=None))
    assert (f"{PATH}.gguf_models.myai:3", ) == tuple({p for p, _ in found})
    assert "model_sizes.myai:3" in found[0][1]
    found = problems(with_models({"qwen3:8b": GOOD}, sizes={}))
    assert any(p == f"{PATH}.gguf_models.qwen3:8b" and "also in models" in m for p, m in found), found


def test_gguf_models_on_a_kind_that_makes_no_models_names_the_key():
    found = problems(with_models({"myai:3": {"source": "models:/myai@production",
                                             "tracking_uri": "http://m:5000"}}, sizes=None, workload="comfyui"))
    assert any(p == "gpu-estate:nodes.qwen.workloads.comfyui" and m.startswith("gguf_models does not apply to comfyui")
               for p, m in found), found


def test_a_gcs_source_with_its_digest_is_a_model_of_the_bucket():
    spec = parse_spec(with_models({"myai:3": {**GOOD, "source": "gs://acme_models/models/acme/myai/3/model.gguf"}}))
    own = spec.nodes["qwen"].workloads["ollama"].own_models()["myai:3"]
    assert (own.source, own.alias()) == ("gs://acme_models/models/acme/myai/3/model.gguf", None)
    found = problems(with_models({"myai:3": {"source": "gs://acme-models/m/model.gguf"}}))
    assert any(p.endswith("myai:3") and "a gs:// source needs the GGUF's sha256" in m for p, m in found), found


@pytest.mark.parametrize("cache", ["s3://acme-models/cache/prod/qwen", "gs://acme-models/cache/prod/qwen",
                                   "gs://acme_models.example.com/cache/", "gs://acme-models"])
def test_a_model_cache_is_a_bucket_prefix_and_applies_to_pulled_tags(cache):
    cfg = stack_estate("prod")
    cfg["nodes"]["qwen"]["workloads"]["ollama"]["model_cache"] = cache
    ollama = parse_spec(cfg).nodes["qwen"].workloads["ollama"]
    assert ollama.cache_of("qwen3:8b") == cache and ollama.cache_of("myai:3") is None


@pytest.mark.parametrize("cache,said", [
    ("gcs://acme-models/cache", "gs://"), ("gs://my-google-models/cache", "google"),
    ("gs://10.0.0.1/cache", "IP address"), ("s3://acme_models/cache", "S3 bucket name"),
    ("gs://acme-models/../cache", "path segments"), ("gs://Acme/cache", "Cloud Storage bucket name"),
])
def test_a_bad_model_cache_names_its_key_value_and_rule(cache, said):
    cfg = stack_estate("prod")
    cfg["nodes"]["qwen"]["workloads"]["ollama"]["model_cache"] = cache
    found = problems(cfg)
    assert any(p == f"{PATH}.model_cache" and cache.split("/")[2] in m and said in m for p, m in found), found
