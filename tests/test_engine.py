"""The real engine on the sandbox stack: up, no-op up, model list edits, drift, refresh, destroy.

Runs on a copy of the project (scripts.sandbox.project_copy) so config edits leave Pulumi.sandbox.yaml as
committed. Skipped where the Pulumi CLI built by scripts/build-pulumi.sh is absent.
"""
import json

import pytest

from scripts import sandbox

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(not (sandbox.PULUMI_BIN / "pulumi").exists(),
                       reason=f"no Pulumi CLI at {sandbox.PULUMI_BIN}: run `make setup` (builds it from the Go module proxy)"),
]

INSTANCES, MODELS = 3, 5
RESOURCES = 5 + INSTANCES + MODELS  # stack, estate, three node components, instances, models


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    work = sandbox.project_copy(tmp_path_factory.mktemp("project"))
    with sandbox.fake_clouds() as fakes:
        st = sandbox.stack(sandbox.engine_env(fakes, tmp_path_factory.mktemp("engine")), work_dir=work)
        yield st, fakes
        st.destroy()


def test_lifecycle(estate):
    st, fakes = estate
    preview = st.preview()
    assert preview.change_summary.get("create") == RESOURCES
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}

    up = st.up()
    assert up.summary.resource_changes == {"create": RESOURCES}
    assert sandbox.alive(fakes) == {"tensordock": 1, "vastai": 1, "runpod": 1}
    assert sandbox.pulled(fakes) == {"tensordock": ["llama3.2:3b", "qwen3:8b"], "vastai": ["qwen3:14b", "qwen3:8b"],
                                     "runpod": ["tinyllama:1.1b"]}
    nodes = up.outputs["nodes"].value
    assert nodes["inference"]["ports"]["11434"] > 0
    assert up.outputs["cost"].value["total_monthly_usd"] == 128

    again = st.up()
    assert again.summary.resource_changes == {"same": RESOURCES}
    assert sum(o.pulls() for o in fakes["ollama"].values()) == MODELS  # present models cost no pull

    # Editing one node's model list pulls the new tag and removes the dropped one, nothing else.
    ids = {name: [i["id"] for i in fakes[name].alive()] for name in ("tensordock", "vastai", "runpod")}
    nodes_cfg = json.loads(st.get_config("gpu-estate:nodes").value)
    nodes_cfg["qwen"]["workloads"]["ollama"]["models"] = ["qwen3:14b", "llama3.2:3b"]
    st.set_config("gpu-estate:nodes", sandbox.auto_config(nodes_cfg))
    edit = st.up()
    assert edit.summary.resource_changes == {"create": 1, "delete": 1, "same": RESOURCES - 1}
    assert sandbox.pulled(fakes)["vastai"] == ["llama3.2:3b", "qwen3:14b"]
    assert {name: [i["id"] for i in fakes[name].alive()] for name in ids} == ids

    # Stopped behind the state's back: refresh sees it, the next up starts it again.
    (td_inst,) = fakes["tensordock"].alive()
    td_inst["status"] = "stopped"
    st.refresh()
    converge = st.up()
    assert converge.summary.resource_changes.get("update") == 1
    assert td_inst["status"] == "running"

    # Preempted: refresh drops it from state, the next up rents a new one and pulls its models again.
    (vast_inst,) = fakes["vastai"].alive()
    fakes["vastai"].preempt(vast_inst["id"])
    fakes["ollama"]["vastai"].installed.clear()  # the new machine starts with an empty disk
    st.refresh()
    st.up()
    assert sandbox.alive(fakes) == {"tensordock": 1, "vastai": 1, "runpod": 1}
    assert fakes["vastai"].alive()[0]["id"] != vast_inst["id"]
    assert sandbox.pulled(fakes)["vastai"] == ["llama3.2:3b", "qwen3:14b"]

    st.destroy()
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}
    assert sandbox.pulled(fakes) == {"tensordock": [], "vastai": [], "runpod": []}
