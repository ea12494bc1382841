"""The program registers a model of the operator's own with where its GGUF is, its digest and its Modelfile's
parts as the model's inputs, and a registry alias that cannot be resolved fails the program, naming the key,
before any resource is registered."""
import copy

import pytest

from providers.ssh_forward import free_port
from tests.mocks import RecordingMocks, run_program, stack_config

MODEL = "pulumi-python:dynamic/ollama:Model"
SHA = "cd" * 32


def with_own(entry: dict) -> dict:
    config = copy.deepcopy(stack_config("prod"))
    ollama = config["gpu-estate:nodes"]["qwen"]["workloads"]["ollama"]
    ollama["gguf_models"] = {"myai:3": entry}
    ollama["model_sizes"] = {"myai:3": {"disk_gb": 1.0, "vram_gb": 1.0}}
    ollama["model_cache"] = "s3://acme-models/cache/prod/qwen"
    return config


def test_an_own_model_is_registered_with_its_source_and_the_pulled_ones_with_the_cache():
    mocks = run_program(with_own({"source": "s3://acme-models/models/acme/myai/3/model.gguf", "sha256": SHA,
                                  "system": "Answer briefly.", "parameters": {"num_ctx": 4096}}), stack="prod")
    models = {r.inputs["model"]: r.inputs for r in mocks.resources if r.typ == MODEL and r.inputs["node"] == "qwen"}
    assert models["myai:3"]["source"] == {"url": "s3://acme-models/models/acme/myai/3/model.gguf", "sha256": SHA,
                                          "system": "Answer briefly.", "parameters": {"num_ctx": 4096}}
    assert "cache" not in models["myai:3"]
    assert models["qwen3:8b"]["cache"] == "s3://acme-models/cache/prod/qwen" and "source" not in models["qwen3:8b"]


def test_an_alias_that_cannot_be_resolved_registers_nothing(monkeypatch):
    registered = []
    real = RecordingMocks.new_resource
    monkeypatch.setattr(RecordingMocks, "new_resource", lambda self, args: (registered.append(args.typ), real(self, args))[1])
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = with_own({"source": "models:/myai@production", "tracking_uri": nowhere})
    with pytest.raises(Exception) as err:
        run_program(config, stack="prod")
    assert registered == []
    said = str(err.value)
    assert "gpu-estate:nodes.qwen.workloads.ollama.gguf_models.myai:3.source" in said and nowhere in said
