"""Machines launched before a workload's model files were resources of their own fetched them at boot: the
fetch script was part of a VM's user-data and of a Vast.ai container's start script, and both are what the
machine *is* (a change re-rents it). The launches those machines were made with (``legacy_launch/``, rendered
by the code before, for a TensorDock VM reached directly and a Vast.ai container, with and without workflows, a
gated file's token and the idle watcher) differ from today's by that fetch alone, which the instance's diff
sets aside (and, on a VM with workflows, the images bridge's entrypoint started once, now started again on
exit): an update, no new machine. Any other change still replaces."""
import json
from pathlib import Path

import pytest

from components import workloads
from core.config import parse_spec
from providers import gpu_instance as gi
from tests.mocks import stack_estate

LEGACY = Path(__file__).parent / "legacy_launch"


def launched(case):
    """(key, the launch text the machine was made with, the one rendered now) for a fixture."""
    doc = json.loads((LEGACY / f"{case}.json").read_text())
    raw = stack_estate("prod")
    raw["budget"]["monthly_usd"] = 5000
    raw["nodes"]["legacy"] = doc["node"]
    node = parse_spec(raw).nodes["legacy"]
    if "onstart" in doc:
        return "onstart", doc["onstart"], workloads.container_launch(node)[3]
    return "cloud_init", doc["cloud_init"], workloads.render_cloud_init(node, (), workloads=True)


def props(key, text, image="yanwk/comfyui-boot:cu124-slim"):
    return {"label": "estate-prod-legacy", "clouds": ["vastai"], "power": "running",
            "request": {"gpu_model": "rtx4090", "gpu_count": 1},
            "launch": {"image": image, "disk_gb": 100, key: text}}


@pytest.mark.parametrize("case", ["tensordock", "tensordock-no-workflows", "vastai", "vastai-gated-idle"])
def test_a_machine_launched_with_the_boot_fetch_is_updated_not_replaced(case):
    key, old, new = launched(case)
    assert workloads.CHECKPOINT_SCRIPT in old and workloads.CHECKPOINT_SCRIPT not in new
    if case == "tensordock":
        # Its compose project also had the images bridge started once, where it is now started again on
        # exit: the machine keeps its launch until it is replaced for what it is.
        assert gi.without_boot_fetch(key, old) != new
        assert "& exec /runner-scripts/entrypoint.sh" in old and "(d=1; while :;" in new
    else:
        assert old != new and gi.without_boot_fetch(key, old) == new
    assert gi.replace_reasons("vastai:1", props(key, old), props(key, new)) == []
    diff = gi.GpuInstanceProvider().diff("vastai:1", props(key, old), props(key, new))
    assert diff.changes and not diff.replaces


def test_any_other_change_of_such_a_launch_still_replaces_the_machine():
    key, old, new = launched("vastai")
    edited = new.replace("set -eu", "set -eu\necho another start", 1)
    assert gi.replace_reasons("vastai:1", props(key, old), props(key, edited)) == ["launch.onstart"]
    assert gi.replace_reasons("vastai:1", props(key, old), props(key, new, image="other/image:1")) == ["launch.image"]
    key, old, new = launched("tensordock")
    opened = new.replace("[ufw, allow, \"22/tcp\"]", "[ufw, allow, \"2222/tcp\"]")
    assert opened != new and gi.replace_reasons("vastai:1", props(key, old), props(key, opened)) == ["launch.cloud_init"]
    other = new.replace("--port 8189", "--port 8190")  # the bridge's own words, inside its restart loop
    assert other != new and gi.replace_reasons("vastai:1", props(key, old), props(key, other)) == ["launch.cloud_init"]


def test_a_launch_without_the_fetch_is_left_as_it_is():
    _key, _old, new = launched("vastai")
    assert gi.without_boot_fetch("onstart", new) == new and gi.without_boot_fetch("cloud_init", None) is None
