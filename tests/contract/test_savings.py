"""Requests sent through the real LiteLLM proxy, with the estate's usage callback loaded from beside its
config, show up in the savings report: those a node answered and those its external fallback answered, with
their tokens, priced at the dated table; and `scripts/status.py savings` prints the same figures."""
import json
import subprocess
import sys
import time

import pytest
import requests
import yaml

import tests
from components import gateway
from core import health, savings
from core.config import parse_spec
from core.topology import plan_estate
from loopback.ollama import FakeOllama
from loopback.openai_server import FakeModelServer
from providers.local_gateway import LocalGatewayProvider, litellm_binary
from providers.wait import wait_for, within

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFXdBfpWUE7y0nZ8rsibV0rc/1JxweHTokQjkgvrZxWD"


def spec(external_url):
    return parse_spec({
        "nodes": {"big": {"provider": "tensordock", "gpu": {"model": "rtx4090"}, "max_price_per_hour": 0.4,
                          "access": "direct", "workloads": {"ollama": {"models": ["qwen3:14b"]}}, "ssh": {"public_key": KEY}},
                  "gw": {"provider": "host", "address": "127.0.0.1", "workloads": {"litellm": {}},
                         "ssh": {"host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGgtgdW9ZLnsrjGnasMVWnMuUvMEboNU8GOJmJqjIes"}}},
        "gateway": {"node": "gw", "deploy": "local", "port": 0, "aliases": {"gpt-4": "qwen3:14b"},
                    "external": {"openai": {"api_key_env": "OPENAI_API_KEY", "api_base": external_url,
                                            "models": {"openai-gpt-4o": "openai/gpt-4o"}}},
                    "fallbacks": {"gpt-4": ["openai-gpt-4o"]}, "timeouts": {"default": 20}, "num_retries": 0},
        "health": {},
        "budget": {"monthly_usd": 1000},
    })


@pytest.fixture
def proxy(tmp_path, monkeypatch):
    if not litellm_binary().exists():
        pytest.skip(f"no LiteLLM proxy at {litellm_binary()}: `make setup` installs litellm[proxy]")
    big, openai = FakeOllama(name="big"), FakeModelServer("gpt-4o", name="openai")
    big.install("qwen3:14b")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-openai")
    plan = plan_estate(spec(f"{openai.url}/v1"))
    endpoints = {"big": ("127.0.0.1", {"11434": big.httpd.server_address[1]})}
    config = gateway.render_litellm_config(plan, endpoints)
    checks = health.check_document(plan, "gpu-estate-savings", endpoints, config=yaml.safe_load(config))
    files = gateway.gateway_files(plan, config, {}, endpoints, checks=checks)
    assert set(files) == {"config.yaml", health.DOCUMENT_FILE, health.USAGE_HOOK}
    provider = LocalGatewayProvider()
    outs = provider.create({"config": config, "port": 0, "state_dir": str(tmp_path),
                            "files": {k: v for k, v in files.items() if k != "config.yaml"}}).outs
    yield {"url": outs["url"], "key": outs["master_key"], "big": big, "openai": openai, "dir": tmp_path, "checks": checks}
    provider.delete("", outs)
    big.close()
    openai.close()


def chat(proxy, model="gpt-4"):
    resp = requests.post(f"{proxy['url']}/v1/chat/completions", timeout=60,
                         headers={"Authorization": f"Bearer {proxy['key']}"},
                         json={"model": model, "messages": [{"role": "user", "content": "hello"}]})
    assert resp.status_code == 200, resp.text
    return resp


def lines(proxy, count):
    path = proxy["dir"] / health.usage_file(time.time())
    return wait_for(lambda: [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else [],
                    lambda got: len(got) >= count, within(30), 0.3, f"{count} usage lines")


def test_node_and_fallback_traffic_counted_per_alias_with_their_tokens(proxy):
    for _ in range(3):
        assert chat(proxy).headers["x-litellm-model-id"] == "gpt-4@big"
    proxy["big"].kill()  # the node's Ollama is gone: the alias falls back to the external API
    for _ in range(2):
        assert chat(proxy).json()["choices"][0]["message"]["content"] == "openai answers with gpt-4o"
    usage = lines(proxy, 5)
    assert sorted(u["id"] for u in usage) == ["gpt-4@big"] * 3 + ["openai-gpt-4o@openai"] * 2
    assert {u["alias"] for u in usage} == {"gpt-4"}
    assert "hello" not in json.dumps(usage)  # no prompt, no answer
    report = savings.month_report(usage, proxy["checks"], usage[0]["month"], nodes_usd=1.0, nodes_basis="test")
    gpt4 = report["aliases"]["gpt-4"]
    # The loopback Ollama counts 5 prompt and 6 generated tokens; the loopback OpenAI server says the same.
    assert gpt4["estate"] == {"requests": 3, "input_tokens": 15, "output_tokens": 18, "images": 0}
    assert gpt4["external"] == {"requests": 2, "input_tokens": 10, "output_tokens": 12, "images": 0}
    assert gpt4["priced_at"] == "openai/gpt-4o"
    assert gpt4["external_equivalent_usd"] == pytest.approx(15 * 2.5e-6 + 18 * 10e-6)
    assert report["totals"]["external_usd"] == pytest.approx(10 * 2.5e-6 + 12 * 10e-6)

    # The command reads the same lines and document.
    run = subprocess.run([sys.executable, str(tests.ROOT / "scripts" / "status.py"), "savings", "--document",
                          str(proxy["dir"] / health.DOCUMENT_FILE), "--usage", str(proxy["dir"]), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    assert printed["aliases"]["gpt-4"]["estate"]["requests"] == 3 and printed["aliases"]["gpt-4"]["external"]["requests"] == 2


def test_litellms_own_metrics_count_the_requests_behind_the_master_key(proxy):
    """A stack with health turns on LiteLLM's Prometheus callback: its /metrics carries its own request and
    token series per model, and answers only to the gateway's key (as the health agent's metrics do)."""
    assert "prometheus" in yaml.safe_load((proxy["dir"] / "config.yaml").read_text())["litellm_settings"]["callbacks"]
    for _ in range(2):
        chat(proxy)
    assert requests.get(f"{proxy['url']}/metrics/", timeout=10).status_code in (401, 403)

    def scrape():
        resp = requests.get(f"{proxy['url']}/metrics/", headers={"Authorization": f"Bearer {proxy['key']}"}, timeout=10)
        assert resp.status_code == 200, resp.text[-500:]
        return [line for line in resp.text.splitlines()
                if line.startswith("litellm_") and 'requested_model="gpt-4"' in line]

    series = wait_for(scrape, lambda got: any(l.startswith("litellm_proxy_total_requests_metric_total") for l in got),
                      within(30), 0.5, "LiteLLM's request series for gpt-4")
    total = [l for l in series if l.startswith("litellm_proxy_total_requests_metric_total")]
    assert sum(float(l.rsplit(" ", 1)[1]) for l in total) == 2
