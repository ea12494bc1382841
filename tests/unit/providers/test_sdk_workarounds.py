"""The SDK workarounds of providers/sdk_workarounds.py: the defect each works around, shown on the pinned SDK
without it; the workaround, shown to remove it; and its version guard, which leaves the SDK alone elsewhere."""
import pickle
import subprocess
import sys

import pytest

from core.config import PROJECT_ROOT
from providers import sdk_workarounds
from providers.sdk_workarounds import PICKLER_CHECKED, PICKLER_ISSUE, pickler_left_as_found, sdk_checked

# Registers dynamic resources of the smallest provider under mocks, each through the SDK's own base class or
# through the project's, until a thousand are registered or one fails; prints how many were, and how many
# sorting wrappers the pickler then holds.
REGISTER = '''
import pickle, sys
import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider
from providers.resource import DynamicResource
from tests.unit.providers.test_sdk_workarounds import wrapper_depth

class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        return [args.name + "-id", args.inputs]
    def call(self, args):
        return {}

class Provider(ResourceProvider):
    def create(self, props):
        return CreateResult("id", props)

class Sdks(Resource, module="probe", name="Sdks"):
    pass

class Projects(DynamicResource, module="probe", name="Projects"):
    pass

pulumi.runtime.set_mocks(Mocks(), preview=False)
base = {"sdk": Sdks, "project": Projects}[sys.argv[1]]
registered = 0
try:
    for i in range(1000):
        base(Provider(), f"r{i}", {"a": 1})
        registered += 1
except RecursionError:
    pass
print(registered, wrapper_depth(pickle._Pickler._batch_setitems))
'''


def wrapper_depth(method) -> int:
    """How many sorting wrappers the SDK has stacked on the pickler's ``_batch_setitems``."""
    depth = 0
    while getattr(method, "__closure__", None):
        inner = [c.cell_contents for c in method.__closure__ if callable(c.cell_contents)]
        if not inner:
            break
        method, depth = inner[0], depth + 1
    return depth


def _register(base: str):
    done = subprocess.run([sys.executable, "-c", REGISTER, base], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT)})
    assert done.returncode == 0, done.stderr
    registered, depth = map(int, done.stdout.split())
    return registered, depth


def test_the_sdk_alone_fails_a_few_hundred_dynamic_resources_with_recursion_error():
    # The defect, on the pinned SDK: each registration wraps the pickler's method once more, and pickling
    # a dictionary goes through every wrapper, until Python's recursion limit (1000 frames) is reached.
    registered, depth = _register("sdk")
    assert registered < 500 and depth >= registered


def test_the_projects_base_registers_a_thousand_and_leaves_the_pickler_as_it_was():
    assert _register("project") == (1000, 0)


def test_the_program_leaves_the_pickler_as_it_was():
    from tests.mocks import run_program, stack_config

    config = stack_config("sandbox")
    nodes = config["gpu-estate:nodes"]
    nodes.update({f"node-{i}": nodes["qwen"] for i in range(30)})  # the sandbox's estate and 30 more nodes
    config["gpu-estate:budget"] = {"monthly_usd": 1_000_000}
    before = pickle._Pickler._batch_setitems
    mocks = run_program(config, stack="sandbox")
    assert len(mocks.of_type("pulumi-python:dynamic/gpu:Instance")) > 30
    assert pickle._Pickler._batch_setitems is before


def test_the_checked_versions_are_the_pinned_sdk():
    pinned = next(line.split("==")[1].strip() for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines()
                  if line.startswith("pulumi=="))
    assert PICKLER_CHECKED == (pinned, pinned) and sdk_workarounds.sdk_version() == pinned
    assert sdk_checked("a workaround", PICKLER_CHECKED, PICKLER_ISSUE, warn=pytest.fail)


@pytest.mark.parametrize("version", ["3.258.0", "3.260.0", "4.0.0", "3.259.0rc1", "3.259.0.dev0+local"])
def test_any_other_sdk_version_warns_once_naming_the_versions_and_the_issue(version):
    warnings = []
    assert not sdk_checked(f"a workaround on {version}", PICKLER_CHECKED, PICKLER_ISSUE, version, warnings.append)
    assert not sdk_checked(f"a workaround on {version}", PICKLER_CHECKED, PICKLER_ISSUE, version, warnings.append)
    assert len(warnings) == 1 and version in warnings[0] and "3.259.0" in warnings[0] and PICKLER_ISSUE in warnings[0]


def test_outside_the_checked_versions_the_pickler_is_left_to_the_sdk(monkeypatch):
    monkeypatch.setattr(pickle._Pickler, "_batch_setitems", pickle._Pickler._batch_setitems)  # restored after
    monkeypatch.setattr(sdk_workarounds.pulumi.log, "warn", lambda *_a, **_k: None)
    sdks = object()
    with pickler_left_as_found(version="3.300.0") as applied:
        pickle._Pickler._batch_setitems = sdks  # what the SDK does while it registers
    assert applied is False and pickle._Pickler._batch_setitems is sdks
    with pickler_left_as_found() as applied:
        pickle._Pickler._batch_setitems = object()
    assert applied is True and pickle._Pickler._batch_setitems is sdks
