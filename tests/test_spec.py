"""The spec's validation: each bad config fails before any resource, naming the key path and value."""
import copy

import pytest

from core.config import parse_spec
from core.errors import ConfigError
from tests.mocks import run_program, stack_config, stack_estate


def set_path(d, path, value):
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[k]
    if value is DELETE:
        del d[keys[-1]]
    else:
        d[keys[-1]] = value


DELETE = object()

BAD = [
    ("nodes.inference.provider", "lambdalabs", "gpu-estate:nodes.inference.provider", "lambdalabs"),
    ("nodes.inference.gpu.model", "rtx5090ti", "gpu-estate:nodes.inference.gpu.model", "rtx5090ti"),
    ("nodes.inference.gpu.count", 0, "gpu-estate:nodes.inference.gpu.count", "0"),
    ("nodes.inference.workloads.ollama.models", ["qwen3:32b", "qwen3:30b-a3b"],
     "gpu-estate:nodes.inference.workloads.ollama.models", "VRAM"),
    ("nodes.inference.workloads.ollama.models", ["not-a-model:1b"],
     "gpu-estate:nodes.inference.workloads.ollama.models[0]", "not-a-model:1b"),
    ("nodes.qwen.disk_gb", 40, "gpu-estate:nodes.qwen.disk_gb", "40"),
    ("nodes.inference.market", "spot", "gpu-estate:nodes.inference", "spot"),
    ("nodes.inference.hours_per_month", 800, "gpu-estate:nodes.inference.hours_per_month", "800"),
    ("nodes.inference.workloads.jupyter", {}, "gpu-estate:nodes.inference.workloads.jupyter", "jupyter"),
    ("nodes.vps.address", DELETE, "gpu-estate:nodes.vps", "address"),
    ("gateway.fallbacks.gpt-4", ["openai-gpt-4o", "gpt-5"], "gpu-estate:gateway.fallbacks.gpt-4[1]", "gpt-5"),
    ("gateway.aliases.gpt-4", "llama3.3:70b", "gpu-estate:gateway.aliases.gpt-4", "llama3.3:70b"),
    ("gateway.node", "nowhere", "gpu-estate:gateway.node", "nowhere"),
    ("tunnels", [{"node": "qwen", "ports": [9999]}], "gpu-estate:tunnels[0].ports[0]", "9999"),
    ("budget.monthly_usd", -5, "gpu-estate:budget.monthly_usd", "-5"),
    ("budget.monthly_usd", 100, "gpu-estate:budget.monthly_usd", "100"),
    ("budget.max_hourly_per_node", 0.2, "gpu-estate:nodes.inference", "max_hourly_per_node"),
    ("budget", DELETE, "gpu-estate:budget", "required"),
    ("storage.models.readers", ["ghost"], "gpu-estate:storage.models.readers[0]", "ghost"),
    ("nodes.burst.instance_type", "p9.mega", "gpu-estate:nodes.burst.gpu", "p9.mega"),
    # A GPU the node's marketplace does not rent (Vast.ai and TensorDock list no A10G) is refused at
    # preview, not left to find no offer.
    ("nodes.qwen.gpu", {"model": "a10g", "count": 2}, "gpu-estate:nodes.qwen.gpu.model", "vastai does not rent"),
    ("nodes.inference.gpu.model", "h200", "gpu-estate:nodes.inference.gpu.model", "tensordock does not rent"),
    ("nodes.vps.power", "idle", "gpu-estate:nodes.vps.power", "idle_shutdown_minutes"),
]


@pytest.mark.parametrize("path,value,key,shown", BAD, ids=[f"{b[0]}={b[1]!r}"[:60] for b in BAD])
def test_bad_config_names_key_and_value(path, value, key, shown):
    cfg = stack_estate("prod")
    set_path(cfg, path, value)
    with pytest.raises(ConfigError) as err:
        parse_spec(cfg)
    lines = [(p, m) for p, m in err.value.problems if p == key]
    assert lines, f"no problem at {key}: {err.value.problems}"
    assert any(shown in m or shown in p for p, m in lines), err.value.problems


def test_route_to_undeployed_service():
    cfg = stack_estate("prod")
    cfg["routes"]["comfy.example.com"] = {"service": "inference/comfyui", "auth": "access"}
    with pytest.raises(ConfigError, match=r"gpu-estate:routes\.comfy\.example\.com\.service: no node runs 'inference/comfyui'"):
        parse_spec(cfg)


def test_model_server_without_auth_is_refused():
    cfg = stack_estate("prod")
    cfg["routes"]["mlflow.example.com"]["auth"] = "none"
    with pytest.raises(ConfigError, match=r"routes\.mlflow\.example\.com\.auth: mlflow must not be published"):
        parse_spec(cfg)


def test_unknown_top_level_key():
    cfg = stack_estate("dev")
    cfg["budgets"] = {}
    with pytest.raises(ConfigError, match="gpu-estate:budgets: unknown key"):
        parse_spec(cfg)


def test_all_problems_reported_at_once():
    cfg = stack_estate("prod")
    cfg["nodes"]["inference"]["gpu"]["model"] = "nope"
    cfg["gateway"]["node"] = "nowhere"
    with pytest.raises(ConfigError) as err:
        parse_spec(cfg)
    paths = {p for p, _ in err.value.problems}
    # Field errors stop cross-checks; a second field error in the same pass is still listed.
    assert "gpu-estate:nodes.inference.gpu.model" in paths


def test_gpu_spellings_normalise():
    cfg = stack_estate("dev")
    cfg["nodes"]["inference"]["gpu"]["model"] = "NVIDIA GeForce RTX 4090"
    assert parse_spec(cfg).nodes["inference"].gpu.model == "rtx4090"


def test_bad_config_registers_nothing():
    config = stack_config("dev")
    config = copy.deepcopy(config)
    config["gpu-estate:nodes"]["inference"]["gpu"]["model"] = "rtx9999"
    with pytest.raises(Exception, match="rtx9999"):
        mocks = run_program(config, stack="dev")
        assert mocks.resources == []


def test_committed_stacks_parse():
    for stack in ("dev", "prod"):
        assert parse_spec(stack_estate(stack)).budget.monthly_usd > 0
