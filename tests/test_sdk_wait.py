"""The program's wait for its outstanding outputs (``providers.resource.await_outputs_as_they_finish``)
ends the way the SDK's own wait does. Each case runs a small program in a fresh interpreter under the
SDK's mocks, once with this project's wait and once with the SDK's (``ESTATE_SDK_WAIT``), and both must
register the same resources, run the same callbacks and fail, or not, with the same error."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from core.config import PROJECT_ROOT
from providers.resource import SDK_WAIT_ENV

PROGRAM = textwrap.dedent("""
    import asyncio, json, sys
    import pulumi
    import pulumi.runtime.stack
    from providers.resource import await_outputs_as_they_finish

    case = sys.argv[1]
    registered, ran = [], []

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            registered.append(args.name)
            return args.name + "-id", args.inputs

        def call(self, args):
            return {}

    pulumi.runtime.set_mocks(Mocks(), preview=False)
    ours = await_outputs_as_they_finish()
    await_outputs_as_they_finish()  # a second call changes nothing
    replaced = pulumi.runtime.stack.wait_for_rpcs.__module__ != "pulumi.runtime.stack"

    async def later(value, seconds):
        await asyncio.sleep(seconds)
        return value

    def note(tag):
        def record(value):
            ran.append(tag)
            return value
        return record

    @pulumi.runtime.test
    def program():
        first = pulumi.CustomResource("test:index:Thing", "first", {"size": 1})
        if case == "settle-out-of-order":
            # Outputs nobody returns, finishing in the reverse of the order they were made.
            for i in range(20):
                pulumi.Output.from_input(later(i, 0.002 * (20 - i))).apply(note(f"late-{i}"))
        if case == "register-from-apply":
            # A resource registered only once an output settles, and one more from its own outputs.
            def second(size):
                made = pulumi.CustomResource("test:index:Thing", "second", {"size": size + 1})
                made.id.apply(lambda _: pulumi.CustomResource("test:index:Thing", "third", {"size": 3}))
                return size
            first.id.apply(lambda _: 1).apply(second)
        if case == "apply-fails":
            pulumi.Output.from_input(later(1, 0.01)).apply(note("before"))
            first.id.apply(lambda _: (_ for _ in ()).throw(ValueError("node-7: no offer under 0.5 USD/h")))
        if case == "registration-failed":
            failed = asyncio.get_event_loop().create_future()
            failed.set_exception(pulumi.runtime.stack.ResourceRegistrationFailed("engine said no"))
            pulumi.Output(set(), failed, pulumi.Output.from_input(True).future()).apply(note("never"))
            pulumi.Output.from_input(later(2, 0.01)).apply(note("after"))
        return pulumi.Output.from_input(True)

    try:
        program()
        error = None
    except BaseException as err:
        error = f"{type(err).__name__}: {err}"
    print(json.dumps({"ours": ours, "replaced": replaced, "registered": sorted(registered),
                      "ran": sorted(ran), "error": error}))
""")


def run(case: str, sdk_wait: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != SDK_WAIT_ENV}
    env.update(PYTHONPATH=str(PROJECT_ROOT))
    if sdk_wait:
        env[SDK_WAIT_ENV] = "1"
    done = subprocess.run([sys.executable, "-c", PROGRAM, case], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["settle-out-of-order", "register-from-apply", "apply-fails",
                                  "registration-failed"])
def test_the_wait_ends_as_the_sdk_wait_does(case):
    ours, sdk = run(case, sdk_wait=False), run(case, sdk_wait=True)
    assert ours["ours"] is True and ours["replaced"] is True
    assert sdk["ours"] is False and sdk["replaced"] is False
    assert {k: ours[k] for k in ("registered", "ran", "error")} == {k: sdk[k] for k in ("registered", "ran", "error")}


def test_every_output_is_awaited_whatever_order_it_finishes_in():
    out = run("settle-out-of-order", sdk_wait=False)
    assert out["ran"] == sorted(f"late-{i}" for i in range(20))
    assert out["error"] is None


def test_resources_registered_from_outputs_are_awaited_before_the_program_ends():
    out = run("register-from-apply", sdk_wait=False)
    assert out["registered"] == ["first", "second", "third"]


def test_a_failed_output_stops_the_program_with_its_error():
    out = run("apply-fails", sdk_wait=False)
    assert out["error"] == "ValueError: node-7: no offer under 0.5 USD/h"


def test_the_engine_marker_for_a_failed_registration_does_not_stop_it():
    out = run("registration-failed", sdk_wait=False)
    assert out["error"] is None
    assert out["ran"] == ["after"]
