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
    # An unknown key, at any level, is named with the nearest key that exists there.
    ("tunnel", [{"node": "qwen", "ports": [8188]}], "gpu-estate:tunnel", "did you mean `tunnels`?"),
    ("nodes.qwen.gpuu", {"model": "rtx3090"}, "gpu-estate:nodes.qwen.gpuu", "did you mean `gpu`?"),
    ("nodes.qwen.ssh", {"usr": "root"}, "gpu-estate:nodes.qwen.ssh.usr", "did you mean `user`?"),
    ("gateway.aliasess", {}, "gpu-estate:gateway.aliasess", "did you mean `aliases`?"),
    ("nodes.qwen.workloads.comfyui.chekpoints", [], "gpu-estate:nodes.qwen.workloads.comfyui.chekpoints",
     "did you mean `checkpoints`?"),
    ("nodes.qwen.workloads.coder", {"kind": "vlm", "model": "Qwen/Qwen3-8B"},
     "gpu-estate:nodes.qwen.workloads.coder.kind", "did you mean `vllm`?"),
    # A kind's name misspelt is not taken for a container of one's own (which would ask for an image).
    ("nodes.qwen.workloads.comfy-ui", {}, "gpu-estate:nodes.qwen.workloads", "'comfy-ui' looks like `comfyui`"),
    # A value the program would ignore is refused, saying where it belongs.
    ("nodes.vps.workloads.litellm.port", 8000, "gpu-estate:nodes.vps.workloads.litellm.port", "gateway.port"),
    ("nodes.vps.workloads.litellm.secret_env", ["OPENAI_API_KEY"], "gpu-estate:nodes.vps.workloads.litellm.secret_env",
     "gateway.external.<provider>.api_key_env"),
    ("nodes.vps.workloads.litellm.env", {"LITELLM_LOG": "DEBUG"}, "gpu-estate:nodes.vps.workloads.litellm.env",
     "gpu-estate:gateway"),
    ("nodes.inference.workloads.litellm", {}, "gpu-estate:nodes.inference.workloads.litellm", "gateway.node"),
    ("nodes.qwen.workloads.ollama.vram_gb", 30, "gpu-estate:nodes.qwen.workloads.ollama.vram_gb", "models' own sizes"),
    ("nodes.inference.workloads.open-webui.vram_gb", 2, "gpu-estate:nodes.inference.workloads.open-webui.vram_gb",
     "gpu: true"),
    ("nodes.vps.workloads.api", {"image": "ghcr.io/you/api:1", "port": 9000, "vram_gb": 4},
     "gpu-estate:nodes.vps.workloads.api.vram_gb", "no GPU"),
    ("nodes.qwen.workloads.ollama.model_sizes", {"qwen3:4b": {"disk_gb": 2.6, "vram_gb": 3.5}},
     "gpu-estate:nodes.qwen.workloads.ollama.model_sizes.qwen3:4b", "not one of models"),
    # A workload given the GPU whose kind cannot know its VRAM says how much it takes.
    ("nodes.training.workloads.comfyui", {}, "gpu-estate:nodes.training.workloads.comfyui.vram_gb", "give vram_gb"),
    # (ComfyUI with workflows takes its largest workflow's figure, and refuses less.)
    ("nodes.qwen.workloads.comfyui.vram_gb", 8, "gpu-estate:nodes.qwen.workloads.comfyui.vram_gb", "about 17.4 GB"),
    ("nodes.inference.workloads.api", {"image": "ghcr.io/you/api:1", "port": 9000, "gpu": True},
     "gpu-estate:nodes.inference.workloads.api.vram_gb", "give vram_gb"),
    # A model the table does not list is sized in the stack, not in the tracked table.
    ("nodes.qwen.workloads.ollama.models", ["qwen3:8b", "my-finetune:7b"],
     "gpu-estate:nodes.qwen.workloads.ollama.models[1]", "model_sizes.my-finetune:7b"),
    ("nodes.burst.bid_per_hour", 0.3, "gpu-estate:nodes.burst", "pays the spot price"),
    ("nodes.qwen.address", "203.0.113.20", "gpu-estate:nodes.qwen", "address is a host's you own"),
    ("nodes.qwen.image", "ubuntu2204", "gpu-estate:nodes.qwen", "its workload's"),
    # A spot bid above the node's own cap would never be placed.
    ("nodes.qwen.bid_per_hour", 0.35, "gpu-estate:nodes.qwen.bid_per_hour", "above the node's max_price_per_hour"),
    # GPU names follow one rule; a name several cards share, or none, is refused with the candidates.
    ("nodes.qwen.gpu.model", "a100", "gpu-estate:nodes.qwen.gpu.model", "a100-40 or a100-80 or a100-80-sxm"),
    ("nodes.qwen.gpu.model", "A100 PCIE", "gpu-estate:nodes.qwen.gpu.model", "a100-40 or a100-80"),
    ("nodes.qwen.gpu.model", "rtx3099", "gpu-estate:nodes.qwen.gpu.model", "did you mean `rtx3090`"),
    # A gated checkpoint needs the workload's Hugging Face token; the token goes to Hugging Face only.
    ("nodes.qwen.workloads.comfyui.checkpoints", [{"name": "flux1-dev.safetensors", "gated": True, "size_gb": 23.8,
      "url": "https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/flux1-dev.safetensors", "sha256": "0" * 64}],
     "gpu-estate:nodes.qwen.workloads.comfyui.checkpoints[0].gated", "HF_TOKEN"),
    ("nodes.qwen.workloads.comfyui.checkpoints", [{"name": "x.safetensors", "gated": True, "size_gb": 2,
      "url": "https://civitai.com/api/download/models/1", "sha256": "0" * 64}],
     "gpu-estate:nodes.qwen.workloads.comfyui.checkpoints[0].gated", "Hugging Face only"),
    # One file of a name per models/ subfolder: each is a resource of its own, named by it.
    ("nodes.qwen.workloads.comfyui.checkpoints", [{"name": "x.safetensors", "size_gb": 2, "sha256": "0" * 64,
      "url": f"https://example.com/{n}/x.safetensors"} for n in (1, 2)],
     "gpu-estate:nodes.qwen.workloads.comfyui.checkpoints[1].name", "checkpoints/x.safetensors is checkpoints[0] already"),
    # Every file counts on the node's disk, beside its workloads and models.
    ("nodes.qwen.workloads.comfyui.checkpoints", [{"name": "big.safetensors", "size_gb": 150, "sha256": "0" * 64,
      "url": "https://example.com/big.safetensors"}], "gpu-estate:nodes.qwen.disk_gb",
     "workloads and models need 243.5 GB, node has 200 GB"),
    # A RunPod pod has no SSH server of the estate's to deliver model files into.
    ("nodes.batch.workloads", {"comfyui": {"kind": "comfyui", "vram_gb": 8, "checkpoints": [
        {"name": "x.safetensors", "size_gb": 2, "sha256": "0" * 64, "url": "https://example.com/x.safetensors"}]}},
     "gpu-estate:nodes.batch.workloads.comfyui.checkpoints", "a RunPod pod runs its image as it is"),
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


@pytest.mark.parametrize("spelling", ["rtx3090", "RTX 3090", "RTX-3090", "RTX_3090", "3090", "GeForce RTX 3090",
                                      "NVIDIA GeForce RTX 3090", "nvidia 3090", 3090])
def test_one_rule_spells_a_gpu(spelling):
    """Case, spaces, '-' and '_' do not count and the maker's words may be left out: "3090" was refused
    while "RTX-3090" was accepted (and `model: 3090`, a number in YAML, is the same name)."""
    cfg = stack_estate("prod")
    cfg["nodes"]["qwen"]["gpu"]["model"] = spelling
    assert parse_spec(cfg).nodes["qwen"].gpu.model == "rtx3090"


def test_a_bid_per_gpu_hour_counts_every_gpu():
    """RunPod bids per GPU-hour: two GPUs at $0.25 are $0.50 an hour, above a $0.30 cap."""
    cfg = stack_estate("prod")
    cfg["nodes"]["batch"]["gpu"]["count"] = 2
    with pytest.raises(ConfigError) as err:
        parse_spec(cfg)
    found = [m for p, m in err.value.problems if p == "gpu-estate:nodes.batch.bid_per_hour"]
    assert found and "$0.25 a GPU-hour for 2 GPUs" in found[0], err.value.problems


def test_a_model_the_table_does_not_list_is_sized_in_the_stack():
    from core.demand import node_disk_demand, node_vram_demand

    cfg = stack_estate("prod")
    ollama = cfg["nodes"]["qwen"]["workloads"]["ollama"]
    before = parse_spec(copy.deepcopy(cfg)).nodes["qwen"]
    ollama["models"].append("my-finetune:7b")
    ollama["model_sizes"] = {"my-finetune:7b": {"disk_gb": 4.7, "vram_gb": 6.0}}
    node = parse_spec(cfg).nodes["qwen"]
    assert node_disk_demand(node) == pytest.approx(node_disk_demand(before) + 4.7)
    assert node.workloads["ollama"].model_vram_gb("my-finetune:7b") == 6.0
    assert node_vram_demand(node) == node_vram_demand(before)  # max_loaded 2: the two largest stay
    # The stack's figure wins over the table's for a model it lists (another quantization, say).
    ollama["model_sizes"]["qwen3:8b"] = {"disk_gb": 6.0, "vram_gb": 5.5}
    node = parse_spec(cfg).nodes["qwen"]
    assert node.workloads["ollama"].model_vram_gb("qwen3:8b") == 5.5
    assert node_disk_demand(node) == pytest.approx(node_disk_demand(before) + 4.7 + 0.8)


def test_a_monthly_cap_is_the_hourly_cap_over_the_nodes_hours(monkeypatch):
    """Seed 002 budgets $200 a month for the Vast.ai server: around the clock that is $0.2739/h, which
    places, prices and caps the bid as max_price_per_hour would; the preview says both."""
    import pulumi

    cfg = stack_estate("prod")
    qwen = cfg["nodes"]["qwen"]
    del qwen["max_price_per_hour"]
    qwen["max_usd_per_month"] = 200
    node = parse_spec(cfg).nodes["qwen"]
    assert node.price_cap == 0.2739 and node.price_cap * node.hours_per_month <= 200
    from core.pricing import estimate_node, node_request
    assert node_request(node).max_price_per_hour == 0.2739 and estimate_node("qwen", node).hourly_usd == 0.2739
    qwen["bid_per_hour"] = 0.28
    with pytest.raises(ConfigError, match=r"nodes\.qwen\.bid_per_hour: a bid of \$0\.28/h is above the node's cap "
                                          r"of \$0\.2739/h \(max_usd_per_month over hours_per_month\)"):
        parse_spec(cfg)
    qwen["bid_per_hour"], qwen["max_price_per_hour"] = 0.27, 0.30
    with pytest.raises(ConfigError, match=r"nodes\.qwen: give one price cap"):
        parse_spec(cfg)
    said = []
    monkeypatch.setattr(pulumi.log, "info", lambda msg, *a, **k: said.append(msg))
    config = copy.deepcopy(stack_config("prod"))
    del config["gpu-estate:nodes"]["qwen"]["max_price_per_hour"]
    config["gpu-estate:nodes"]["qwen"]["max_usd_per_month"] = 200
    run_program(config, stack="prod")
    assert "gpu-estate:nodes.qwen: max_usd_per_month $200 over 730 h a month is a cap of $0.2739/h" in said, said


def test_a_misspelt_top_level_key_is_refused_not_dropped():
    """`gpu-estate:tunnel` was dropped without a word, and the ComfyUI tunnel with it: the program reads the
    whole namespace, and a key no part of it reads is refused naming the nearest."""
    config = copy.deepcopy(stack_config("prod"))
    config["gpu-estate:tunnel"] = config.pop("gpu-estate:tunnels")
    with pytest.raises(Exception, match=r"gpu-estate:tunnel: unknown key `tunnel`; did you mean `tunnels`\?"):
        run_program(config, stack="prod")


def test_a_config_secret_nothing_reads_is_said(monkeypatch):
    """A Hugging Face token set for a ComfyUI that does not list it would never reach its download: the
    program says so (a warning: a secret may be set ahead of the workload that will name it)."""
    import pulumi

    said = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *a, **k: said.append(msg))
    config = copy.deepcopy(stack_config("prod"))
    config["gpu-estate:HF_TOKEN"] = "hf_unused"
    run_program(config, stack="prod")
    assert [m for m in said if m.startswith("gpu-estate:HF_TOKEN: a config secret nothing reads")], said


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
