"""Wake on request: the plan of what the gateway wakes, the Waker against the loopback RunPod, and the hook
under the real LiteLLM proxy (a request wakes a stopped node and is answered by it; one that cannot wake
in time gets 503 with Retry-After)."""
import json
import os
import shutil
import subprocess
import threading

import pytest
import requests

from components import gateway
from core.config import parse_spec
from core.pricing import NodeRequest
from core.topology import plan_estate
from loopback.ollama import FakeOllama
from providers import gpu_cloud
from providers.gpu_cloud import LaunchSpec
from providers.local_gateway import LocalGatewayProvider, litellm_binary
from agents.wake import Asleep, Waker
from tests.mocks import stack_estate, unpack_library

NODE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFXdBfpWUE7y0nZ8rsibV0rc/1JxweHTokQjkgvrZxWD"


def wake_spec(fallback: bool = False):
    """'pod' (RunPod, power idle) alone serves 'fast'; 'always' (running) serves 'steady'."""
    node = {"provider": "runpod", "gpu": {"model": "rtx4090"}, "max_price_per_hour": 0.5, "hours_per_month": 40,
            "idle_shutdown_minutes": 20, "access": "direct", "power": "idle",
            "workloads": {"ollama": {"models": ["tinyllama:1.1b"]}}}
    return parse_spec({
        "nodes": {"pod": node, "always": {**node, "power": "running", "workloads": {"ollama": {"models": ["qwen3:8b"]}}},
                  "gw": {"provider": "host", "address": "127.0.0.1", "workloads": {"litellm": {}}}},
        "gateway": {"node": "gw", "deploy": "local", "port": 0, "aliases": {"fast": "tinyllama:1.1b", "steady": "qwen3:8b"},
                    "fallbacks": {"fast": ["steady"]} if fallback else {}, "timeouts": {"default": 20},
                    "num_retries": 0},
        "budget": {"monthly_usd": 1000},
    })


def test_only_aliases_served_by_idle_marketplace_nodes_alone_are_woken():
    plan = plan_estate(wake_spec())
    assert set(plan.wake) == {"fast"} and plan.wake["fast"].nodes == ("pod",)
    assert plan.wake["fast"].timeout == 20 and not plan.wake["fast"].fallbacks
    assert plan_estate(wake_spec(fallback=True)).wake["fast"].fallbacks
    # prod's nodes are kept running or are owned: nothing to wake, no hook in its gateway.
    prod = plan_estate(parse_spec(stack_estate("prod")))
    assert prod.wake == {} and "callbacks" not in gateway.litellm_config(prod)["litellm_settings"]
    config = gateway.litellm_config(plan)
    assert config["litellm_settings"]["callbacks"] == ["estate_wake.handler"]


@pytest.fixture
def pod(clouds):
    """A RunPod pod on the loopback, stopped as its idle watcher leaves it, with an Ollama that answers only
    while the pod runs."""
    rp = clouds["runpod"]
    c = gpu_cloud.client("runpod")
    (offer,) = c.offers(NodeRequest(gpu_model="rtx4090"))
    pod_id = c.launch(offer, LaunchSpec(label="pod", image="ollama/ollama:0.12.6", disk_gb=50, ports=(11434,)))
    c.stop(pod_id)
    c.close()
    ollama = FakeOllama(name="pod-ollama")
    ollama.install("tinyllama:1.1b")
    ollama.serving = lambda: rp.pods[pod_id]["desiredStatus"] == "RUNNING" and rp.pods[pod_id]["runtime"] is not None
    url = f"http://127.0.0.1:{ollama.httpd.server_address[1]}"
    yield rp, pod_id, ollama, url
    ollama.close()


def document(pod_id, url, timeout=5.0, fallbacks=False):
    return {"aliases": {"fast": {"timeout": timeout, "fallbacks": fallbacks, "retry_after": 30,
                                 "nodes": [{"node": "pod", "instance": f"runpod:{pod_id}", "url": url}]}}}


def resumes(rp):
    return sum(1 for _, _, body in rp.requests if "podResume" in json.dumps(body))


def test_a_request_for_a_stopped_node_starts_it_once_and_waits_until_it_answers(pod):
    rp, pod_id, ollama, url = pod
    waker = Waker(document(pod_id, url))
    results = []
    together = threading.Barrier(3)

    def ask():
        together.wait(timeout=30)
        results.append(waker.ensure("fast"))

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # Each waits for the one start; a thread the machine schedules only after the pod answers finds it
    # serving, which is as right (under load that happens).
    assert len(results) == 3 and "woken" in results and set(results) <= {"woken", "serving"}
    assert rp.pods[pod_id]["desiredStatus"] == "RUNNING" and requests.get(url, timeout=5).ok
    assert resumes(rp) == 1  # three requests, one start
    assert waker.ensure("fast") == "serving" and resumes(rp) == 1
    assert waker.ensure("other") == ""  # not an alias the gateway wakes


def test_a_node_that_does_not_answer_in_time_gives_a_retry_after(pod):
    rp, pod_id, ollama, url = pod
    rp.boot_polls = 10_000  # it starts, but never comes up within the alias's timeout
    with pytest.raises(Asleep) as asleep:
        Waker(document(pod_id, url, timeout=0.5)).ensure("fast")
    assert asleep.value.retry_after == 30 and "did not answer within the alias's 0.5 s" in str(asleep.value)
    assert rp.pods[pod_id]["desiredStatus"] == "RUNNING"  # asked to start: the next request finds it booting


def test_with_fallbacks_the_request_goes_on_while_the_node_starts(pod):
    rp, pod_id, ollama, url = pod
    assert Waker(document(pod_id, url, fallbacks=True)).ensure("fast") == "falling back"
    assert rp.pods[pod_id]["desiredStatus"] == "RUNNING"


def test_a_node_its_vendor_no_longer_knows_is_reported_not_woken(pod):
    rp, pod_id, ollama, url = pod
    unrented = {"aliases": {"fast": {**document(pod_id, url)["aliases"]["fast"],
                                     "nodes": [{"node": "pod", "instance": "unknown:pod", "url": url}]}}}
    with pytest.raises(Asleep, match="no node to wake"):
        Waker(unrented).ensure("fast")
    rp.pods.pop(pod_id)
    with pytest.raises(Asleep, match=r"no node to wake \(pod unknown to their vendors\); run `pulumi up`"):
        Waker(document(pod_id, url)).ensure("fast")


@pytest.fixture
def woken_gateway(pod, tmp_path, monkeypatch):
    """The real LiteLLM proxy with the wake hook, started the way `gateway.deploy: local` starts it."""
    if not litellm_binary().exists():
        pytest.skip(f"no LiteLLM proxy at {litellm_binary()}: `make setup` installs litellm[proxy]")
    rp, pod_id, ollama, url = pod
    port = int(url.rsplit(":", 1)[1])
    steady = FakeOllama(name="steady")
    steady.install("qwen3:8b")
    plan = plan_estate(wake_spec())
    endpoints = {"pod": ("127.0.0.1", {"11434": port}), "always": ("127.0.0.1", {"11434": steady.httpd.server_address[1]})}
    config = gateway.render_litellm_config(plan, endpoints)
    files = gateway.gateway_files(plan, config, {"pod": f"runpod:{pod_id}"}, endpoints)
    monkeypatch.setenv("ESTATE_POLL_SECONDS", "0.1")  # the gateway's process polls the vendor at this pace
    provider = LocalGatewayProvider()
    outs = provider.create({"config": config, "port": 0, "state_dir": str(tmp_path),
                            "files": {k: v for k, v in files.items() if k != "config.yaml"}}).outs
    yield {"url": outs["url"], "key": outs["master_key"], "runpod": rp, "pod": pod_id, "log": tmp_path / "gateway.log"}
    provider.delete("", outs)
    steady.close()


def chat(gw, model):
    return requests.post(f"{gw['url']}/v1/chat/completions", timeout=60, headers={"Authorization": f"Bearer {gw['key']}"},
                         json={"model": model, "messages": [{"role": "user", "content": "hello"}]})


def test_through_the_real_proxy_a_request_wakes_the_node_and_it_answers(woken_gateway):
    gw = woken_gateway
    resp = chat(gw, "fast")
    assert resp.status_code == 200, resp.text + gw["log"].read_text()[-2000:]
    assert resp.json()["choices"][0]["message"]["content"] == "pod-ollama answers with tinyllama:1.1b"
    assert gw["runpod"].pods[gw["pod"]]["desiredStatus"] == "RUNNING"
    assert chat(gw, "steady").status_code == 200  # an alias it does not wake is left alone


def test_through_the_real_proxy_a_node_that_cannot_wake_in_time_answers_503_with_retry_after(woken_gateway):
    gw = woken_gateway
    gw["runpod"].boot_polls = 10_000
    spec_timeout = 20
    resp = chat(gw, "fast")
    assert resp.status_code == 503, resp.text + gw["log"].read_text()[-2000:]
    assert resp.headers.get("retry-after") == str(spec_timeout)
    assert "did not answer within the alias's 20 s" in resp.text


def prod_with_an_idle_node():
    """prod, with its 'batch' RunPod node left to its idle watcher: 'batch' alone serves no alias, so an
    alias of its own ('batch-chat') is the one its gateway, over SSH on the VPS, wakes."""
    raw = stack_estate("prod")
    raw["nodes"]["batch"]["power"] = "idle"
    raw["gateway"]["aliases"]["batch-chat"] = "qwen3:8b"
    raw["nodes"]["qwen"]["workloads"]["ollama"]["models"].remove("qwen3:8b")
    raw["gateway"]["aliases"].pop("gpt-3.5-turbo-fast")
    raw["gateway"]["fallbacks"].pop("gpt-3.5-turbo-fast")
    raw["gateway"]["fallbacks"]["gpt-3.5-turbo"] = ["openai-gpt-4o-mini"]
    raw["gateway"]["fallbacks"]["burst"] = ["openai-gpt-4o-mini"]
    return raw


def test_the_library_a_gateway_host_runs_the_hook_on_is_complete_on_its_own(pod, tmp_path):
    """The hook's modules as shipped under lib/, run by the gateway's Python in isolated mode (no
    project on its path): they wake the loopback node as the project's own code does."""
    rp, pod_id, ollama, url = pod
    plan = plan_estate(parse_spec(prod_with_an_idle_node()))
    assert set(plan.wake) == {"batch-chat"}
    files = gateway.gateway_files(plan, "model_list: []\n", {"batch": f"runpod:{pod_id}"}, library=True)
    assert set(files) == {"config.yaml", "wake/estate_wake.py", "wake/wake.json"}
    unpack_library(tmp_path / "lib")
    assert sorted(str(p.relative_to(tmp_path / "lib")) for p in (tmp_path / "lib").rglob("*") if p.is_file()) == \
        sorted(gateway.LIBRARY)
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    doc = json.loads(files["wake/wake.json"])
    (node,) = doc["aliases"]["batch-chat"]["nodes"]
    assert node == {"node": "batch", "instance": f"runpod:{pod_id}", "url": "http://127.0.0.1:11436"}  # its tunnel
    doc["aliases"]["batch-chat"]["nodes"][0]["url"] = url  # where this test's loopback Ollama answers
    (tmp_path / "wake" / "wake.json").write_text(json.dumps(doc))
    run = subprocess.run(
        [str(litellm_binary().parent / "python"), "-I", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); from agents.wake import Waker; "
         "print(Waker.from_file(sys.argv[2]).ensure('batch-chat'))",
         str(tmp_path / "lib"), str(tmp_path / "wake" / "wake.json")],
        capture_output=True, text=True, timeout=120,
        env={"RUNPOD_API_URL": os.environ["RUNPOD_API_URL"], "RUNPOD_API_KEY": "rp-test-key", "ESTATE_POLL_SECONDS": "0.1",
             "PATH": os.environ["PATH"]})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "woken" and rp.pods[pod_id]["desiredStatus"] == "RUNNING"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_the_gateway_unit_mounts_the_hook_and_its_library_and_passes_systemd_analyze(tmp_path):
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\n")
    docker.chmod(0o755)
    plan = plan_estate(parse_spec(prod_with_an_idle_node()))
    unit = gateway.gateway_units(plan, {}, docker=str(docker))["estate-litellm-blue.service"]
    for mount in ("/etc/estate/gateway/wake/estate_wake.py:/app/estate_wake.py:ro",
                  "/etc/estate/gateway/wake/wake.json:/app/wake.json:ro",
                  "/etc/estate/gateway/lib:/app/estate-lib:ro", "-e PYTHONPATH=/app/estate-lib"):
        assert mount in unit
    (tmp_path / "estate-litellm-blue.service").write_text(unit)
    run = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "estate-litellm-blue.service")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    # prod as committed wakes nothing: its unit is the one it always had.
    assert "estate-lib" not in gateway.gateway_units(plan_estate(parse_spec(stack_estate("prod"))), {})["estate-litellm-blue.service"]


def test_an_ssh_gateway_gets_the_hook_its_library_and_the_vendor_key_it_starts_nodes_with():
    import base64

    from tests.mocks import run_program, stack_config

    config = {**stack_config("prod"), **{f"gpu-estate:{k}": v for k, v in prod_with_an_idle_node().items()},
              "gpu-estate:runpodApiKey": "rpa_" + "W" * 40}
    mocks = run_program(config, stack="prod")
    deploy = mocks.named("gateway-deploy").inputs["stdin"]
    library = next(line for line in deploy.splitlines() if line.startswith("# the estate's modules"))
    assert "agents/wake.py" in library and "callbacks:\n  - estate_wake.handler" in deploy
    assert "| tar -xz --no-same-owner -C /etc/estate/gateway/lib.new" in deploy
    assert '"instance": "runpod:i-1"' in deploy  # the batch node's instance, from its resource
    stdin = dict(line.split(" ", 1) for line in mocks.named("gateway-secrets").inputs["stdin"].splitlines())
    assert f"RUNPOD_API_KEY=rpa_{'W' * 40}\n" in base64.b64decode(stdin["/etc/estate/gateway/gateway.env"]).decode()
    assert "rpa_" + "W" * 40 not in deploy
