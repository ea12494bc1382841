"""The loopback clouds against the vendors' own clients.

A loopback cloud is a claim about a vendor. Here the vendor's own client (the pinned official ``runpod``
SDK and ``vastai`` CLI/SDK from PyPI, each in a venv of its own because their pins clash) drives it
through the operations the estate uses and must succeed, parsing what the loopback answers; then the
project's client does the same operations and must send the same operation, method, path and body keys,
differing only where a test says why. The venvs are made by `make setup`; where one is missing the test
skips naming it, except on the project's CI (GPU_ESTATE_REQUIRE_VM=1), where it fails.
"""
import tests
import json
import os
import subprocess
from pathlib import Path

import pytest

from components import workloads
from core.config import PROJECT_ROOT, parse_spec
from core.pricing import NodeRequest
from loopback.runpod import FakeRunPod
from loopback.tensordock import FakeTensorDock
from loopback.vastai import FakeVast
from providers import runpod as rp_client
from providers import tensordock as td_client
from providers import vastai as vast_client
from providers.gpu_cloud import LaunchSpec

HERE = tests.ROOT / "tests" / "contract"


def sdk_python(vendor: str) -> Path:
    python = PROJECT_ROOT / f".venv-{vendor}" / "bin" / "python"
    if not python.exists():
        why = f"no {python}: run `make setup` (it installs requirements-{vendor}.txt)"
        if os.environ.get("GPU_ESTATE_REQUIRE_VM") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return python


def drive(vendor: str, env: dict, script: str = "") -> dict:
    """Run ``tests/contract/<script or vendor>_sdk.py`` with the vendor's own client; what it printed."""
    run = subprocess.run([str(sdk_python(vendor)), str(HERE / f"{script or vendor}_sdk.py")], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def graphql_ops(fake):
    """(root field, input keys) of every GraphQL request the loopback RunPod recorded."""
    out = []
    for method, path, body in fake.requests:
        name, args, _ = FakeRunPod.operation(body["query"], body.get("variables") or {})
        out.append((method, path, name, sorted((args.get("input") or {}).keys())))
    return out


def pointed_at(fake, monkeypatch, **env):
    """The project's client pointed at ``fake`` (``{url}`` in a value is the fake's address); closes it after."""
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(url=fake.url))
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def runpod(monkeypatch):
    yield from pointed_at(FakeRunPod(), monkeypatch, RUNPOD_API_URL="{url}/graphql", RUNPOD_API_KEY="project-key")


def test_runpods_own_sdk_drives_the_loopback_runpod(runpod):
    out = drive("runpod", {"RUNPOD_API_BASE_URL": runpod.url})
    assert out["gpu"]["id"] == "NVIDIA GeForce RTX 4090"
    assert out["gpu"]["lowestPrice"]["uninterruptablePrice"] == 0.44
    pod_id = out["create"]["id"]
    assert out["get"]["name"] == "contract-pod" and out["get"]["gpuCount"] == 2
    # RunPod's port semantics: /tcp ports get a public port, /http ports only RunPod's HTTPS proxy.
    ports = {p["privatePort"]: p for p in out["get_running"]["runtime"]["ports"]}
    assert ports[22]["isIpPublic"] and ports[8080]["isIpPublic"]
    assert not ports[11434]["isIpPublic"] and ports[11434]["type"] == "http"
    assert [p["id"] for p in out["list"]] == [pod_id]
    assert out["stop"]["desiredStatus"] == "EXITED" and out["resume"]["desiredStatus"] == "RUNNING"
    assert "not found" in out["after_terminate"]
    assert runpod.alive() == []
    assert {(m, p) for m, p, *_ in graphql_ops(runpod)} == {("POST", "/graphql")}


def test_the_project_client_sends_what_the_sdk_sends(runpod):
    drive("runpod", {"RUNPOD_API_BASE_URL": runpod.url})
    sdk = graphql_ops(runpod)
    runpod.requests.clear()
    c = rp_client.Client({})
    request = NodeRequest(gpu_model="rtx4090", gpu_count=2, min_vram_gb=48, vcpu=8, ram_gb=32, disk_gb=50)
    (offer,) = c.offers(request)
    pod_id = c.launch(offer, LaunchSpec(label="contract-pod", image="ollama/ollama:0.12.6", disk_gb=50,
                                        ports=[11434], env={"OLLAMA_KEEP_ALIVE": "30m"}, vcpu=8, ram_gb=32))
    c.get(pod_id)
    c.find("contract-pod")
    c.stop(pod_id)
    c.start(pod_id)
    c.terminate(pod_id)
    ours = graphql_ops(runpod)

    def by_op(ops):
        found = {}
        for method, path, name, keys in ops:
            found.setdefault(name, (method, path, set(keys)))
        return found

    sdk_ops, our_ops = by_op(sdk), by_op(ours)
    for name in ("gpuTypes", "podFindAndDeployOnDemand", "pod", "myself", "podStop", "podResume", "podTerminate"):
        assert our_ops[name][:2] == sdk_ops[name][:2] == ("POST", "/graphql"), name
        if name != "podFindAndDeployOnDemand":
            assert our_ops[name][2] == sdk_ops[name][2], name
    ours_create, sdk_create = our_ops["podFindAndDeployOnDemand"][2], sdk_ops["podFindAndDeployOnDemand"][2]
    # Where they differ, and why: the estate mounts no network volume (volumeInGb 0, so no mount path),
    # sends dockerArgs only with a pod command and dataCenterId only when the node names a region;
    # everything else is what the SDK sends.
    assert sdk_create - ours_create <= {"volumeMountPath", "dockerArgs", "dataCenterId"}
    assert ours_create - sdk_create == set()
    # The ports the project asks for are /tcp, so the gateway gets a public port (the SDK's /http port
    # above got none).
    (create,) = [b for _, _, b in runpod.requests if "podFindAndDeployOnDemand" in b["query"]]
    assert create["variables"]["input"]["ports"] == "22/tcp,11434/tcp"


def test_a_pods_command_reaches_runpod_as_the_sdk_sends_it(runpod):
    """A vLLM preset on RunPod starts from the pod's command (``dockerArgs``): the project's client sends
    the string RunPod's own SDK sends for the same arguments."""
    spec = parse_spec({"nodes": {"vl": {"provider": "runpod", "gpu": {"model": "rtx4090", "count": 2},
                                        "workloads": {"vllm": {"model": "Qwen/Qwen2.5-7B-Instruct",
                                                               "args": ["--max-model-len", "8192"]}}}},
                       "budget": {"monthly_usd": 5000}})
    args = workloads.docker_args(spec.nodes["vl"])
    assert "--tensor-parallel-size" in args
    drive("runpod", {"RUNPOD_API_BASE_URL": runpod.url, "SDK_DOCKER_ARGS": " ".join(args)})
    (sdk_sent,) = [FakeRunPod.operation(b["query"], b.get("variables") or {})[1]["input"].get("dockerArgs")
                   for _, _, b in runpod.requests if "podFindAndDeployOnDemand" in b["query"]]
    c = rp_client.Client({})
    request = NodeRequest(gpu_model="rtx4090", gpu_count=2, min_vram_gb=48, vcpu=8, ram_gb=32, disk_gb=50)
    (offer,) = c.offers(request)
    pod_id = c.launch(offer, LaunchSpec(label="vllm-pod", image="vllm/vllm-openai:v0.11.0", disk_gb=50,
                                        ports=[8000], args=tuple(args), vcpu=8, ram_gb=32))
    assert runpod.pods[pod_id]["dockerArgs"] == sdk_sent == " ".join(args)
    assert sdk_sent.split() == args


def test_a_runpod_quote_is_what_the_pod_bills(runpod):
    c = rp_client.Client({})
    request = NodeRequest(gpu_model="rtx4090", gpu_count=2, min_vram_gb=48, vcpu=8, ram_gb=32, disk_gb=50)
    (offer,) = c.offers(request)
    pod_id = c.launch(offer, LaunchSpec(label="quote", image="img", disk_gb=50, ports=[11434], vcpu=8, ram_gb=32))
    assert offer.price_per_hour == pytest.approx(runpod.pods[pod_id]["costPerHr"])  # 2 x 0.44


def test_a_spot_pod_resumes_with_a_bid_not_podresume(runpod):
    c = rp_client.Client({})
    request = NodeRequest(gpu_model="rtx4090", gpu_count=2, min_vram_gb=48, vcpu=8, ram_gb=32, disk_gb=50, spot=True)
    (offer,) = c.offers(request)
    pod_id = c.launch(offer, LaunchSpec(label="spot", image="img", disk_gb=50, ports=[11434], vcpu=8, ram_gb=32,
                                        bid_per_hour=0.3))
    assert runpod.pods[pod_id]["costPerHr"] == 0.6  # 0.30 per GPU-hour, two GPUs: not divided again
    c.stop(pod_id)
    c.start(pod_id)
    assert runpod.pods[pod_id]["desiredStatus"] == "RUNNING"
    names = [FakeRunPod.operation(b["query"], b.get("variables") or {})[0] for _, _, b in runpod.requests]
    assert "podBidResume" in names and "podResume" not in names


@pytest.fixture
def vast(monkeypatch):
    yield from pointed_at(FakeVast(), monkeypatch, VASTAI_API_URL="{url}/api/v0", VASTAI_API_KEY="project-key")


def rest_ops(fake):
    """(method, path with ids replaced, body keys) of every request the loopback recorded."""
    out = []
    for method, path, body in fake.requests:
        shape = "/".join("{id}" if part.isdigit() else part for part in path.split("/"))
        out.append((method, shape, sorted(body) if isinstance(body, dict) else []))
    return out


def test_vastais_own_sdk_drives_the_loopback_vast(vast):
    out = drive("vastai", {"VASTAI_SERVER_URL": vast.url})
    offer = out["offers"][0]
    assert offer["gpu_name"] == "RTX 3090" and offer["num_gpus"] == 2
    # The SDK names the disk (allocated_storage), so the quote includes it.
    base = next(o for o in vast.offers if o["id"] == offer["id"])
    assert offer["dph_total"] == pytest.approx(base["dph_total"] + base["storage_cost"] * 200 / 730, abs=1e-6)
    iid = out["create"]["new_contract"]
    assert out["show"]["id"] == iid and out["show"]["label"] == "contract-node"
    assert [i["id"] for i in out["list"]] == [iid]
    assert all(r.get("success", True) for r in (out["bid"], out["stop"], out["start"], out["attach"], out["destroy"]))
    assert out["after"] == [] and vast.alive() == []
    # Every GPU name the project searches Vast.ai for is one the SDK knows.
    from core import catalog
    ours = {n for canon in catalog.gpus() for n in catalog.vendor_gpu_names("vastai", canon)}
    assert ours and ours <= set(out["gpu_names"]), ours - set(out["gpu_names"])


def test_the_project_vast_client_sends_what_the_sdk_sends(vast):
    drive("vastai", {"VASTAI_SERVER_URL": vast.url})
    sdk = rest_ops(vast)
    vast.requests.clear()
    c = vast_client.Client({})
    request = NodeRequest(gpu_model="rtx3090", gpu_count=2, min_vram_gb=48, vcpu=8, ram_gb=32, disk_gb=200, spot=True)
    offers = c.offers(request)
    offer = offers[0]
    iid = c.launch(offer, LaunchSpec(label="contract-node", image="ollama/ollama:0.12.6", disk_gb=200, ports=[11434],
                                     env={"OLLAMA_KEEP_ALIVE": "30m"}, onstart="ollama serve", vcpu=8, ram_gb=32,
                                     bid_per_hour=offer.min_bid + 0.01))
    inst = c.get(iid)
    c.find("contract-node")
    c.set_bid(iid, offer.min_bid + 0.05)
    c.attach_ssh_key(iid, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXNhbmRib3hrZXk= contract@estate")
    c.stop(iid)
    c.start(iid)
    c.terminate(iid)
    ours = rest_ops(vast)
    first = lambda ops, m, p: next(((mm, pp, set(k)) for mm, pp, k in ops if mm == m and pp == p), None)  # noqa: E731
    # Search: the same call, the same query keys the SDK sends that matter for the price.
    sdk_search, our_search = first(sdk, "POST", "/api/v0/bundles/"), first(ours, "POST", "/api/v0/bundles/")
    assert sdk_search and our_search and {"allocated_storage", "external", "type", "order"} <= our_search[2]
    # Create, bid, attach an SSH key, start/stop, destroy: same method and path.
    for method, path in (("PUT", "/api/v0/asks/{id}/"), ("PUT", "/api/v0/instances/bid_price/{id}/"),
                         ("POST", "/api/v0/instances/{id}/ssh/"),
                         ("PUT", "/api/v0/instances/{id}/"), ("DELETE", "/api/v0/instances/{id}/")):
        assert first(sdk, method, path), (method, path)
        assert first(ours, method, path), (method, path)
    attach = "/api/v0/instances/{id}/ssh/"
    assert first(sdk, "POST", attach)[2] == first(ours, "POST", attach)[2] == {"ssh_key"}
    sdk_create, our_create = first(sdk, "PUT", "/api/v0/asks/{id}/")[2], first(ours, "PUT", "/api/v0/asks/{id}/")[2]
    # Where they differ, and why: the project never asks for Jupyter or a template, and always sends
    # cancel_unavail (a failed scheduling must not leave a stopped, billing instance).
    assert {"client_id", "image", "disk", "label", "env", "onstart", "price", "cancel_unavail", "runtype"} <= our_create
    assert our_create - sdk_create <= {"args"}, our_create - sdk_create
    # What the project read back: the stripped address, the ports, the price the loopback bills.
    assert inst.address == "127.0.0.1" and 11434 in inst.ports
    assert inst.price_per_hour == pytest.approx(offer.min_bid + 0.01 + 0.1 * 200 / 730, abs=1e-6)


def test_a_vast_quote_is_what_the_instance_bills(vast):
    c = vast_client.Client({})
    request = NodeRequest(gpu_model="rtx4090", gpu_count=1, min_vram_gb=24, vcpu=8, ram_gb=32, disk_gb=300)
    (best, *_) = sorted(c.offers(request), key=lambda o: o.price_per_hour)
    iid = c.launch(best, LaunchSpec(label="quote", image="img", disk_gb=300, ports=[11434], vcpu=8, ram_gb=32))
    assert c.get(iid).price_per_hour == pytest.approx(best.price_per_hour, abs=1e-4)


# TensorDock ships no official v2 client: its loopback cloud follows the v2 reference
# (https://dashboard.tensordock.com/api/v2, as summarised in ../shared/docs/api-contracts.md).

@pytest.fixture
def tensordock(monkeypatch):
    fake = FakeTensorDock()
    yield from pointed_at(fake, monkeypatch, TENSORDOCK_API_URL="{url}/api/v2", TENSORDOCK_API_TOKEN=fake.token)


def test_tensordock_rents_the_count_asked_on_ports_the_host_hands_out(tensordock):
    fake = tensordock
    fake.hostnodes = [fake.hostnode("hn-big", "Frankfurt", "Germany", "geforcertx4090-pcie-24gb", 0.35, 8)]
    c = td_client.Client({})
    request = NodeRequest(gpu_model="rtx4090", gpu_count=1, min_vram_gb=24, vcpu=4, ram_gb=16, disk_gb=100)
    (offer,) = c.offers(request)
    assert offer.gpu_count == 1  # priced at the count asked, not the host's eight free GPUs
    iid = c.launch(offer, LaunchSpec(label="td-node", image="ubuntu2404", disk_gb=100, ports=[11434], vcpu=4,
                                     ram_gb=16, ssh_public_key="ssh-ed25519 AAAA test"))
    (create,) = [b for m, p, b in fake.requests if m == "POST" and p.endswith("/instances")]
    attrs = create["data"]["attributes"]
    assert attrs["resources"]["gpus"] == {"geforcertx4090-pcie-24gb": {"count": 1}}
    externals = [pf["external_port"] for pf in attrs["port_forwards"]]
    assert [pf["internal_port"] for pf in attrs["port_forwards"]] == [22, 11434]
    assert len(set(externals)) == 2 and all(20000 <= e < 20010 for e in externals)
    # What it bills is what was quoted.
    assert fake.instances[iid]["rateHourly"] == pytest.approx(0.35)
    assert offer.price_per_hour == pytest.approx(0.35 + 0.003 * 4 + 0.002 * 16 + 0.00005 * 100)
    # Found by name (the list carries no address): read by id, with the address and the mapped ports.
    (found,) = c.find("td-node")
    assert found.address and found.ports == {22: externals[0], 11434: externals[1]} and found.ssh_port == externals[0]
    # An external port the host does not hand out is refused, as TensorDock does.
    bad = {"data": {"type": "virtualmachine", "attributes": {**attrs, "name": "bad", "port_forwards": [
        {"internal_port": 22, "external_port": 22}]}}}
    status, body = fake.route("POST", "/instances", {}, bad)
    assert status == 400 and "not available" in body["errors"][0]["detail"]


def test_runpods_own_sdk_drives_the_loopback_serverless_api(runpod):
    out = drive("runpod", {"RUNPOD_API_BASE_URL": runpod.url}, "runpod_serverless")
    template, endpoint = out["template"], out["endpoint"]
    assert template["isServerless"] is True and template["volumeInGb"] == 0
    assert {e["key"]: e["value"] for e in template["env"]}["HF_TOKEN"] == "{{ RUNPOD_SECRET_hf-token }}"
    assert (endpoint["templateId"], endpoint["gpuIds"], endpoint["idleTimeout"]) == (template["id"], "AMPERE_24,ADA_24", 300)
    assert (endpoint["workersMin"], endpoint["workersMax"], endpoint["flashBootType"]) == (0, 5, "FLASHBOOT")
    assert [e["id"] for e in out["list"]] == [endpoint["id"]] and out["list"][0]["name"] == "contract-endpoint"
    assert out["moved"] == {"id": endpoint["id"], "templateId": out["second_template"]["id"]}
    assert "unique" in out["duplicate"]  # template names are unique at RunPod


def test_the_project_serverless_client_sends_what_the_sdk_sends(runpod, monkeypatch):
    from providers.runpod_serverless import EndpointInputs, ServerlessApi, TemplateInputs

    drive("runpod", {"RUNPOD_API_BASE_URL": runpod.url}, "runpod_serverless")
    sdk = {name: (method, path, set(keys)) for method, path, name, keys in graphql_ops(runpod)}
    runpod.requests.clear()
    runpod.templates.clear()
    runpod.endpoints.clear()
    api = ServerlessApi({})
    template = api.save_template("ours", TemplateInputs(image="runpod/worker-v1-vllm:v2.27.0", container_disk_gb=20,
                                                        env={"MODEL_NAME": "Qwen/Qwen3-8B"}))
    api.save_endpoint("ours", template["id"], EndpointInputs(gpu_ids="AMPERE_24,ADA_24", locations="US",
                                                             idle_timeout=300, workers_min=0, workers_max=5))
    api.endpoints()
    api.close()
    ours = {name: (method, path, set(keys)) for method, path, name, keys in graphql_ops(runpod)}
    for name in ("saveTemplate", "saveEndpoint", "myself"):
        assert ours[name][:2] == sdk[name][:2] == ("POST", "/graphql"), name
    # Where they differ, and why: the estate pulls public images (no registry credentials).
    assert sdk["saveTemplate"][2] - ours["saveTemplate"][2] == {"containerRegistryAuthId"}
    assert ours["saveTemplate"][2] <= sdk["saveTemplate"][2]
    assert ours["saveEndpoint"][2] == sdk["saveEndpoint"][2]
