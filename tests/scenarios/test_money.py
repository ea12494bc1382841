"""Everyday edits and faults that must cost nothing, through the real engine on the sandbox:
placement-only edits update in place, a refresh that cannot see a node keeps what lives on it, and a
destroy is not blocked by a node that no longer answers."""
import json
from pathlib import Path

import pytest
from pulumi.automation import errors

import sandbox

pytestmark = [
    pytest.mark.engine,
    pytest.mark.money,
    pytest.mark.skipif(bool(sandbox.engine_missing()), reason=sandbox.engine_missing()),
]
MODEL = "pulumi-python:dynamic/ollama:Model"
CLOUDS = ("tensordock", "vastai", "runpod")


def ids(fakes):
    return {n: sorted(i["id"] for i in fakes[n].alive()) for n in CLOUDS}


def models_in_state(st):
    return sorted(r["urn"].rsplit("::", 1)[1] for r in st.export_stack().deployment.get("resources") or [] if r["type"] == MODEL)


@pytest.fixture
def estate(tmp_path):
    work = sandbox.project_copy(tmp_path / "project")
    with sandbox.fake_clouds() as fakes:
        st = sandbox.stack(sandbox.engine_env(fakes, tmp_path / "engine"), work_dir=work)
        st.up()
        yield st, fakes
        st.destroy()


def test_placement_only_edits_update_in_place(estate):
    st, fakes = estate
    rented = ids(fakes)
    nodes = json.loads(st.get_config("gpu-estate:nodes").value)
    nodes["inference"]["max_price_per_hour"] = 0.45           # a higher ceiling
    nodes["inference"]["regions"].append("France")            # one more region
    nodes["qwen"]["min_reliability"] = 0.85                   # a lower reliability floor
    nodes["batch"]["failover"] = ["vastai"]                   # a failover cloud
    nodes["batch"]["hours_per_month"] = 60                    # planned hours
    st.set_config("gpu-estate:nodes", sandbox.auto_config(nodes))
    preview = st.preview(diff=True)
    assert set(preview.change_summary) <= {"same", "update"}, preview.change_summary
    assert preview.change_summary["update"] >= 3
    up = st.up()
    assert set(up.summary.resource_changes) <= {"same", "update"}, up.summary.resource_changes
    assert ids(fakes) == rented  # nothing terminated, nothing rented again
    # the plan follows the new ceiling (+0.05 x 120 h) and the new hours (+20 h x $0.50); the serverless
    # endpoint's $5.76 and the Fly.io machine's $11.70 stay as they were
    assert up.outputs["cost"].value["total_monthly_usd"] == pytest.approx(145.46 + 0.05 * 120 + 20 * 0.5)


def test_a_machine_edit_replaces_it_and_says_which_key(estate):
    st, fakes = estate
    nodes = json.loads(st.get_config("gpu-estate:nodes").value)
    nodes["inference"]["disk_gb"] = 150
    st.set_config("gpu-estate:nodes", sandbox.auto_config(nodes))
    out = []
    preview = st.preview(on_output=out.append)
    assert preview.change_summary.get("replace") == 1
    assert "request.disk_gb, launch.disk_gb changed: this rents a new machine" in "".join(out) or \
        "launch.disk_gb, request.disk_gb changed: this rents a new machine" in "".join(out)


def test_refresh_and_destroy_with_a_node_that_does_not_answer(estate):
    st, fakes = estate
    before = models_in_state(st)
    assert len(before) == 5
    fakes["ollama"]["tensordock"].close()  # the idle watcher powered it off: its Ollama refuses connections
    st.refresh()
    assert models_in_state(st) == before  # nothing happened to them: they stay
    st.destroy()
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}  # nothing left billing
    assert models_in_state(st) == []


def test_a_node_its_watcher_stopped_stays_stopped_under_power_idle(estate):
    st, fakes = estate
    nodes = json.loads(st.get_config("gpu-estate:nodes").value)
    nodes["inference"]["power"] = "idle"
    st.set_config("gpu-estate:nodes", sandbox.auto_config(nodes))
    switched = st.up()
    assert set(switched.summary.resource_changes) <= {"same", "update"}
    (inst,) = fakes["tensordock"].alive()
    inst["status"] = "stopped"  # the idle watcher powered it off
    # The daily drift check (a preview with refresh) sees no drift, and writes no state.
    st.preview(refresh=True, expect_no_changes=True)
    st.refresh()
    st.preview(expect_no_changes=True)
    again = st.up()
    assert set(again.summary.resource_changes) == {"same"}
    assert inst["status"] == "stopped"  # `up` did not start it (and bill its GPU) behind the operator's back
    # Asking for it: power running starts it at the next `up`.
    nodes["inference"]["power"] = "running"
    st.set_config("gpu-estate:nodes", sandbox.auto_config(nodes))
    st.up()
    assert inst["status"] == "running"


def test_a_node_moved_to_a_new_urn_keeps_its_machine(estate):
    st, fakes = estate
    rented, models = ids(fakes), sandbox.pulled(fakes)
    # The node component's type token renamed without an alias: every node and all under it get new URNs.
    node_py = Path(st.workspace.work_dir) / "components" / "node.py"
    node_py.write_text(node_py.read_text().replace('TYPE = "gpu-estate:index:GpuNode"', 'TYPE = "gpu-estate:index:Node"'))
    out = []
    moved = st.up(on_output=out.append)
    assert moved.summary.resource_changes.get("create") and moved.summary.resource_changes.get("delete")
    # The new resources adopted the running machines by label; deleting the old ones terminated nothing.
    assert ids(fakes) == rented
    assert sandbox.pulled(fakes) == models  # the old model resources went with the old machine resources
    assert "was adopted by another resource in this run" in "".join(out)
    urns = [r["urn"] for r in st.export_stack().deployment["resources"] if r["type"] == "pulumi-python:dynamic/gpu:Instance"]
    assert len(urns) == 3 and all("gpu-estate:index:Node$" in u for u in urns)
    st.destroy()
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}


def test_a_protected_node_survives_a_destroy(estate):
    st, fakes = estate
    rented = ids(fakes)
    nodes = json.loads(st.get_config("gpu-estate:nodes").value)
    nodes["inference"]["protect"] = True
    st.set_config("gpu-estate:nodes", sandbox.auto_config(nodes))
    st.up()
    with pytest.raises(errors.CommandError, match="protected"):
        st.destroy()
    assert ids(fakes)["tensordock"] == rented["tensordock"]  # the protected machine is still rented
    nodes["inference"]["protect"] = False
    st.set_config("gpu-estate:nodes", sandbox.auto_config(nodes))
    st.up()
    st.destroy()
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}
