"""Budget policies against resources captured from the mocked program and hand-made violations."""
import pytest
from pulumi_policy import PolicyResource, PolicyResourceOptions, ResourceValidationArgs, StackValidationArgs

from policy import budget
from tests.mocks import run_program, stack_config


def opts():
    return PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                 custom_timeouts=None, additional_secret_outputs=[])


def as_resources(mocks):
    return [PolicyResource(r.typ, r.inputs, f"urn:{r.name}", r.name, opts(), None, None, [], {}) for r in mocks.resources]


def run_resource(fn, typ, props, config=None):
    seen = []
    fn(ResourceValidationArgs(typ, props, "urn:x", "x", opts(), None, config or {}), lambda m, urn=None: seen.append(m))
    return seen


def run_stack(resources, config):
    seen = []
    budget.monthly_budget(StackValidationArgs(resources, config), lambda m, urn=None: seen.append(m))
    return seen


@pytest.fixture(scope="module", params=["dev", "prod", "sandbox"])
def captured(request):
    config = stack_config(request.param)
    return as_resources(run_program(config, stack=request.param)), config["gpu-estate:budget"]


def test_committed_stacks_pass(captured):
    resources, b = captured
    assert run_stack(resources, {"monthly_usd": b["monthly_usd"]}) == []
    for r in resources:
        cfg = {"max_hourly_per_node": b["max_hourly_per_node"], "daily_usd": b.get("daily_usd", 50)}
        for fn in (budget.node_hourly_cap, budget.daily_cap, budget.idle_shutdown_required):
            assert run_resource(fn, r.resource_type, r.props, cfg) == [], (fn.__name__, r.name)


def test_stack_over_budget_is_refused(captured):
    resources, _ = captured
    (msg,) = run_stack(resources, {"monthly_usd": 10})
    assert "exceeds the monthly budget $10.00" in msg


STAMP = {"node": "inference", "provider": "tensordock", "hourly_usd": 0.8, "hours_per_month": 200,
         "idle_shutdown_minutes": 0, "pay_per_use": True}


def test_hourly_cap_names_node_figure_and_limit():
    (msg,) = run_resource(budget.node_hourly_cap, "pulumi-python:dynamic/gpu:Instance", {"stamps": STAMP},
                          {"max_hourly_per_node": 0.5})
    assert "'inference'" in msg and "$0.800/h" in msg and "$0.50/h" in msg


def test_idle_shutdown_required_for_part_time_pay_per_use():
    (msg,) = run_resource(budget.idle_shutdown_required, "pulumi-python:dynamic/gpu:Instance", {"stamps": STAMP})
    assert "no idle_shutdown_minutes" in msg
    ok = {**STAMP, "idle_shutdown_minutes": 30}
    assert run_resource(budget.idle_shutdown_required, "pulumi-python:dynamic/gpu:Instance", {"stamps": ok}) == []


def test_daily_cap_on_24h_cloud_vm_tags():
    tags = {"estate-node": "burst", "estate-hourly-usd": "3_1", "estate-hours-per-month": "730",
            "estate-pay-per-use": "true", "estate-idle-shutdown-minutes": "0"}
    (msg,) = run_resource(budget.daily_cap, "aws:ec2/launchTemplate:LaunchTemplate", {"tags": tags}, {"daily_usd": 50})
    assert "$74.40/day" in msg and "$50.00/day" in msg
