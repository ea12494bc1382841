"""The operator's own models through the real engine on the sandbox's VM node (real SSH, Docker and the
real Ollama 0.17.4 image): a GGUF in a real S3 API (moto's server) is made into a model on the node and
answers through a gateway alias; refresh sees it deleted behind the state's back; a real MLflow server's
alias names another version's GGUF, and moving the alias is a change of that one model in the preview;
dropping a model deletes it from the node.

Skipped where the engine, the VM node, moto's server or MLflow's venv is missing, except on the project's
CI (GPU_ESTATE_REQUIRE_VM=1), where that fails.
"""
import contextlib
import hashlib
import json
import os

import pytest
import requests
import yaml

import sandbox
from sandbox import mlflow as real_mlflow, s3 as loopback_s3
from sandbox.tiny_model import PARAMETERS, write_tiny_gguf

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(bool(sandbox.engine_missing()) and not sandbox.vm_required(), reason=sandbox.engine_missing()),
]

OLLAMA = "http://127.0.0.1:21434"  # the vm node's Ollama (Pulumi.sandbox.yaml), on the machine's loopback
MODEL_TYPE = "pulumi-python:dynamic/ollama:Model"
BUCKET = "gpu-estate-sandbox-models"
SIZES = {"disk_gb": 0.1, "vram_gb": 0.1}


def url(version: int) -> str:
    return f"s3://{BUCKET}/models/acme/myai/{version}/model.gguf"


def vm_only_stack(work, gguf_models) -> None:
    """The project copy's sandbox stack reduced to the VM node and the local gateway, whose alias ``mine``
    is the model made from the bucket."""
    path = work / "Pulumi.sandbox.yaml"
    doc = yaml.safe_load(path.read_text())
    cfg = doc["config"]
    nodes = cfg["gpu-estate:nodes"]
    vm = nodes["vm"]
    vm["workloads"] = {"ollama": {**vm["workloads"]["ollama"], "gguf_models": gguf_models,
                                  "model_sizes": {tag: SIZES for tag in gguf_models}}}
    vm["workloads"]["ollama"].pop("secret_env", None)
    cfg["gpu-estate:nodes"] = {"vm": vm, "gw": nodes["gw"]}
    gateway = cfg["gpu-estate:gateway"]
    gateway["aliases"] = {"tiny": gateway["aliases"]["tiny"], "mine": "myai:1"}
    gateway.pop("fallbacks", None)
    for key in ("gpu-estate:serverless", "gpu-estate:HF_TOKEN", "gpu-estate:WEBUI_SECRET_KEY"):
        cfg.pop(key, None)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    why = sandbox.engine_missing() or sandbox.vm_missing() or loopback_s3.missing() or real_mlflow.missing()
    if why:
        if sandbox.vm_required():
            pytest.fail(f"the VM node, S3 and MLflow must run here: {why}")
        pytest.skip(why)
    with loopback_s3.LoopbackS3() as s3, real_mlflow.MlflowServer() as mlflow:
        s3.create_bucket(BUCKET)
        digests = {}
        for version in (1, 2):
            data = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "model.gguf", seed=20 + version).read_bytes()
            s3.client().put_object(Bucket=BUCKET, Key=f"models/acme/myai/{version}/model.gguf", Body=data)
            digests[version] = hashlib.sha256(data).hexdigest()
            mlflow.register("myai", url(version), digests[version])
        mlflow.set_alias("myai", "production", "1")
        work = sandbox.project_copy(tmp_path_factory.mktemp("project"), vm=True)
        vm_only_stack(work, {
            "myai:1": {"source": url(1), "sha256": digests[1], "system": "Answer briefly.", "parameters": PARAMETERS},
            "myai:prod": {"source": "models:/myai@production", "tracking_uri": mlflow.url, "parameters": PARAMETERS},
        })
        with sandbox.fake_clouds(vm=True) as fakes, sandbox.ssh_agent(fakes["machine"].sshd.private_key) as agent:
            env = {**sandbox.engine_env(fakes, tmp_path_factory.mktemp("engine"), agent), **s3.env()}
            st = sandbox.stack(env, work_dir=work)
            with destroyed_after(st, s3):
                yield st, mlflow, digests


@contextlib.contextmanager
def destroyed_after(st, s3):
    """The stack destroyed when the block ends, whatever happened in it, and the bucket's environment taken back
    out of this process (sandbox.stack exported it; its server is about to go)."""
    try:
        yield
    finally:
        try:
            st.destroy()
        finally:
            for key in s3.env():
                os.environ.pop(key, None)


def models_in_state(st) -> dict:
    return {r["outputs"]["model"]: r["outputs"] for r in st.export_stack().deployment["resources"]
            if r["type"] == MODEL_TYPE}


def on_node() -> dict:
    return {m["name"]: m["digest"] for m in requests.get(f"{OLLAMA}/api/tags", timeout=10).json()["models"]}


def gguf_on_node(tag: str) -> str:
    """The sha256 of the GGUF the node's model ``tag`` was made from."""
    shown = requests.post(f"{OLLAMA}/api/show", json={"model": tag}, timeout=10).json()
    return shown["modelfile"].split("sha256-", 1)[1][:64]


def assert_answers(up, alias: str) -> None:
    """The gateway `up` made answers ``alias`` with words, from the VM node's Ollama."""
    key = up.outputs["gateway_master_key"].value
    said = requests.post(f"{up.outputs['gateway'].value['url']}/v1/chat/completions", timeout=60,
                         headers={"Authorization": f"Bearer {key}"},
                         json={"model": alias, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8})
    assert said.status_code == 200, said.text
    assert said.json()["choices"][0]["message"]["content"].strip()
    assert said.headers["x-litellm-model-id"] == f"{alias}@{sandbox.VM_NODE}"


def test_own_models_from_the_bucket_and_the_registry(estate):
    st, mlflow, digests = estate

    up = st.up()
    assert f"vm: copying {url(1)} for myai:1: 100%" in up.stdout  # the copy's progress, through the engine
    state = models_in_state(st)
    assert state["myai:1"]["digest"] == state["myai:1"]["pulled_digest"] == on_node()["myai:1"]
    assert gguf_on_node("myai:1") == gguf_on_node("myai:prod") == digests[1]
    assert (state["myai:prod"]["source"]["ref"], state["myai:prod"]["source"]["version"]) == (
        "models:/myai@production", "1")
    # The model made from the bucket answers through the gateway's alias.
    assert_answers(up, "mine")
    assert set(st.up().summary.resource_changes) == {"same"}

    # Deleted on the node behind the state's back: refresh drops it, the next up makes it again.
    requests.delete(f"{OLLAMA}/api/delete", json={"model": "myai:1"}, timeout=10).raise_for_status()
    st.refresh()
    assert "myai:1" not in models_in_state(st)
    again = st.up()
    assert again.summary.resource_changes.get("create") == 1
    assert gguf_on_node("myai:1") == digests[1]

    # The registry's alias moves to version 2: the preview shows that one model changing, in place.
    mlflow.set_alias("myai", "production", "2")
    preview = st.preview(diff=True)
    assert preview.change_summary.get("update") == 1 and "replace" not in preview.change_summary
    assert "myai-prod" in preview.stdout and '"2"' in preview.stdout
    st.up()
    assert gguf_on_node("myai:prod") == digests[2] and gguf_on_node("myai:1") == digests[1]
    assert models_in_state(st)["myai:prod"]["source"]["version"] == "2"
    # Rolled back: the alias names version 1 again.
    mlflow.set_alias("myai", "production", "1")
    assert st.preview().change_summary.get("update") == 1
    st.up()
    assert gguf_on_node("myai:prod") == digests[1]

    # Dropped from the stack: deleted from the node, the pulled tag and the other model left alone.
    nodes = json.loads(st.get_config("gpu-estate:nodes").value)
    ollama = nodes["vm"]["workloads"]["ollama"]
    ollama["gguf_models"].pop("myai:1")
    ollama["model_sizes"].pop("myai:1")
    gateway = json.loads(st.get_config("gpu-estate:gateway").value)
    gateway["aliases"].pop("mine")
    st.set_config("gpu-estate:nodes", sandbox.auto_config(nodes))
    st.set_config("gpu-estate:gateway", sandbox.auto_config(gateway))
    dropped = st.up()
    assert dropped.summary.resource_changes.get("delete") == 1
    assert "myai:1" not in on_node() and "myai:prod" in on_node()
    assert set(models_in_state(st)) == {"myai:prod", pulled_tag(st)}


def pulled_tag(st) -> str:
    """The pulled tag of the sandbox stack's VM node (``127.0.0.1:5000/library/tiny:1``)."""
    return json.loads(st.get_config("gpu-estate:nodes").value)["vm"]["workloads"]["ollama"]["models"][0]
