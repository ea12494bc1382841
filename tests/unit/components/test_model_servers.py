"""Model servers beside Ollama: the vLLM, TGI and llama.cpp presets and containers of the stack's own.

What their workloads mean (a name is a kind or a container), how each starts (the compose project
checked by compose v2's own parser, a Vast.ai start script run by dash), whether their model fits the
GPU, and how the gateway reaches them. The real LiteLLM proxy sending an alias to a vLLM preset is in
tests/contract/test_gateway.py.
"""
import copy
import os
import shutil
import subprocess

import pytest
import yaml

from components import gateway, workloads
from core.config import parse_spec
from core.diagram import flowchart
from core.errors import ConfigError
from core.kinds import WorkloadKind
from core.topology import Server, plan_estate
from providers.gpu_instance import LaunchInputs, replace_reasons
import sandbox

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFXdBfpWUE7y0nZ8rsibV0rc/1JxweHTokQjkgvrZxWD ops@gpu-estate"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGgtgdW9ZLnsrjGnasMVWnMuUvMEboNU8GOJmJqjIes"
QWEN = "Qwen/Qwen2.5-7B-Instruct"


def estate(workloads_: dict, provider: str = "tensordock", gpu: dict = None, aliases: dict = None, **node) -> dict:
    """One GPU node running ``workloads_`` and a gateway host in front of it."""
    gpu_node = {"provider": provider, "gpu": gpu or {"model": "rtx4090"}, "max_price_per_hour": 2.0,
                "disk_gb": 200, "ram_gb": 32, "workloads": copy.deepcopy(workloads_), **node}
    if provider == "tensordock":
        gpu_node["ssh"] = {"public_key": KEY}
    return {"nodes": {"gpu": gpu_node,
                      "gw": {"provider": "host", "address": "10.0.0.2", "workloads": {"litellm": {}},
                             "ssh": {"host_key": HOST_KEY}}},
            "gateway": {"node": "gw", "aliases": aliases or {}},
            "budget": {"monthly_usd": 5000}}


def refused(raw: dict) -> str:
    with pytest.raises(ConfigError) as err:
        parse_spec(raw)
    return str(err.value)


# -- what a workload is ---------------------------------------------------------------------------------

def test_a_workload_named_after_a_kind_is_that_kind_and_any_other_name_is_a_container():
    spec = parse_spec(estate({"ollama": {"models": ["qwen3:8b"]}, "vllm": {"model": QWEN, "vram_gb": 30},
                              "chat": {"kind": "tgi", "model": "mistralai/Mistral-7B-Instruct-v0.3",
                                       "vram_gb": 2},
                              "myai-api": {"image": "ghcr.io/example/myai-api:1.4.2", "port": 8100}},
                             gpu={"model": "a100-80gb"}))
    node = spec.nodes["gpu"]
    assert {n: w.kind for n, w in node.workloads.items()} == {
        "ollama": WorkloadKind.OLLAMA, "vllm": WorkloadKind.VLLM, "chat": WorkloadKind.TGI,
        "myai-api": WorkloadKind.CONTAINER}
    assert node.port("chat") == 8080 and node.port("myai-api") == 8100
    assert node.image_for("vllm") == WorkloadKind.VLLM.info.image
    assert node.image_for("myai-api") == "ghcr.io/example/myai-api:1.4.2"
    # A container is never assumed safe to publish, and is given no GPU unless it asks.
    assert node.info("myai-api").model_server and not node.uses_gpu("myai-api")


@pytest.mark.parametrize("workload, key, words", [
    ({"api": {"port": 8100}}, "nodes.gpu.workloads.api", "needs image and port (got image None, port 8100)"),
    ({"api": {"image": "ghcr.io/example/api:1", "port": 8100, "openai": True}}, "nodes.gpu.workloads.api",
     "needs served_name"),
    ({"vllm": {}}, "nodes.gpu.workloads.vllm", "set model"),
    ({"vllm": {"model": QWEN, "gguf": "a.gguf"}}, "nodes.gpu.workloads.vllm", "gguf does not apply to vllm"),
    ({"llama-cpp": {"model": "Qwen/Qwen2.5-7B-Instruct-GGUF"}}, "nodes.gpu.workloads.llama-cpp", "set gguf"),
    ({"ollama": {"models": ["qwen3:8b"], "args": ["--verbose"]}}, "nodes.gpu.workloads.ollama",
     "args does not apply to ollama"),
    ({"chat": {"kind": "ollama"}}, "nodes.gpu.workloads", "a ollama workload is named 'ollama' (got 'chat')"),
    ({"ollama": {"kind": "vllm", "model": QWEN}}, "nodes.gpu.workloads", "names the ollama kind"),
    ({"vllm": {"model": "Qwen/$(reboot)"}}, "nodes.gpu.workloads.vllm.model", "Qwen/$(reboot)"),
    ({"Bad_Name": {"image": "x:1", "port": 1}}, "nodes.gpu.workloads", "Bad_Name"),
    ({"api": {"image": "x:1", "port": 1, "args": ["a\nb"]}}, "nodes.gpu.workloads.api.args.0", "a\\nb"),
])
def test_bad_model_server_input_names_the_key_and_the_value(workload, key, words):
    message = refused(estate(workload))
    assert f"gpu-estate:{key}" in message and words in message, message


# -- how each starts ------------------------------------------------------------------------------------

def project(spec):
    return workloads.compose_project(spec.nodes["gpu"])["services"]


def test_presets_start_from_the_model_the_stack_names():
    spec = parse_spec(estate({
        "vllm": {"model": QWEN, "served_name": "qwen-7b", "vram_gb": 40, "args": ["--max-model-len", "8192"],
                 "secret_env": ["HF_TOKEN"]},
        "tgi": {"model": "mistralai/Mistral-7B-Instruct-v0.3", "vram_gb": 20},
        "llama-cpp": {"model": "Qwen/Qwen2.5-7B-Instruct-GGUF", "gguf": "qwen2.5-7b-instruct-q4_k_m.gguf",
                      "model_size_gb": 4.7}}, gpu={"model": "a100-80gb"}))
    services = project(spec)
    vllm = services["vllm"]
    # vLLM's image runs `vllm serve`: the model, its name and its share of the GPU are its arguments.
    assert vllm["command"] == ["--model", QWEN, "--served-model-name", "qwen-7b", "--host", "0.0.0.0",
                               "--port", "8000", "--gpu-memory-utilization", "0.50", "--max-model-len", "8192"]
    assert vllm["ports"] == ["127.0.0.1:8000:8000"] and vllm["ipc"] == "host"
    assert vllm["volumes"] == ["/opt/estate/data/vllm:/root/.cache/huggingface"]
    assert vllm["env_file"] == ["/opt/estate/secrets/vllm.env"]  # HF_TOKEN: a file, never a value here
    assert vllm["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    tgi = services["tgi"]
    assert "command" not in tgi
    assert tgi["environment"] | {} == {"MODEL_ID": "mistralai/Mistral-7B-Instruct-v0.3", "HOSTNAME": "0.0.0.0",
                                      "PORT": "80", "HF_HUB_CACHE": "/data", "CUDA_MEMORY_FRACTION": "0.25"}
    assert tgi["ports"] == ["127.0.0.1:8080:80"]
    llama = services["llama-cpp"]
    assert llama["environment"]["LLAMA_ARG_HF_REPO"] == "Qwen/Qwen2.5-7B-Instruct-GGUF"
    assert llama["environment"]["LLAMA_ARG_HF_FILE"] == "qwen2.5-7b-instruct-q4_k_m.gguf"
    assert llama["environment"]["LLAMA_ARG_ALIAS"] == "Qwen/Qwen2.5-7B-Instruct-GGUF"
    assert llama["environment"]["LLAMA_ARG_N_GPU_LAYERS"] == "999"
    assert llama["ports"] == ["127.0.0.1:8081:8080"]


def test_a_multi_gpu_vllm_is_split_across_its_gpus():
    spec = parse_spec(estate({"vllm": {"model": QWEN}}, gpu={"model": "rtx4090", "count": 2}))
    assert project(spec)["vllm"]["command"][-2:] == ["--tensor-parallel-size", "2"]


def test_a_container_runs_its_own_image_command_health_and_data():
    spec = parse_spec(estate({"myai-api": {
        "image": "ghcr.io/example/myai-api:1.4.2", "port": 8100, "container_port": 8000,
        "entrypoint": ["uvicorn"], "args": ["app:api", "--port", "8000", "--root-path", "/$HOME"],
        "health_path": "/healthz", "data_path": "/srv/data", "env": {"LOG_LEVEL": "info"}, "gpu": True,
        "vram_gb": 8}}))
    svc = project(spec)["myai-api"]
    assert svc["image"] == "ghcr.io/example/myai-api:1.4.2"
    assert svc["entrypoint"] == ["uvicorn"]
    # Compose would read '$HOME' as its own variable: it is passed on as written.
    assert svc["command"] == ["app:api", "--port", "8000", "--root-path", "/$$HOME"]
    assert svc["ports"] == ["127.0.0.1:8100:8000"]
    assert svc["volumes"] == ["/opt/estate/data/myai-api:/srv/data"]
    assert "http://127.0.0.1:8000/healthz" in svc["healthcheck"]["test"][1]
    assert svc["environment"] == {"LOG_LEVEL": "info"}
    assert "deploy" in svc
    bare = parse_spec(estate({"api": {"image": "ghcr.io/example/api:1", "port": 9000}}))
    svc = project(bare)["api"]
    assert "volumes" not in svc and "healthcheck" not in svc and "command" not in svc and "deploy" not in svc


def compose_v2() -> str:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0 if shutil.which("docker") else True:
        if sandbox.vm_required():
            pytest.fail("docker compose v2 must run here (scripts/build-compose.sh)")
        pytest.skip("no docker compose v2 (scripts/build-compose.sh)")
    return "docker"


def test_compose_v2_reads_the_project_as_written(tmp_path):
    """Compose's own parser reads the rendered project: every preset and a container, with a '$' in an
    argument that must reach the process as it is."""
    docker = compose_v2()
    spec = parse_spec(estate({
        "vllm": {"model": QWEN, "vram_gb": 30},
        "tgi": {"model": "mistralai/Mistral-7B-Instruct-v0.3", "vram_gb": 20},
        "llama-cpp": {"model": "Qwen/Qwen2.5-7B-Instruct-GGUF", "gguf": "q4.gguf", "model_size_gb": 4.7},
        "api": {"image": "ghcr.io/example/api:1", "port": 9000, "args": ["--token-prefix", "$USER"],
                "health_path": "/health", "data_path": "/data"}}, gpu={"model": "a100-80gb"}))
    path = tmp_path / "compose.yaml"
    path.write_text(workloads.render_compose(spec.nodes["gpu"]))
    out = subprocess.run([docker, "compose", "-f", str(path), "config", "--format", "json"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "USER": "intruder"})
    assert out.returncode == 0, out.stderr
    seen = yaml.safe_load(out.stdout)["services"]
    # A literal '$' (compose prints it escaped again, as '$$'); interpolated, it would read 'intruder'.
    assert seen["api"]["command"] == ["--token-prefix", "$$USER"] and "intruder" not in out.stdout
    assert seen["vllm"]["command"][:2] == ["--model", QWEN]
    assert seen["tgi"]["environment"]["MODEL_ID"] == "mistralai/Mistral-7B-Instruct-v0.3"
    assert seen["llama-cpp"]["ports"][0]["published"] == "8081" and seen["llama-cpp"]["ports"][0]["host_ip"] == "127.0.0.1"


def test_a_vast_node_starts_its_preset_with_the_arguments_as_written(tmp_path):
    """Vast.ai runs the start script in place of the image's entrypoint: dash runs it here, with a
    stand-in `vllm` that records the arguments it was given."""
    spec = parse_spec(estate({"vllm": {"model": QWEN, "args": ["--chat-template", "$(touch pwned) 'x'"]}},
                             provider="vastai"))
    start = workloads.container_start(spec.nodes["gpu"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vllm").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "$ARGS_OUT"\n')
    (bin_dir / "vllm").chmod(0o755)
    out = tmp_path / "args"
    run = subprocess.run(["dash", "-c", start], cwd=tmp_path, timeout=30, capture_output=True, text=True,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin", "ARGS_OUT": str(out)})
    assert run.returncode == 0, run.stderr
    assert out.read_text().splitlines() == ["serve", *workloads.preset_args(spec.nodes["gpu"], "vllm")]
    # Reached over SSH, a container node's server listens on its own loopback only.
    assert out.read_text().splitlines()[5:7] == ["--host", "127.0.0.1"]
    assert not (tmp_path / "pwned").exists()


def test_a_vast_container_of_the_stacks_own_needs_the_command_that_starts_it():
    message = refused(estate({"api": {"image": "ghcr.io/example/api:1", "port": 9000}}, provider="vastai"))
    assert "gpu-estate:nodes.gpu.workloads.api.entrypoint" in message and "got neither" in message


def test_runpod_starts_a_preset_from_env_or_from_its_pods_command():
    spec = parse_spec(estate({"tgi": {"model": "mistralai/Mistral-7B-Instruct-v0.3"}}, provider="runpod"))
    image, env, _ports, start = workloads.container_launch(spec.nodes["gpu"])
    assert image == WorkloadKind.TGI.info.image and start == ""
    assert env["MODEL_ID"] == "mistralai/Mistral-7B-Instruct-v0.3" and env["HOSTNAME"] == "127.0.0.1"
    assert workloads.docker_args(spec.nodes["gpu"]) == []
    spec = parse_spec(estate({"vllm": {"model": QWEN, "args": ["--max-model-len", "8192"]}}, provider="runpod"))
    assert workloads.docker_args(spec.nodes["gpu"]) == [
        "--model", QWEN, "--served-model-name", QWEN, "--host", "127.0.0.1", "--port", "8000",
        "--max-model-len", "8192"]


def test_a_vast_node_failing_over_to_runpod_carries_the_pods_command_too():
    spec = parse_spec(estate({"vllm": {"model": QWEN}}, provider="vastai", failover=["runpod"]))
    node = spec.nodes["gpu"]
    assert workloads.docker_args(node) == workloads.preset_args(node, "vllm")
    assert "exec vllm serve --model" in workloads.container_launch(node)[3]
    message = refused(estate({"vllm": {"model": QWEN, "args": ["--chat-template", "a b"]}}, provider="vastai",
                             failover=["runpod"]))
    assert "gpu-estate:nodes.gpu.workloads.vllm.args" in message


def test_runpod_refuses_what_its_pod_command_cannot_carry():
    message = refused(estate({"vllm": {"model": QWEN, "args": ["--chat-template", "{% for m in messages %}"]}},
                             provider="runpod"))
    assert "gpu-estate:nodes.gpu.workloads.vllm.args" in message and "got '{% for m in messages %}'" in message
    message = refused(estate({"api": {"image": "ghcr.io/example/api:1", "port": 9000, "entrypoint": ["uvicorn"]}},
                             provider="runpod"))
    assert "gpu-estate:nodes.gpu.workloads.api.entrypoint" in message and "got entrypoint ['uvicorn']" in message


def test_a_machine_launched_before_pod_commands_existed_keeps_its_inputs():
    """Only a node given a command has ``launch.args``: every other machine's launch inputs read as they
    did, so no running machine is replaced by the field's arrival; a changed command replaces the pod."""
    before = {"image": "ollama/ollama:0.12.6", "disk_gb": 50, "ports": [], "env": {}, "onstart": "",
              "ssh_public_key": None, "cloud_init": None, "vcpu": 4, "ram_gb": 16}
    now = LaunchInputs(image="ollama/ollama:0.12.6", disk_gb=50, vcpu=4, ram_gb=16).to_props()
    assert now == before
    assert replace_reasons("runpod:p1", {"launch": before}, {"launch": now, "clouds": ["runpod"]}) == []
    given = LaunchInputs(image="vllm/vllm-openai:v0.11.0", disk_gb=50, args=["--model", QWEN]).to_props()
    changed = {**given, "args": ["--model", "Qwen/Qwen3-8B"]}
    assert replace_reasons("runpod:p1", {"launch": given}, {"launch": changed, "clouds": ["runpod"]}) == ["launch.args"]


# -- whether it fits ------------------------------------------------------------------------------------

def test_vllm_takes_most_of_the_gpu_so_ollama_beside_it_does_not_fit():
    message = refused(estate({"ollama": {"models": ["qwen3:14b"]}, "vllm": {"model": QWEN}}))
    assert "gpu-estate:nodes.gpu.workloads:" in message
    assert "ollama 9.0 GB" in message and "vllm 21.6 GB" in message and "21.6 GB usable" in message


def test_given_its_share_vllm_fits_beside_ollama_and_is_told_its_share():
    spec = parse_spec(estate({"ollama": {"models": ["qwen3:14b"]}, "vllm": {"model": QWEN, "vram_gb": 12}}))
    assert project(spec)["vllm"]["command"][8:10] == ["--gpu-memory-utilization", "0.50"]


def test_a_model_too_big_for_its_share_or_of_unknown_size_is_refused():
    message = refused(estate({"vllm": {"model": QWEN, "vram_gb": 10, "model_size_gb": 15}}))
    assert "gpu-estate:nodes.gpu.workloads.vllm.model_size_gb" in message and "got model_size_gb 15" in message
    message = refused(estate({"llama-cpp": {"model": "Qwen/Qwen2.5-72B-Instruct-GGUF", "gguf": "q4.gguf"}}))
    assert "gpu-estate:nodes.gpu.workloads.llama-cpp.model_size_gb" in message
    message = refused(estate({"llama-cpp": {"model": "Qwen/Qwen2.5-72B-Instruct-GGUF", "gguf": "q4.gguf",
                                            "model_size_gb": 47}}))
    assert "llama-cpp 52.7 GB" in message
    # On the CPU a model holds no VRAM.
    parse_spec(estate({"llama-cpp": {"model": "Qwen/Qwen2.5-72B-Instruct-GGUF", "gguf": "q4.gguf",
                                     "model_size_gb": 47, "gpu": False}}))


def test_two_servers_on_one_port_are_refused():
    message = refused(estate({"tgi": {"model": QWEN, "vram_gb": 8},
                              "api": {"image": "ghcr.io/example/api:1", "port": 8080}}))
    assert "gpu-estate:nodes.gpu.workloads.api.port" in message and "tgi" in message


# -- the gateway ----------------------------------------------------------------------------------------

def test_an_alias_naming_a_served_model_reaches_the_server_through_its_tunnel():
    raw = estate({"ollama": {"models": ["qwen3:8b"]}, "chat": {"kind": "vllm", "model": QWEN, "vram_gb": 10},
                  "api": {"image": "ghcr.io/example/api:1", "port": 9000, "openai": True, "served_name": "myai-7b"}},
                 aliases={"gpt-4": QWEN, "fast": "qwen3:8b", "mine": "myai-7b"})
    plan = plan_estate(parse_spec(raw))
    assert plan.serving[QWEN] == (Server("gpu", "chat"),)
    assert sorted(f.remote for f in plan.tunnels["gpu"]) == [8000, 9000, 11434]
    entries = {e["model_info"]["id"]: e["litellm_params"] for e in gateway.litellm_config(plan)["model_list"]}
    local = {f.remote: f.local for f in plan.tunnels["gpu"]}
    assert entries["gpt-4@gpu/chat"]["model"] == f"openai/{QWEN}"
    assert entries["gpt-4@gpu/chat"]["api_base"] == f"http://127.0.0.1:{local[8000]}/v1"
    assert entries["mine@gpu/api"]["model"] == "openai/myai-7b"
    assert entries["fast@gpu"]["model"] == "ollama_chat/qwen3:8b"
    hourly = plan.estimates["gpu"].hourly_usd
    assert entries["gpt-4@gpu/chat"]["input_cost_per_second"] == pytest.approx(hourly / 3600)


def test_an_alias_no_server_answers_to_names_the_alias_and_the_model():
    message = refused(estate({"vllm": {"model": QWEN}}, aliases={"gpt-4": "Qwen/Qwen3-8B"}))
    assert "gpu-estate:gateway.aliases.gpt-4" in message and "got 'Qwen/Qwen3-8B'" in message


def test_a_route_to_a_container_without_auth_is_refused():
    raw = estate({"api": {"image": "ghcr.io/example/api:1", "port": 9000}})
    raw["edge"] = {"zone_id": "0" * 32, "account_id": "1" * 32, "domain": "example.com",
                   "allowed_emails": ["ops@example.com"], "team_name": "ops"}
    raw["routes"] = {"api.example.com": {"service": "gpu/api", "auth": "none"}}
    message = refused(raw)
    assert "gpu-estate:routes.api.example.com.auth" in message and "api (container)" in message


def test_the_drawing_names_each_server_and_what_it_is():
    plan = plan_estate(parse_spec(estate({"chat": {"kind": "vllm", "model": QWEN}}, aliases={"gpt-4": QWEN})))
    drawing = flowchart(plan)
    assert '["chat (vllm) :8000"]' in drawing
    assert '-- "Qwen/Qwen2.5-7B-Instruct" --> wl_0_0' in drawing
