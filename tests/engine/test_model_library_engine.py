"""The model library through the real engine against the real Ollama: a TensorDock node (loopback
TensorDock) whose Ollama port is a real ``ollama serve`` on this machine, pulling the project's tiny model
from the loopback registry by name. Up pulls it with progress and records the registry's digest; refresh
finds it gone or changed on the node; a missing tag fails the up naming it; a model dropped from the list
is deleted from the server.

Needs the engine, the real Ollama and the loopback registry (``make setup``); skipped naming what is
missing, except on the project's CI (GPU_ESTATE_REQUIRE_VM=1), where that fails.
"""
import json

import pytest
import requests
import yaml
from pulumi import automation as auto

import sandbox
from sandbox.real_ollama import OllamaServer
from sandbox.tiny_model import PARAMETERS, write_tiny_gguf
from tests.conftest import real_servers_or_skip

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(bool(sandbox.engine_missing()) and not sandbox.vm_required(), reason=sandbox.engine_missing()),
]

MODEL_TYPE = "pulumi-python:dynamic/ollama:Model"


def one_node_stack(work, registry) -> None:
    """The project copy's sandbox stack reduced to one TensorDock node whose Ollama pulls from ``registry``."""
    path = work / "Pulumi.sandbox.yaml"
    doc = yaml.safe_load(path.read_text())
    node = doc["config"]["gpu-estate:nodes"]["inference"]
    node["workloads"] = {"ollama": {"models": [registry.tiny], "insecure_registries": [registry.host],
                                    "host_network": True}}
    doc["config"] = {"gpu-estate:nodes": {"inference": node}, "gpu-estate:budget": doc["config"]["gpu-estate:budget"]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="module")
def estate(tmp_path_factory, tiny_registry):
    if sandbox.engine_missing():
        pytest.fail(f"the engine must run here: {sandbox.engine_missing()}")
    real_servers_or_skip()
    work = sandbox.project_copy(tmp_path_factory.mktemp("project"))
    one_node_stack(work, tiny_registry)
    with sandbox.fake_clouds() as fakes, OllamaServer() as ollama:
        fakes["tensordock"].port_map[11434] = ollama.port  # the node's Ollama is the real one
        st = sandbox.stack(sandbox.engine_env(fakes, tmp_path_factory.mktemp("engine")), work_dir=work)
        try:
            yield st, ollama, tiny_registry
        finally:
            st.destroy()


def models_in_state(st) -> dict:
    return {r["outputs"]["model"]: r["outputs"] for r in st.export_stack().deployment["resources"]
            if r["type"] == MODEL_TYPE}


def on_server(ollama) -> dict:
    return {m["name"]: m["digest"] for m in requests.get(f"{ollama.url}/api/tags", timeout=10).json()["models"]}


def set_models(st, models) -> None:
    nodes = json.loads(st.get_config("gpu-estate:nodes").value)
    nodes["inference"]["workloads"]["ollama"]["models"] = models
    st.set_config("gpu-estate:nodes", sandbox.auto_config(nodes))


def test_pull_refresh_and_delete_through_the_engine(estate, tmp_path):
    st, ollama, registry = estate
    name = registry.tiny

    up = st.up()
    assert up.summary.resource_changes.get("create", 0) >= 3
    assert f"inference: pulling {name}: 100%" in up.stdout  # the stream's progress, through the engine
    state = models_in_state(st)[name]
    assert state["digest"] == state["pulled_digest"] == registry.tiny_digest == on_server(ollama)[name]
    assert state["insecure"] is True
    assert set(st.up().summary.resource_changes) == {"same"}

    # Gone behind the state's back: refresh drops it and the next up pulls it again.
    requests.delete(f"{ollama.url}/api/delete", json={"model": name}, timeout=10).raise_for_status()
    st.refresh()
    assert name not in models_in_state(st)
    again = st.up()
    assert again.summary.resource_changes.get("create") == 1
    assert on_server(ollama)[name] == registry.tiny_digest

    # Changed: a new build of the tag was pulled onto the node by hand. Refresh reads its digest, the
    # preview shows an update in place, and up pulls the tag again (the registry's build, now the new one).
    rebuilt = registry.publish("tiny", "1", write_tiny_gguf(tmp_path / "tiny-2.gguf", seed=2), PARAMETERS)
    assert rebuilt != registry.tiny_digest
    requests.post(f"{ollama.url}/api/pull", json={"model": name, "insecure": True, "stream": False},
                  timeout=60).raise_for_status()
    st.refresh()
    state = models_in_state(st)[name]
    assert (state["digest"], state["pulled_digest"]) == (rebuilt, registry.tiny_digest)
    preview = st.preview()
    assert preview.change_summary.get("update") == 1 and "replace" not in preview.change_summary
    updated = st.up()
    assert updated.summary.resource_changes.get("update") == 1
    assert f"inference: pulling {name}: 100%" in updated.stdout
    state = models_in_state(st)[name]
    assert state["digest"] == state["pulled_digest"] == rebuilt == on_server(ollama)[name]

    # A tag the registry does not hold fails the up, naming the node, the tag and the registry's answer;
    # nothing of it is recorded.
    missing = registry.name("tiny", "2")
    set_models(st, [name, missing])
    with pytest.raises(auto.CommandError) as failed:
        st.up()
    assert f"inference: pull {missing}: pull model manifest: file does not exist" in str(failed.value)
    assert missing not in models_in_state(st) and missing not in on_server(ollama)

    # Dropped from the list: deleted from the server.
    set_models(st, [])
    dropped = st.up()
    assert dropped.summary.resource_changes.get("delete") == 1
    assert models_in_state(st) == {} and on_server(ollama) == {}
