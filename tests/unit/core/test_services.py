"""The hosted services' keys as the stack gives them: each mistake refused before anything exists, naming
the key and the value; the cross-field rules; Cloud Run's price per second of instance time."""
import copy

import pytest

from core import pricing
from core.config import parse_spec
from core.errors import ConfigError
from tests.mocks import stack_estate


def refused(raw) -> str:
    """What parsing ``raw`` refuses, as the operator reads it."""
    with pytest.raises(ConfigError) as err:
        parse_spec(raw)
    return str(err.value)


def prod_with(**services):
    raw = stack_estate("prod")
    for name, edit in services.items():
        raw["services"][name] = {**raw["services"][name], **edit}
    return raw


@pytest.mark.parametrize("service,edit,key,shown", [
    ("llama-l4", {"cpu": 2}, "services.llama-l4", "(got 2 and 16)"),
    ("llama-l4", {"region": "us-west1"}, "services.llama-l4", "'us-west1'"),
    ("llama-l4", {"min_instances": 3, "max_instances": 2}, "services.llama-l4", "min_instances 3"),
    ("llama-l4", {"gpu": "nvidia-h100"}, "services.llama-l4.gpu", "nvidia-h100"),
    ("llama-l4", {"image": "ghcr.io/ggml-org/llama.cpp:server-cuda-b6870"}, "services.llama-l4.image", "ghcr.io"),
    ("llama-l4", {"gguf": "../etc/passwd"}, "services.llama-l4.gguf", "../etc/passwd"),
    ("llama-l4", {"bucket": "weights"}, "services.llama-l4.bucket", "'weights'"),
    ("chat-fallback", {"provider": "heroku"}, "services.chat-fallback.provider", "heroku"),
    ("chat-fallback", {"volume_gb": 0}, "services.chat-fallback.volume_gb", "0"),
    ("chat-fallback", {"memory_mb": 2000}, "services.chat-fallback", "2000"),
])
def test_a_bad_value_is_refused_naming_its_key(service, edit, key, shown):
    text = refused(prod_with(**{service: edit}))
    assert f"gpu-estate:{key}" in text and shown in text, text


def test_an_unknown_key_names_the_nearest():
    raw = stack_estate("prod")
    raw["services"]["chat-fallback"]["regoin"] = "iad"
    assert "gpu-estate:services.chat-fallback.regoin" in refused(raw)


def test_names_apps_and_buckets_are_cross_checked():
    raw = stack_estate("prod")
    raw["services"]["second"] = copy.deepcopy(raw["services"]["chat-fallback"])
    raw["services"]["goblin-inference"] = copy.deepcopy(raw["services"]["chat-fallback"])
    raw["services"]["goblin-inference"]["app"] = "goblin-three"
    text = refused(raw)
    assert "gpu-estate:services.second.app: service 'chat-fallback' already runs Fly app 'goblin-chat'" in text
    assert "gpu-estate:services.goblin-inference: 'goblin-inference' is also a serverless endpoint's name" in text
    raw = stack_estate("prod")
    raw["storage"]["models"]["provider"] = "s3"
    assert "gpu-estate:services.llama-l4.bucket: not a GCS bucket of gpu-estate:storage" in refused(raw)


def test_an_alias_may_be_served_by_a_service_alone():
    spec = parse_spec(stack_estate("prod"))
    assert spec.gateway.aliases["chat-fallback"] == "tinyllama-1.1b-chat"
    raw = stack_estate("prod")
    raw["services"]["chat-fallback"]["served_name"] = "something-else"
    assert "gpu-estate:gateway.aliases.chat-fallback: no node serves 'tinyllama-1.1b-chat'" in refused(raw)


def test_cloud_run_bills_instance_seconds_and_its_kept_instances_all_month():
    hourly = 3600 * (0.0001867 + 4 * 0.000018 + 16 * 0.000002)
    idle = pricing.estimate_estate(parse_spec(prod_with(**{"llama-l4": {"busy_hours_per_month": 0}})))
    (run,) = [s for s in idle.services if s.service == "llama-l4"]
    assert run.monthly_usd == 0 and run.instance_hourly_usd == pytest.approx(hourly, abs=1e-4)
    raw = prod_with(**{"llama-l4": {"min_instances": 1, "busy_hours_per_month": 10, "cpu": 8, "memory_gib": 32}})
    raw["budget"] = {**raw["budget"], "monthly_usd": 2000, "max_hourly_per_node": 2}
    kept = pricing.estimate_estate(parse_spec(raw))
    (run,) = [s for s in kept.services if s.service == "llama-l4"]
    big = 3600 * (0.0001867 + 8 * 0.000018 + 32 * 0.000002)
    assert run.monthly_usd == pytest.approx(round(big, 4) * (730 + 10), abs=0.01)
    assert run.always_on_daily_usd == pytest.approx(round(big, 4) * 24, abs=0.01)
    assert run.burst_hourly_usd == pytest.approx(round(big, 4))


def test_the_budget_counts_the_services():
    raw = prod_with(**{"llama-l4": {"busy_hours_per_month": 100}})
    assert "gpu-estate:budget.monthly_usd: the estate's own estimate is $" in refused(raw)


def test_an_instance_dearer_than_the_hourly_cap_is_refused_at_preview():
    raw = stack_estate("prod")
    raw["budget"]["max_hourly_per_node"] = 1.0
    assert ("gpu-estate:services.llama-l4: an instance is $1.046/h, above gpu-estate:budget.max_hourly_per_node "
            "$1.00/h") in refused(raw)


@pytest.mark.parametrize("edit,shown", [
    ({"identity_port": 8000}, "the gateway (gateway.port 8000) already listens on 8000"),
    ({"identity_port": 22}, "the node's SSH"),
    ({"identity_port": 4100, "health": True}, "the health agent (health.port 4100)"),
    ({"identity_port": 70000}, "gateway.identity_port"),
])
def test_the_identity_proxys_port_may_not_clash_on_the_gateway_host(edit, shown):
    raw = stack_estate("prod")
    if edit.pop("health", False):
        raw["health"] = {}
    raw["gateway"].update(edit)
    message = refused(raw)
    assert "gpu-estate:gateway.identity_port" in message and shown in message
    assert f"(got {edit['identity_port']})" in message or edit["identity_port"] > 65535


def test_the_identity_proxys_port_is_free_for_anything_without_a_service_checking_id_tokens():
    raw = stack_estate("prod")
    raw["nodes"]["vps"]["workloads"]["open-webui"] = {"port": 4101}
    assert "already listens on 4101" in refused(raw)
    del raw["services"]["llama-l4"]
    raw["gateway"]["aliases"].pop("gcp-llama")
    for chain in raw["gateway"]["fallbacks"].values():
        if "gcp-llama" in chain:
            chain.remove("gcp-llama")
    raw["gateway"]["fallbacks"].pop("gcp-llama")
    assert parse_spec(raw).nodes["vps"].port("open-webui") == 4101
