"""The SDK runtime's own per-resource debug messages are dropped before the program registers anything, and
only those: the program's debug messages and every warning still reach the engine, and
``ESTATE_SDK_DEBUG`` keeps the SDK's. Each case runs in a fresh interpreter under the SDK's mocks, whose
engine hands every message it is sent to a logger."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from core.config import PROJECT_ROOT
from providers.resource import SDK_DEBUG_ENV

PROGRAM = textwrap.dedent("""
    import json, logging, sys
    import pulumi
    from providers.resource import quiet_sdk_debug

    sent = []

    class Engine(logging.Handler):
        def emit(self, record):
            sent.append([record.levelname, record.getMessage()])

    logger = logging.getLogger("engine")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Engine())

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            return args.name + "-id", args.inputs

        def call(self, args):
            return {}

    pulumi.runtime.set_mocks(Mocks(), preview=False, logger=logger)
    dropped = quiet_sdk_debug()
    quiet_sdk_debug()  # a second call changes nothing

    @pulumi.runtime.test
    def program():
        pulumi.log.debug("the estate's own debug message")
        pulumi.log.warn("the estate's own warning")
        parent = pulumi.ComponentResource("test:index:Parent", "parent")
        pulumi.CustomResource("test:index:Child", "child", {"size": 1}, pulumi.ResourceOptions(parent=parent))
        parent.register_outputs({})
        return pulumi.Output.from_input(True)

    program()
    print(json.dumps({"dropped": dropped, "sent": sent}))
""")


def run(env_extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k != SDK_DEBUG_ENV}
    env.update(env_extra, PYTHONPATH=str(PROJECT_ROOT))
    done = subprocess.run([sys.executable, "-c", PROGRAM], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def sdk_registration_debug(sent: list) -> list:
    """The SDK's messages about the program's resources (the stack itself registers before the program
    runs, as under the engine, so its one message still goes)."""
    return [m for level, m in sent if level == "DEBUG" and "Stack" not in m and
            m.startswith(("registering resource", "resource registration", "register resource outputs"))]


def test_the_sdk_runtime_debug_messages_are_dropped_and_nothing_else():
    out = run({})
    assert out["dropped"] is True
    assert sdk_registration_debug(out["sent"]) == []
    assert ["DEBUG", "the estate's own debug message"] in out["sent"]
    assert ["WARNING", "the estate's own warning"] in out["sent"]


@pytest.mark.parametrize("value", ["1", "yes"])
def test_estate_sdk_debug_keeps_them(value):
    out = run({SDK_DEBUG_ENV: value})
    assert out["dropped"] is False
    messages = sdk_registration_debug(out["sent"])
    # The SDK registers the stack, the component and the child, and says so for each.
    assert any("name=child" in m for m in messages) and any("name=parent" in m for m in messages)
    assert ["DEBUG", "the estate's own debug message"] in out["sent"]
