"""The real engine on the sandbox stack: up, no-op up, drift, refresh, destroy.

Skipped where the Pulumi CLI built by scripts/build-pulumi.sh is absent.
"""
import pytest

from scripts import sandbox

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(not (sandbox.PULUMI_BIN / "pulumi").exists(),
                       reason=f"no Pulumi CLI at {sandbox.PULUMI_BIN}: run `make setup` (builds it from the Go module proxy)"),
]


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    with sandbox.fake_clouds() as fakes:
        st = sandbox.stack(sandbox.engine_env(fakes, tmp_path_factory.mktemp("engine")))
        yield st, fakes
        st.destroy()


def test_lifecycle(estate):
    st, fakes = estate
    preview = st.preview()
    assert preview.change_summary.get("create") == 8
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}

    up = st.up()
    assert up.summary.resource_changes == {"create": 8}
    assert sandbox.alive(fakes) == {"tensordock": 1, "vastai": 1, "runpod": 1}
    nodes = up.outputs["nodes"].value
    assert nodes["inference"]["ports"]["11434"] > 0
    assert up.outputs["cost"].value["total_monthly_usd"] == 128

    again = st.up()
    assert again.summary.resource_changes == {"same": 8}

    # Stopped behind the state's back: refresh sees it, the next up starts it again.
    (td_inst,) = fakes["tensordock"].alive()
    td_inst["status"] = "stopped"
    st.refresh()
    converge = st.up()
    assert converge.summary.resource_changes.get("update") == 1
    assert td_inst["status"] == "running"

    # Preempted: refresh drops it from state, the next up rents a new one, still one per node.
    (vast_inst,) = fakes["vastai"].alive()
    fakes["vastai"].preempt(vast_inst["id"])
    st.refresh()
    st.up()
    assert sandbox.alive(fakes) == {"tensordock": 1, "vastai": 1, "runpod": 1}
    assert fakes["vastai"].alive()[0]["id"] != vast_inst["id"]

    st.destroy()
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}
