"""The policy pack on the hosted services of the prod stack, as the program stamps them: Fly.io's machine
(a map of stamps) and Cloud Run's service (``estate-*`` labels) count in the budget like a node."""
import pytest
from pulumi_policy import PolicyResource, StackValidationArgs

from policy import budget, images, safety
from policy.stamps import CLOUD_RUN_SERVICE, FLY_MACHINE, node_stamps
from tests.mocks import run_program, stack_config
from tests.unit.policy.test_policy import as_resources, one, opts


@pytest.fixture(scope="module")
def prod():
    return {r.name: r for r in as_resources(run_program(stack_config("prod"), stack="prod"))}


def test_both_read_as_nodes_with_their_figures(prod):
    fly = node_stamps(FLY_MACHINE, prod["service-chat-fallback"].props)
    run = node_stamps(CLOUD_RUN_SERVICE, prod["service-llama-l4"].props)
    assert fly["provider"] == "fly" and fly["monthly_usd"] == pytest.approx(11.70)
    assert fly["hourly_usd"] * fly["hours_per_month"] == pytest.approx(11.70, abs=0.01)
    assert run["provider"] == "cloudrun" and run["gpu"] == "l4" and run["hourly_usd"] == pytest.approx(1.0465)
    assert run["hourly_usd"] * run["hours_per_month"] == pytest.approx(31.39, abs=0.01)
    assert run["always_on_daily_usd"] == 0  # scaled to zero: nothing bills on a quiet day


def test_the_caps_see_them(prod):
    l4 = prod["service-llama-l4"]
    (msg,) = one(budget.node_hourly_cap, CLOUD_RUN_SERVICE, l4.props, {"max_hourly_per_node": 1.0})
    assert "node 'llama-l4' costs $1.046/h, above the cap $1.00/h" in msg
    fly = prod["service-chat-fallback"]
    assert one(budget.daily_cap, FLY_MACHINE, fly.props, {"daily_usd": 1}) == []
    (msg,) = one(budget.daily_cap, FLY_MACHINE, fly.props, {"daily_usd": 0.1})
    assert msg == "service 'chat-fallback' (fly) bills $0.38/day whatever its traffic, above $0.10/day"
    seen = []
    budget.monthly_budget(StackValidationArgs([PolicyResource(FLY_MACHINE, fly.props, "urn:f", "f", opts(), None,
                                                              None, [], {})], {"monthly_usd": 10}),
                          lambda m, urn=None: seen.append(m))
    (msg,) = seen
    assert "estimated $11.70/month" in msg


def test_providers_gpus_and_images_are_checked(prod):
    fly, l4 = prod["service-chat-fallback"], prod["service-llama-l4"]
    (msg,) = one(safety.allowed_providers, FLY_MACHINE, fly.props, {"providers": ["tensordock"]})
    assert "fly" in msg
    assert one(safety.allowed_providers, CLOUD_RUN_SERVICE, l4.props, {"providers": ["cloudrun"]}) == []
    (msg,) = one(safety.allowed_gpus, CLOUD_RUN_SERVICE, l4.props, {"gpus": ["rtx4090"]})
    assert "l4" in msg
    assert images.deployed_images(FLY_MACHINE, fly.props) == ["ghcr.io/ggml-org/llama.cpp:server-b6870"]
    assert images.deployed_images(CLOUD_RUN_SERVICE, l4.props) == [
        "us-east4-docker.pkg.dev/example-estate-prod/estate/llama.cpp:server-cuda-b6870"]
    (msg,) = one(images.images_pinned_by_digest, FLY_MACHINE, fly.props, {"require_digest": True})
    assert "server-b6870" in msg
