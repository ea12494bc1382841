"""Image aliases in the stack: ComfyUI's workflows as OpenAI image models, the errors of bad input naming
the key and value, the cost per image in the estimate, the gateway's config and the cost diff, and the
images bridge delivered beside ComfyUI on VM and container nodes."""
import json
import subprocess

import pytest
import yaml

from components import gateway, workloads
from core.config import parse_spec
from core.errors import ConfigError
from core.pricing import cost_table, estimate_estate
from core.stamps import image_stamps
from core.templates import asset
from core.topology import plan_estate
from scripts import cost_diff
from tests.mocks import stack_estate

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGgtgdW9ZLnsrjGnasMVWnMuUvMEboNU8GOJmJqjIes"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFXdBfpWUE7y0nZ8rsibV0rc/1JxweHTokQjkgvrZxWD"


def stack(comfyui, provider="vastai", aliases=None, fallbacks=None, ollama=None):
    node = {"provider": provider, "gpu": {"model": "rtx3090"}, "max_price_per_hour": 0.36,
            "workloads": {"comfyui": {"vram_gb": 18, **comfyui}, **({"ollama": ollama} if ollama else {})}}
    if provider == "tensordock":
        node["ssh"] = {"public_key": PUBLIC_KEY}
    return {"nodes": {"art": node,
                      "gw": {"provider": "host", "address": "127.0.0.1", "workloads": {"litellm": {}},
                             "ssh": {"host_key": HOST_KEY}}},
            "gateway": {"node": "gw", "aliases": {"dall-e-3": "flux.1-dev"} if aliases is None else aliases, "fallbacks": fallbacks or {}},
            "budget": {"monthly_usd": 1000}}


FLUX = {"workflows": {"flux.1-dev": {"seconds_per_image": 40}}}


def refused(doc):
    with pytest.raises(ConfigError) as e:
        parse_spec(doc)
    return str(e.value)


def test_an_unknown_workflow_is_refused_naming_it_and_the_known_ones():
    msg = refused(stack({"workflows": {"flux-dev": {"seconds_per_image": 40}}}))
    assert "gpu-estate:nodes.art.workloads.comfyui.workflows" in msg
    assert "'flux-dev'" in msg and "flux.1-dev, sd3.5-large, sdxl-lightning" in msg


def test_a_workflow_without_its_seconds_per_image_is_refused():
    msg = refused(stack({"workflows": {"flux.1-dev": {"steps": 20}}}))
    assert "gpu-estate:nodes.art.workloads.comfyui.workflows.flux.1-dev.seconds_per_image" in msg
    assert "(got none)" in msg


def test_an_alias_served_as_an_image_model_and_a_chat_model_is_refused():
    ollama = {"models": ["flux.1-dev"], "model_sizes": {"flux.1-dev": {"disk_gb": 1, "vram_gb": 1}}}
    msg = refused(stack(FLUX, ollama=ollama))
    assert "gpu-estate:gateway.aliases.dall-e-3" in msg
    assert "art/comfyui (images), art/ollama (chat)" in msg


def test_an_image_alias_cannot_fall_back_to_a_chat_alias():
    msg = refused(stack(FLUX, ollama={"models": ["qwen3:8b"]}, aliases={"dall-e-3": "flux.1-dev", "chat": "qwen3:8b"},
                        fallbacks={"dall-e-3": ["chat"]}))
    assert "gpu-estate:gateway.fallbacks.dall-e-3[0]" in msg and "(got 'chat')" in msg


def test_the_estimate_and_the_cost_table_show_the_cost_per_image():
    spec = parse_spec(stack({"workflows": {"flux.1-dev": {"seconds_per_image": 40},
                                           "sdxl-lightning": {"seconds_per_image": 3}}},
                            aliases={"dall-e-3": "flux.1-dev", "fast": "sdxl-lightning"}))
    estimate = estimate_estate(spec)
    assert [(i.alias, i.node, i.workflow, i.usd_per_image) for i in estimate.images] == [
        ("dall-e-3", "art", "flux.1-dev", pytest.approx(0.36 * 40 / 3600)),
        ("fast", "art", "sdxl-lightning", pytest.approx(0.36 * 3 / 3600))]
    table = cost_table(estimate, 1000)
    assert table["images"][0] == {"alias": "dall-e-3", "node": "art", "workflow": "flux.1-dev",
                                  "seconds_per_image": 40, "usd_per_image": 0.004}
    assert "images" not in cost_table(estimate_estate(parse_spec(stack_estate("dev"))), 200)


def test_the_gateway_routes_an_image_alias_to_the_bridge_through_the_tunnel_priced_per_image():
    plan = plan_estate(parse_spec(stack_estate("prod")))
    assert [(f.remote, f.local) for f in plan.tunnels["qwen"]] == [(11434, 11435), (8189, 8189), (8188, 8188)]
    config = gateway.litellm_config(plan)
    (entry,) = [m for m in config["model_list"] if m["model_name"] == "dall-e-3"]
    params = entry["litellm_params"]
    assert (params["model"], params["api_base"]) == ("openai/flux.1-dev", "http://127.0.0.1:8189/v1")
    assert params["output_cost_per_image"] == pytest.approx(0.30 * 40 / 3600, abs=1e-6)
    assert params["extra_headers"] == {"X-Estate-Timeout": "120"} and params["timeout"] == 120
    assert entry["model_info"]["mode"] == "image_generation"
    assert {"dall-e-3": ["openai-dall-e-3"]} in config["router_settings"]["fallbacks"]
    (chat,) = [m for m in config["model_list"] if m["model_name"] == "gpt-4"]
    assert "mode" not in chat["model_info"] and "output_cost_per_image" not in chat["litellm_params"]


def test_on_a_vm_the_bridge_runs_in_comfyuis_container_from_files_the_deploy_writes():
    node = parse_spec(stack(FLUX, provider="tensordock")).nodes["art"]
    svc = workloads.compose_project(node)["services"]["comfyui"]
    assert svc["ports"] == ["127.0.0.1:8188:8188", "127.0.0.1:8189:8189"]
    assert svc["entrypoint"][:2] == ["sh", "-c"]
    bridge = ("python3 /root/estate-images/images_bridge.py --config /root/estate-images/config.json "
              "--host 0.0.0.0 --port 8189")
    # Started again whenever it exits (compose interpolates $: the file holds $$ for the shell's one).
    assert svc["entrypoint"][2].startswith(f"(d=1; while :; do s=$$(date +%s); {bridge}; c=$$?; ")
    assert svc["entrypoint"][2].endswith("done) & exec /runner-scripts/entrypoint.sh")
    files = workloads.data_files(node)
    assert files["/opt/estate/data/comfyui/estate-images/images_bridge.py"] == asset("comfyui/images_bridge.py")
    config = json.loads(files["/opt/estate/data/comfyui/estate-images/config.json"])
    assert config == {"comfyui": "http://127.0.0.1:8188", "output_dir": "/root/ComfyUI/output",
                      "keep_outputs_seconds": 0, "workflows": {"flux.1-dev": {"template": "flux.1-dev"}}}
    assert set(files) == {f"/opt/estate/data/comfyui/estate-images/{p}" for p in
                          ("images_bridge.py", "config.json", "workflows/flux.1-dev.json")}
    script = workloads.deploy_script(node)
    assert "cat > /opt/estate/data/comfyui/estate-images/workflows/flux.1-dev.json.tmp" in script
    cloud_init = yaml.safe_load(workloads.render_cloud_init(node).split("\n", 1)[1])
    assert "/opt/estate/data/comfyui/estate-images/config.json" in {f["path"] for f in cloud_init["write_files"]}


def _children(pid: int) -> list:
    """The processes ``pid`` started, and theirs."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(k) for k in f.read().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status in (200, 503)
    except OSError as err:
        return getattr(err, "code", None) == 503  # the bridge answering that ComfyUI is down


def _until(what, ok, seconds=20.0):
    import time

    deadline = time.monotonic() + seconds
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {seconds:g} s")
        time.sleep(0.2)


def test_on_a_vm_a_dead_bridge_is_started_again_beside_comfyui(tmp_path):
    """The compose entrypoint as Docker runs it (compose's $$ read back as $), with the real bridge from the
    files the deploy writes and a stand-in for ComfyUI's own entrypoint: the bridge killed outright (as the
    kernel's OOM killer would) answers again after the backoff, and ComfyUI's process is left alone."""
    import os
    import shlex
    import signal
    import sys

    from providers.ssh_forward import free_port

    node = parse_spec(stack(FLUX, provider="tensordock")).nodes["art"]
    entry = workloads.compose_project(node)["services"]["comfyui"]["entrypoint"][2].replace("$$", "$")
    for path, text in workloads.data_files(node).items():
        target = tmp_path / path.split("/estate-images/", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    port = free_port()
    entry = (entry.replace("/root/estate-images", str(tmp_path)).replace("python3 ", f"{shlex.quote(sys.executable)} ")
             .replace("--host 0.0.0.0 --port 8189", f"--host 127.0.0.1 --port {port}")
             .replace("exec /runner-scripts/entrypoint.sh", "exec sleep 60"))
    proc = subprocess.Popen(["sh", "-c", entry], stderr=subprocess.PIPE, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}/health"
    try:
        _until("the bridge answering", lambda: _answers(url))
        bridges = [p for p in _children(proc.pid) if open(f"/proc/{p}/cmdline").read().split("\0")[0] == sys.executable]
        assert len(bridges) == 1
        os.kill(bridges[0], signal.SIGKILL)
        _until("the bridge gone", lambda: not _answers(url), seconds=5)
        _until("the bridge answering again", lambda: _answers(url))
        assert proc.poll() is None  # ComfyUI's stand-in (the container's main process) still runs
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert "gpu-estate: the images bridge exited (137); starting it again in 1s" in proc.stderr.read()


def test_on_a_container_node_the_start_script_writes_the_bridge_and_starts_it_beside_comfyui(tmp_path):
    node = parse_spec(stack(FLUX)).nodes["art"]
    script = workloads.container_start(node)
    assert "nohup python3 /root/estate-images/images_bridge.py --config /root/estate-images/config.json " \
           "--host 127.0.0.1 --port 8189" in script
    assert script.rstrip().endswith("exec /runner-scripts/entrypoint.sh")
    # The files part of the script, run under dash with / moved to tmp_path, writes them byte for byte.
    part = script[script.index('install -d -m 0755 "$(dirname /root/'):script.index("nohup python3")]
    subprocess.run(["dash", "-euc", part.replace("/root/", f"{tmp_path}/")], check=True)
    assert (tmp_path / "estate-images" / "images_bridge.py").read_text() == asset("comfyui/images_bridge.py")
    assert json.loads((tmp_path / "estate-images" / "config.json").read_text())["workflows"] == {
        "flux.1-dev": {"template": "flux.1-dev"}}


def test_a_comfyui_without_workflows_runs_as_before():
    node = parse_spec(stack({}, provider="tensordock", aliases={}, fallbacks={})).nodes["art"]
    svc = workloads.compose_project(node)["services"]["comfyui"]
    assert svc["ports"] == ["127.0.0.1:8188:8188"] and "entrypoint" not in svc
    assert workloads.data_files(node) == {}


def test_the_cost_diff_shows_image_aliases_and_a_changed_cost_per_image():
    def preview(seconds):
        spec = parse_spec(stack({"workflows": {"flux.1-dev": {"seconds_per_image": seconds}}}))
        stamps = image_stamps(estimate_estate(spec))
        return {"steps": [{"op": "same", "oldState": {"type": "gpu-estate:index:Estate", "inputs": {"stamps": stamps}},
                           "newState": {"type": "gpu-estate:index:Estate", "inputs": {"stamps": stamps}}}]}

    verdict = cost_diff.report(cost_diff.costs(preview(40), "new"), cost_diff.costs(preview(50), "new"), "prod",
                               None, None, None, None)
    assert "| image alias | node | workflow | s/image | $/image | change |" in verdict.markdown
    assert "| dall-e-3 | art | flux.1-dev | 50 | $0.0050 | +$0.0010 |" in verdict.markdown
    assert not verdict.failures


def test_the_bridges_port_is_a_model_server_port_to_the_policy_pack():
    from core.pricing import estimate_node
    from core.stamps import node_stamp
    from policy.safety import _model_ports

    node = parse_spec(stack(FLUX)).nodes["art"]
    stamp = node_stamp("art", node, estimate_node("art", node))
    assert stamp["model_ports"] == "8188-8189"
    assert 8189 in _model_ports(stamp)
    assert workloads.published_ports(parse_spec(stack(FLUX, provider="tensordock")).nodes["art"]) == []  # over SSH


def test_an_alias_naming_a_workflow_no_comfyui_has_says_where_it_looked():
    msg = refused(stack({"workflows": {"sdxl-lightning": {"seconds_per_image": 3}}}))
    assert "gpu-estate:gateway.aliases.dall-e-3: no node serves 'flux.1-dev'" in msg
    assert "no ComfyUI has it in its workflows" in msg


def test_a_comfyui_smaller_than_a_workflows_model_files_is_refused_and_without_a_figure_takes_the_largest():
    msg = refused(stack({"vram_gb": 12, **FLUX}))
    assert "gpu-estate:nodes.art.workloads.comfyui.vram_gb: the flux.1-dev workflow's model files hold about 17.4 GB" in msg
    assert "(got vram_gb: 12)" in msg
    raw = stack({"workflows": {"flux.1-dev": {"seconds_per_image": 40}, "sdxl-lightning": {"seconds_per_image": 3}}})
    del raw["nodes"]["art"]["workloads"]["comfyui"]["vram_gb"]
    node = parse_spec(raw).nodes["art"]
    assert node.workloads["comfyui"].vram(node) == 17.4
