"""The gateway derived from the estate: tunnels, the LiteLLM config, units, the print command, the
Caddyfile, and the rendered config run under the real LiteLLM proxy in front of loopback Ollamas."""
import tests
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from components import edge, gateway
from core.topology import plan_estate, tunnel_plan
from core.config import parse_spec
from core.errors import ConfigError
from providers.local_gateway import LocalGatewayProvider, litellm_binary
from loopback.ollama import FakeOllama
from loopback.openai_server import FakeModelServer
from loopback.runpod import FakeRunPod
from tests.mocks import stack_estate

ROOT = tests.ROOT


@pytest.fixture(scope="module")
def prod():
    return parse_spec(stack_estate("prod"))


def entries(config, alias):
    return [m for m in config["model_list"] if m["model_name"] == alias]


def test_tunnels_forward_only_what_the_gateway_needs(prod):
    plan = {n: [(f.remote, f.local) for f in fwds] for n, fwds in tunnel_plan(prod).items()}
    # Ollama of every node serving an alias (qwen's images bridge for its image aliases), the route targets
    # and the declared tunnels; gcp-dev serves no alias: no tunnel.
    assert plan == {"inference": [(11434, 11434), (3000, 3000)], "training": [(5001, 5001)],
                    "qwen": [(11434, 11435), (8189, 8189), (8188, 8188)], "batch": [(11434, 11436)], "burst": [(11434, 11437)]}


def test_one_entry_per_alias_and_serving_node_with_the_node_price(prod):
    config = gateway.litellm_config(plan_estate(prod))
    assert {m["model_info"]["node"] for m in entries(config, "gpt-3.5-turbo")} == {"qwen", "burst"}  # balanced
    (gpt4,) = entries(config, "gpt-4")
    assert gpt4["litellm_params"]["model"] == "ollama_chat/qwen3:32b"
    assert gpt4["litellm_params"]["api_base"] == "http://127.0.0.1:11435"  # qwen's tunnel
    assert gpt4["litellm_params"]["timeout"] == 300
    assert gpt4["litellm_params"]["input_cost_per_second"] == pytest.approx(0.30 / 3600)
    (coder,) = entries(config, "coder")
    assert coder["litellm_params"]["timeout"] == 120  # the default


def test_external_keys_are_references_and_fallbacks_keep_their_order(prod):
    config = gateway.litellm_config(plan_estate(prod))
    (gpt4o,) = entries(config, "openai-gpt-4o")
    assert gpt4o["litellm_params"]["api_key"] == "os.environ/OPENAI_API_KEY"
    assert {"gpt-4": ["openai-gpt-4o", "anthropic-sonnet"]} in config["router_settings"]["fallbacks"]
    assert config["router_settings"]["routing_strategy"] == "least-busy"
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"


def test_a_price_known_after_up_replaces_the_estimate(prod):
    config = gateway.litellm_config(plan_estate(prod), hourly={"qwen": 0.18})
    (gpt4,) = entries(config, "gpt-4")
    assert gpt4["litellm_params"]["input_cost_per_second"] == pytest.approx(0.18 / 3600)


def test_an_alias_served_only_by_stopped_nodes_needs_a_fallback():
    r = stack_estate("prod")
    r["nodes"]["inference"]["power"] = "stopped"
    with pytest.raises(ConfigError, match=r"gpu-estate:gateway.aliases.coder: every node serving 'deepseek-coder-v2:16b' is stopped"):
        parse_spec(r)
    r["gateway"]["fallbacks"]["coder"] = ["openai-gpt-4o"]
    assert not entries(gateway.litellm_config(plan_estate(parse_spec(r))), "coder")  # nothing routes to a stopped node


def test_routes_to_direct_nodes_and_a_proxy_off_the_gateway_are_refused():
    r = stack_estate("prod")
    r["nodes"]["training"]["access"] = "direct"
    with pytest.raises(ConfigError, match=r"gpu-estate:routes.mlflow.example.com.service: node 'training' has access 'direct'"):
        parse_spec(r)
    r = stack_estate("prod")
    r["edge"]["proxy_node"] = "inference"
    with pytest.raises(ConfigError, match=r"gpu-estate:edge.proxy_node: the edge runs on the gateway host 'vps'"):
        parse_spec(r)


def test_print_command_shows_the_config_and_says_where_addresses_are_unknown(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "gateway_config.py"), "prod"],
                         capture_output=True, text=True, check=True)
    printed = yaml.safe_load(run.stdout)
    assert printed == gateway.litellm_config(plan_estate(parse_spec(stack_estate("prod"))))
    assert "sk-" not in run.stdout
    # A directly reached node: its address is unknown before `up`, then read from the stack's outputs.
    r = stack_estate("prod")
    r["nodes"]["burst"]["access"] = "direct"
    direct = parse_spec(r)
    (burst,) = [m for m in entries(gateway.litellm_config(plan_estate(direct)), "gpt-3.5-turbo") if m["model_info"]["node"] == "burst"]
    assert burst["litellm_params"]["api_base"] == "http://address-of-burst-known-after-up:11434"
    known = gateway.litellm_config(plan_estate(direct), endpoints={"burst": ("198.51.100.8", {"11434": 41434})})
    (burst,) = [m for m in entries(known, "gpt-3.5-turbo") if m["model_info"]["node"] == "burst"]
    assert burst["litellm_params"]["api_base"] == "http://198.51.100.8:41434"


def test_print_command_fills_in_a_serverless_route_from_the_stacks_outputs(tmp_path):
    def burst(printed):
        (entry,) = entries(yaml.safe_load(printed), "burst")
        return entry["litellm_params"]

    command = [sys.executable, str(ROOT / "scripts" / "gateway_config.py"), "prod"]
    before = burst(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    assert before["api_base"] == "https://api.runpod.ai/v2/id-of-goblin-inference-known-after-up/openai/v1"
    assert before["api_key"] == "os.environ/RUNPOD_API_KEY" and before["model"] == "openai/qwen3-8b-serverless"
    outputs = tmp_path / "out.json"
    outputs.write_text('{"serverless": {"goblin-inference": {"endpoint_id": "abc123", '
                       '"openai_base": "https://api.runpod.ai/v2/abc123/openai/v1"}}}')
    after = burst(subprocess.run([*command, "--outputs", str(outputs)], capture_output=True, text=True, check=True).stdout)
    assert after["api_base"] == "https://api.runpod.ai/v2/abc123/openai/v1"


def test_print_command_refuses_a_stack_without_gateway():
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "gateway_config.py"), "dev"], capture_output=True, text=True)
    assert run.returncode == 2 and "has no gpu-estate:gateway" in run.stderr


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
@pytest.mark.skipif(not shutil.which("autossh"), reason="autossh is not installed (apt-get install autossh)")
def test_gateway_units_pass_systemd_analyze_verify(tmp_path, prod):
    docker = tmp_path / "docker"  # the units run containers; verify only needs the binary to exist
    docker.write_text("#!/bin/sh\n")
    docker.chmod(0o755)
    plan = tunnel_plan(prod)
    units = gateway.gateway_units(plan_estate(prod), {"qwen": ("198.51.100.7", 40022, "root")}, docker=str(docker))
    assert set(units) == {*gateway.LITELLM_UNITS.values(), gateway.FRONT_UNIT, *(f"estate-tunnel-{n}.service" for n in plan),
                          gateway.SPEND_UNIT, gateway.SPEND_TIMER, "estate-identity.service"}  # for Cloud Run
    qwen = units["estate-tunnel-qwen.service"]
    assert ("-L 127.0.0.1:11435:127.0.0.1:11434 -L 127.0.0.1:8189:127.0.0.1:8189 -L 127.0.0.1:8188:127.0.0.1:8188 "
            "root@198.51.100.7") in qwen
    assert "-p 40022" in qwen and "ServerAliveInterval=30" in qwen and "Restart=always" in qwen
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    run = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in units)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.skipif(not shutil.which("caddy"), reason="caddy is not installed (apt-get install caddy)")
def test_rendered_caddyfile_passes_caddy_validate(tmp_path):
    r = stack_estate("prod")
    r["edge"]["mode"] = "caddy"
    r["routes"]["chat.example.com"]["auth"] = "basic"
    spec = parse_spec(r)
    hashed = "$2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG"
    text = edge.render_caddyfile(plan_estate(spec), hashed)
    assert text.count("basicauth") == len(spec.routes)  # every site, whatever its route says
    assert "reverse_proxy 127.0.0.1:3000" in text
    path = tmp_path / "Caddyfile"
    path.write_text(text)
    run = subprocess.run(["caddy", "validate", "--config", str(path), "--adapter", "caddyfile"],
                         capture_output=True, text=True, env={**os.environ, "HOME": str(tmp_path),
                                                              "XDG_DATA_HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-2000:]


def test_cloudflare_ingress_ends_with_a_catch_all(prod):
    rules = edge.ingress_rules(plan_estate(prod))
    assert rules[-1] == {"service": "http_status:404"}
    assert {"hostname": "mlflow.example.com", "service": "http://127.0.0.1:5001",
            "origin_request": {"http_host_header": "127.0.0.1:5001"}} in rules
    # The gateway's hostname forwards its inference routes only, with the gateway's own address as Host.
    (gw,) = [r for r in rules if r.get("hostname") == "myai.example.com"]
    assert gw == {"hostname": "myai.example.com", "service": "http://127.0.0.1:8000", "path": edge.INFERENCE_PATHS,
                  "origin_request": {"http_host_header": "127.0.0.1:8000"}}


# -- the real LiteLLM proxy ---------------------------------------------------------------------------

CODER = "Qwen/Qwen2.5-Coder-7B-Instruct"
SERVERLESS_MODEL = "qwen2.5-1.5b"
RUNPOD_KEY = "rpa-loopback-gateway-test-key"


def proxy_spec():
    """Three directly reached nodes: 'big' serves gpt-4, both Ollamas serve 'fast' (balanced), 'small' alone
    serves 'backup', which gpt-4 and 'coder' fall back to; 'vl' serves 'coder' with a vLLM preset; the
    serverless endpoint 'sls' serves 'burst', which falls back to 'backup'."""
    node = lambda models: {"provider": "tensordock", "gpu": {"model": "rtx4090"}, "max_price_per_hour": 0.4,  # noqa: E731
                           "access": "direct", "workloads": {"ollama": {"models": models}},
                           "ssh": {"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFXdBfpWUE7y0nZ8rsibV0rc/1JxweHTokQjkgvrZxWD"}}
    return parse_spec({
        "nodes": {"big": node(["qwen3:14b", "qwen3:8b"]), "small": node(["qwen3:8b", "llama3.2:3b"]),
                  "vl": {**node([]), "workloads": {"vllm": {"model": CODER, "model_size_gb": 15.2}}},
                  "gw": {"provider": "host", "address": "127.0.0.1", "workloads": {"litellm": {}},
                         "ssh": {"host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGgtgdW9ZLnsrjGnasMVWnMuUvMEboNU8GOJmJqjIes"}}},
        "gateway": {"node": "gw", "aliases": {"gpt-4": "qwen3:14b", "fast": "qwen3:8b", "backup": "llama3.2:3b",
                                              "coder": CODER, "burst": SERVERLESS_MODEL},
                    "fallbacks": {"gpt-4": ["backup"], "coder": ["backup"], "burst": ["backup"]},
                    "timeouts": {"default": 20}, "num_retries": 0},
        "serverless": {"sls": {"image": "runpod/worker-v1-vllm:v2.27.0", "gpu_pools": ["AMPERE_16"],
                               "model": "Qwen/Qwen2.5-1.5B-Instruct", "served_name": SERVERLESS_MODEL,
                               "busy_hours_per_month": 10}},
        "budget": {"monthly_usd": 1000},
    })


@pytest.fixture(scope="module")
def litellm_proxy(tmp_path_factory):
    """The rendered config under the real proxy, started the way `gateway.deploy: local` starts it."""
    if not litellm_binary().exists():
        pytest.skip(f"no LiteLLM proxy at {litellm_binary()}: `make setup` installs litellm[proxy]")
    big, small = FakeOllama(name="big"), FakeOllama(name="small")
    for fake in (big, small):
        for tag in ("qwen3:14b", "qwen3:8b", "llama3.2:3b"):
            fake.install(tag)
    vl = FakeModelServer(CODER, name="vl")
    runpod = FakeRunPod()
    runpod.api_key = RUNPOD_KEY
    # The endpoint as the provider saves it, so its template's env names the model it serves.
    from providers.runpod_serverless import EndpointInputs, ServerlessApi, TemplateInputs

    saved_env = {k: os.environ.get(k) for k in ("RUNPOD_API_URL", "RUNPOD_API_KEY", "RUNPOD_SERVERLESS_URL")}
    os.environ.update({"RUNPOD_API_URL": f"{runpod.url}/graphql", "RUNPOD_API_KEY": RUNPOD_KEY,
                       "RUNPOD_SERVERLESS_URL": f"{runpod.url}/v2"})
    sls = proxy_spec().serverless["sls"]
    api = ServerlessApi({})
    template = api.save_template("sls", TemplateInputs(image=sls.image, container_disk_gb=20, env=sls.template_env()))
    endpoint = api.save_endpoint("sls", template["id"], EndpointInputs(gpu_ids=sls.gpu_ids))
    serverless = {"sls": api.openai_base(endpoint["id"])}
    api.close()
    endpoints = {"big": ("127.0.0.1", {"11434": big.httpd.server_address[1]}),
                 "small": ("127.0.0.1", {"11434": small.httpd.server_address[1]}),
                 "vl": ("127.0.0.1", {"8000": vl.httpd.server_address[1]})}
    d = tmp_path_factory.mktemp("litellm")
    provider = LocalGatewayProvider()
    # The gateway's process reads the RunPod key from its environment (a secret in the env file over SSH).
    config = gateway.render_litellm_config(plan_estate(proxy_spec()), endpoints, serverless=serverless)
    assert RUNPOD_KEY not in config
    outs = provider.create({"config": config, "port": 0, "state_dir": str(d)}).outs
    yield {"url": outs["url"], "key": outs["master_key"], "big": big, "small": small, "vl": vl, "log": d / "gateway.log",
           "runpod": runpod, "endpoint": endpoint["id"]}
    provider.delete("", outs)
    for fake in (big, small, vl, runpod):
        fake.close()
    for k, v in saved_env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def chat(proxy, model):
    return requests.post(f"{proxy['url']}/v1/chat/completions", timeout=60,
                         headers={"Authorization": f"Bearer {proxy['key']}"},
                         json={"model": model, "messages": [{"role": "user", "content": "hello"}]})


def test_proxy_lists_exactly_the_aliases(litellm_proxy):
    resp = requests.get(f"{litellm_proxy['url']}/v1/models", headers={"Authorization": f"Bearer {litellm_proxy['key']}"},
                        timeout=10)
    assert resp.status_code == 200, resp.text
    assert sorted(m["id"] for m in resp.json()["data"]) == ["backup", "burst", "coder", "fast", "gpt-4"]


def test_proxy_refuses_a_request_without_the_master_key(litellm_proxy):
    resp = requests.get(f"{litellm_proxy['url']}/v1/models", timeout=10)
    assert resp.status_code in (401, 403)


def test_a_chat_to_an_alias_reaches_the_node_serving_it(litellm_proxy):
    resp = chat(litellm_proxy, "gpt-4")
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "big answers with qwen3:14b"
    assert litellm_proxy["big"].chats[-1] == "qwen3:14b"


def test_an_alias_on_two_nodes_is_balanced_across_them(litellm_proxy):
    served = {chat(litellm_proxy, "fast").json()["choices"][0]["message"]["content"].split()[0] for _ in range(12)}
    assert served == {"big", "small"}


def test_an_alias_served_by_a_vllm_preset_reaches_it_under_the_name_it_serves(litellm_proxy):
    resp = chat(litellm_proxy, "coder")
    assert resp.status_code == 200, resp.text + litellm_proxy["log"].read_text()[-2000:]
    assert resp.json()["choices"][0]["message"]["content"] == f"vl answers with {CODER}"
    vl = litellm_proxy["vl"]
    assert vl.chats == [CODER]
    # The server is sent the placeholder key, never the gateway's master key.
    sent = [h for (method, path, _), h in zip(vl.requests, vl.headers) if path == "/v1/chat/completions"]
    assert sent and all(h.get("authorization") == "Bearer none" for h in sent)
    assert litellm_proxy["key"] not in repr(vl.headers)


def test_an_alias_served_by_a_serverless_endpoint_goes_through_runpods_openai_route(litellm_proxy):
    runpod, endpoint = litellm_proxy["runpod"], litellm_proxy["endpoint"]
    resp = chat(litellm_proxy, "burst")
    assert resp.status_code == 200, resp.text + litellm_proxy["log"].read_text()[-2000:]
    assert resp.json()["choices"][0]["message"]["content"] == f"serverless {endpoint} answers with {SERVERLESS_MODEL}"
    assert runpod.chats == [(endpoint, SERVERLESS_MODEL)]
    # Signed with the RunPod key (RunPod's route refuses any other), never the gateway's master key.
    sent = [h for (method, path, _), h in zip(runpod.requests, runpod.headers) if path.startswith("/v2/")]
    assert sent and all(h.get("authorization") == f"Bearer {RUNPOD_KEY}" for h in sent)
    assert litellm_proxy["key"] not in repr(runpod.headers)


def test_with_the_serverless_endpoint_gone_its_alias_falls_back(litellm_proxy):
    runpod = litellm_proxy["runpod"]
    with runpod.lock:
        runpod.endpoints.clear()  # deleted in RunPod's console: its route answers 404
    resp = chat(litellm_proxy, "burst")
    assert resp.status_code == 200, resp.text + litellm_proxy["log"].read_text()[-2000:]
    assert resp.json()["choices"][0]["message"]["content"] == "small answers with llama3.2:3b"


def test_with_the_vllm_server_down_its_alias_falls_back_to_an_ollama(litellm_proxy):
    litellm_proxy["vl"].kill()
    resp = chat(litellm_proxy, "coder")
    assert resp.status_code == 200, resp.text + litellm_proxy["log"].read_text()[-2000:]
    assert resp.json()["choices"][0]["message"]["content"] == "small answers with llama3.2:3b"


def test_with_the_primary_down_the_request_falls_back(litellm_proxy):
    litellm_proxy["big"].kill()
    resp = chat(litellm_proxy, "gpt-4")
    assert resp.status_code == 200, resp.text + litellm_proxy["log"].read_text()[-2000:]
    assert resp.json()["choices"][0]["message"]["content"] == "small answers with llama3.2:3b"


def test_a_local_gateway_must_be_this_machine_and_reach_nodes_directly():
    r = stack_estate("prod")
    r["gateway"]["deploy"] = "local"
    with pytest.raises(ConfigError) as err:
        parse_spec(r)
    text = str(err.value)
    assert "gpu-estate:gateway.deploy: local runs LiteLLM on this machine: node 'vps' must be provider 'host' with address 127.0.0.1" in text
    assert "need deploy 'ssh' (got 'local')" in text
    r = stack_estate("prod")
    r["gateway"]["port"] = 0
    with pytest.raises(ConfigError, match=r"gpu-estate:gateway.port: a free port is only picked for deploy 'local' \(got 0\)"):
        parse_spec(r)


def test_a_refresh_keeps_a_local_gateway_that_lives_but_answers_slowly(tmp_path):
    """A busy machine's LiteLLM may miss its health check: refresh must not drop it from state (the next up
    would start a second one and leave this one running, managed by nothing)."""
    busy = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        props = {"pid": busy.pid, "url": "http://127.0.0.1:9", "state_dir": str(tmp_path), "config": "", "port": 0}
        assert LocalGatewayProvider().read("local-gateway-1", props).id == "local-gateway-1"
        busy.kill()
        busy.wait()
        assert LocalGatewayProvider().read("local-gateway-1", props).id == ""  # it died: gone
    finally:
        busy.kill()


# -- the real LiteLLM proxy in front of the real Ollama ---------------------------------------------------

def real_spec(tiny, registry_host):
    """'real' serves the project's tiny model under two aliases, 'tiny' and 'words', each falling back to
    'backup', which 'spare' (a loopback Ollama) serves."""
    node = lambda ollama: {"provider": "tensordock", "gpu": {"model": "rtx4090"}, "max_price_per_hour": 0.4,  # noqa: E731
                           "access": "direct", "workloads": {"ollama": ollama},
                           "ssh": {"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFXdBfpWUE7y0nZ8rsibV0rc/1JxweHTokQjkgvrZxWD"}}
    return parse_spec({
        "nodes": {"real": node({"models": [tiny], "insecure_registries": [registry_host], "host_network": True}),
                  "spare": node({"models": ["llama3.2:3b"]}),
                  "gw": {"provider": "host", "address": "127.0.0.1", "workloads": {"litellm": {}},
                         "ssh": {"host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGgtgdW9ZLnsrjGnasMVWnMuUvMEboNU8GOJmJqjIes"}}},
        "gateway": {"node": "gw", "aliases": {"tiny": tiny, "words": tiny, "backup": "llama3.2:3b"},
                    "fallbacks": {"tiny": ["backup"], "words": ["backup"]},
                    "timeouts": {"default": 30}, "num_retries": 0},
        "budget": {"monthly_usd": 1000},
    })


@pytest.fixture(scope="module")
def real_proxy(tmp_path_factory, tiny_registry):
    """The real proxy routing to the real Ollama, run in Docker from the sandbox's image (on this machine's
    network, so it pulls from the loopback registry), and to a loopback Ollama as the fallback."""
    import sandbox
    from loopback import machine
    from sandbox import real_ollama
    from providers.ssh_forward import free_port

    if not litellm_binary().exists():
        pytest.skip(f"no LiteLLM proxy at {litellm_binary()}: `make setup` installs litellm[proxy]")
    why = machine.missing(real_ollama.IMAGE)
    if why:
        if sandbox.vm_required():
            pytest.fail(f"the real Ollama's container must run here: {why}")
        pytest.skip(why)
    port, name = free_port(), f"gpu-estate-gateway-test-{os.getpid()}"
    models = tmp_path_factory.mktemp("ollama")
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--network", "host", "-e",
                    f"OLLAMA_HOST=127.0.0.1:{port}", "-v", f"{models}:/root/.ollama", real_ollama.IMAGE],
                   check=True, capture_output=True, timeout=60)
    spare = FakeOllama(name="spare")
    spare.install("llama3.2:3b")
    provider, outs = LocalGatewayProvider(), None
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):  # bounded: the container's server answers within seconds
            try:
                if requests.get(url, timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        pulled = requests.post(f"{url}/api/pull", json={"model": tiny_registry.tiny, "insecure": True, "stream": False},
                               timeout=120)
        assert pulled.json() == {"status": "success"}, pulled.text
        endpoints = {"real": ("127.0.0.1", {"11434": port}),
                     "spare": ("127.0.0.1", {"11434": spare.httpd.server_address[1]})}
        config = gateway.render_litellm_config(plan_estate(real_spec(tiny_registry.tiny, tiny_registry.host)), endpoints)
        d = tmp_path_factory.mktemp("litellm")
        outs = provider.create({"config": config, "port": 0, "state_dir": str(d)}).outs
        yield {"url": outs["url"], "key": outs["master_key"], "container": name, "spare": spare, "log": d / "gateway.log"}
    finally:
        if outs is not None:
            provider.delete("", outs)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
        spare.close()


def test_aliases_reach_the_real_ollama_and_its_tokens(real_proxy):
    for alias in ("tiny", "words"):
        resp = chat(real_proxy, alias)
        assert resp.status_code == 200, resp.text + real_proxy["log"].read_text()[-2000:]
        body = resp.json()
        assert body["choices"][0]["message"]["content"].strip() and body["usage"]["completion_tokens"] > 0
        assert resp.headers["x-litellm-model-id"] == f"{alias}@real"  # the real Ollama's entry, not the fallback
    assert real_proxy["spare"].chats == []


def test_with_the_real_ollamas_container_stopped_the_alias_falls_back(real_proxy):
    subprocess.run(["docker", "stop", real_proxy["container"]], check=True, capture_output=True, timeout=60)
    resp = chat(real_proxy, "tiny")
    assert resp.status_code == 200, resp.text + real_proxy["log"].read_text()[-2000:]
    assert resp.json()["choices"][0]["message"]["content"] == "spare answers with llama3.2:3b"


def test_a_local_gateway_reaches_an_ssh_node_through_a_forward_of_its_own():
    spec = parse_spec(stack_estate("sandbox"))  # its `vm` node is reached over SSH, its alias `tiny` served there
    plan = plan_estate(spec)
    assert spec.gateway.deploy == "local" and [f.remote for f in plan.tunnels["vm"]] == [21434]
    # The local ports are the forwards' own, picked when they start: the config reads them as endpoints.
    config = gateway.litellm_config(plan, endpoints={"vm": ("127.0.0.1", {"21434": 40123})})
    (tiny,) = entries(config, "tiny")
    assert tiny["litellm_params"]["api_base"] == "http://127.0.0.1:40123"
    assert tiny["litellm_params"]["model"] == "ollama_chat/127.0.0.1:5000/library/tiny:1"
