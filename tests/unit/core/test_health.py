"""The health agent's check document, its alert state machine and the alerts' shapes, the status document
and the savings report: pure data, from the committed prod stack."""
import json

import pytest

from components import gateway
from core import health, savings, status
from core.config import parse_spec
from core.errors import ConfigError
from core.health import DOWN, UP, Result, advance
from core.topology import plan_estate
from tests.mocks import stack_estate


def prod(**health_key):
    r = stack_estate("prod")
    r["health"] = health_key
    return plan_estate(parse_spec(r))


@pytest.fixture(scope="module")
def document():
    plan = prod()
    return health.check_document(plan, "gpu-estate-prod", config=gateway.litellm_config(plan))


def by_id(document):
    return {c["id"]: c for c in document["checks"]}


# -- the check document ---------------------------------------------------------------------------------------

def test_every_routed_service_tunnel_and_the_gateway_is_checked_at_the_gateways_address(document):
    checks = by_id(document)
    assert checks["gateway"]["url"] == "http://127.0.0.1:8000"  # prod's gateway.port
    # qwen's Ollama through its tunnel's local port (11435), with the models its aliases send it.
    qwen = checks["service/qwen/ollama"]
    assert qwen["url"] == "http://127.0.0.1:11435"
    assert qwen["probe"] == {"type": "ollama", "path": "/api/tags", "models": ["qwen3:32b", "qwen3:30b-a3b", "qwen3:14b", "qwen3:8b"],
                             "generate": ["qwen3:14b", "qwen3:30b-a3b", "qwen3:32b", "qwen3:8b"], "loaded_only": True}
    assert checks["service/qwen/comfyui"]["probe"] == {"type": "http", "path": "/system_stats"}  # a port prod tunnels
    assert checks["service/training/mlflow"]["probe"] == {"type": "http", "path": "/health"}  # a route
    assert checks["service/inference/open-webui"]["probe"] == {"type": "http", "path": "/health"}
    tunnels = {c["id"]: c["url"] for c in document["checks"] if c["what"] == "tunnel"}
    # The images bridge beside qwen's ComfyUI is reached through the tunnel too (its port is added to the forward).
    assert tunnels["tunnel/qwen/11434"] == "http://127.0.0.1:11435" and "tunnel/qwen/8189" in tunnels and len(tunnels) == 8
    # gcp-dev serves no alias and is not tunnelled: nothing of it is checked, but its node is listed.
    assert not [c for c in document["checks"] if c.get("node") == "gcp-dev"]
    assert {n["node"] for n in document["nodes"]} >= {"gcp-dev", "vps"}


def test_each_kind_describes_its_own_probe():
    r = stack_estate("prod")
    r["health"] = {}
    r["nodes"]["training"]["workloads"]["coder"] = {"kind": "vllm", "model": "Qwen/Qwen2.5-Coder-7B-Instruct",
                                                    "model_size_gb": 15.2, "gpu": False}
    r["nodes"]["training"]["workloads"]["api"] = {"image": "example/api:1", "port": 9000, "health_path": "/ready"}
    r["gateway"]["aliases"]["coder2"] = "Qwen/Qwen2.5-Coder-7B-Instruct"
    r["tunnels"] = [*r["tunnels"], {"node": "training", "ports": [5432, 9000]}]
    checks = by_id(health.check_document(plan_estate(parse_spec(r)), "s"))
    assert checks["service/training/coder"]["probe"] == {"type": "openai", "path": "/health",
                                                         "models": ["Qwen/Qwen2.5-Coder-7B-Instruct"]}
    assert checks["service/training/pgvector"]["probe"] == {"type": "postgres", "user": "estate", "database": "vectors"}
    assert checks["service/training/api"]["probe"] == {"type": "http", "path": "/ready"}


def test_a_stopped_node_is_not_checked_and_an_idle_one_is_checked_without_a_generation():
    r = stack_estate("prod")
    r["health"] = {}
    r["nodes"]["batch"]["power"] = "stopped"
    r["nodes"]["qwen"].update(power="idle", idle_shutdown_minutes=30)
    doc = health.check_document(plan_estate(parse_spec(r)), "s", machines={"qwen": "vastai:4242"})
    checks = by_id(doc)
    assert "tunnel/batch/11434" not in checks  # no tunnel runs to it
    assert checks["service/qwen/ollama"]["quiet"] is True
    nodes = {n["node"]: n for n in doc["nodes"]}
    assert nodes["qwen"]["instance"] == "vastai:4242" and nodes["batch"]["power"] == "stopped"


def test_the_document_holds_no_secret_and_is_plain_json(document):
    text = json.dumps(document)
    assert "os.environ" not in text and "sk-" not in text
    assert document["deployments"]["gpt-4@qwen"] == {"alias": "gpt-4", "where": "node", "name": "qwen", "model": "ollama_chat/qwen3:32b"}
    assert document["deployments"]["openai-gpt-4o@openai"]["where"] == "external"
    assert document["deployments"]["burst@serverless/goblin-inference"]["where"] == "serverless"


def test_health_needs_a_gateway_and_a_port_of_its_own():
    r = stack_estate("prod")
    r["health"] = {"port": 8000}
    with pytest.raises(ConfigError, match=r"gpu-estate:health.port: LiteLLM listens on 8000"):
        parse_spec(r)
    r["health"] = {"port": 4100}
    r["nodes"]["vps"]["workloads"]["status-page"] = {"image": "example/page:1", "port": 4100}
    with pytest.raises(ConfigError, match=r"gpu-estate:health.port: status-page already listens on 4100 on the gateway host 'vps'"):
        parse_spec(r)
    r = stack_estate("prod")
    r["health"] = {"alert_format": "teams"}
    with pytest.raises(ConfigError, match=r"gpu-estate:health.alert_format"):
        parse_spec(r)


# -- the state machine ----------------------------------------------------------------------------------------

def run(states, oks, down_after=3, check="service/a/ollama", start=1000.0):
    state, alerts = states, []
    for i, ok in enumerate(oks):
        state, due = advance(state, [Result(check, ok, 5.0, "seen" if ok else "refused")], start + 60 * i, down_after)
        alerts += due
    return state, alerts


def test_down_after_n_failures_in_a_row_and_one_up_on_recovery():
    state, alerts = run(None, [True, False, False])
    assert alerts == [] and state["checks"]["service/a/ollama"]["fails"] == 2
    state, alerts = run(state, [False, False, False, True, True], start=2000.0)
    assert [(a.state, a.at) for a in alerts] == [(DOWN, 2000.0), (UP, 2180.0)]
    assert alerts[0].failures == 3 and alerts[1].since == 2000.0
    assert state["checks"]["service/a/ollama"]["state"] == UP and state["checks"]["service/a/ollama"]["since"] == 2180.0


def test_a_flapping_check_makes_no_storm():
    _, alerts = run(None, [True, False, True, False, False, True, False, True] * 5)
    assert alerts == []
    # Down once: it is reported up at its first success, and down again only after N more failures.
    _, alerts = run(None, [False] * 3 + [True, False, True, False, False, True] * 4)
    assert [a.state for a in alerts] == [DOWN, UP]


def test_a_stopped_node_is_neither_down_nor_alerted():
    state, alerts = run(None, [False, False])
    state, alerts = advance(state, [Result("service/a/ollama", None, detail="not checked: stopped")], 5000.0, 3)
    assert alerts == [] and state["checks"]["service/a/ollama"]["state"] == health.STOPPED
    state, alerts = run(state, [False, False], start=6000.0)
    assert alerts == []  # the failures before the stop do not count


# -- the alerts' shapes ---------------------------------------------------------------------------------------

ALERT = health.Alert("tunnel/qwen/11434", DOWN, 1767225600.0, "ConnectionRefusedError: [Errno 111] Connection refused", 3)


def test_each_format_has_its_services_shape():
    slack = health.alert_post("slack", "gpu-estate-prod", ALERT)
    assert slack.json["text"].startswith("gpu-estate-prod: tunnel/qwen/11434 is DOWN after 3 failed checks")
    assert slack.json["estate"]["kind"] == "health-down"
    discord = health.alert_post("discord", "gpu-estate-prod", ALERT)
    assert set(discord.json) == {"content", "username"} and "DOWN" in discord.json["content"]
    ntfy = health.alert_post("ntfy", "gpu-estate-prod", ALERT)
    assert ntfy.json is None and "DOWN" in ntfy.text
    assert ntfy.headers == {"Title": "gpu-estate-prod: tunnel/qwen/11434 down", "Priority": "high", "Tags": "rotating_light"}
    plain = health.alert_post("json", "gpu-estate-prod", ALERT)
    assert plain.json["state"] == "down" and plain.json["check"] == "tunnel/qwen/11434" and plain.json["failures"] == 3
    up = health.alert_post("ntfy", "s", health.Alert("gateway", UP, 1767225900.0, "ok", 4, since=1767225600.0))
    assert "UP again after 300 s down" in up.text and up.headers["Priority"] == "default"
    with pytest.raises(ValueError, match="unknown alert format 'teams'"):
        health.alert_post("teams", "s", ALERT)


# -- status and savings ---------------------------------------------------------------------------------------

NOW = 1767225600.0 + 9 * 86400  # 2026-01-10 00:00 UTC


def usage(alias, id_, tin, tout, images=0, cost=0.0):
    return {"at": NOW, "month": "2026-01", "alias": alias, "id": id_, "input_tokens": tin, "output_tokens": tout,
            "images": images, "cost_usd": cost}


def test_status_routes_an_alias_to_its_live_nodes_else_its_first_answering_fallback(document):
    results = [Result(c["id"], True, 3.0, "ok") for c in document["checks"]]
    state, _ = advance(None, results, NOW, 3)
    doc = status.status_document(document, state, NOW)
    assert doc["aliases"]["gpt-3.5-turbo"]["routes_now"] == ["qwen", "burst"]
    assert doc["aliases"]["burst"]["routes_now"] == ["serverless/goblin-inference"]
    down = [Result("service/qwen/ollama", False, None, "refused")] * 3
    for i, r in enumerate(down):
        state, _ = advance(state, [r], NOW + i, 3)
    state["checks"] = {**state["checks"], **{k: v for k, v in advance(None, results, NOW, 3)[0]["checks"].items()
                                               if k not in state["checks"]}}
    doc = status.status_document(document, state, NOW)
    assert doc["aliases"]["gpt-4"]["routes_now"] == ["external/openai-gpt-4o"]
    assert doc["aliases"]["gpt-4-turbo"]["routes_now"] == ["external/openai-gpt-4o"]  # gpt-4's fallback first: gpt-4 is on qwen
    assert doc["aliases"]["gpt-3.5-turbo"]["routes_now"] == ["burst"]
    assert {n["node"]: n["state"] for n in doc["nodes"]}["qwen"] == "degraded"


def test_savings_price_the_estates_tokens_at_the_first_external_fallback(document):
    lines = [usage("gpt-4", "gpt-4@qwen", 1_000_000, 500_000), usage("gpt-4", "gpt-4@qwen", 0, 500_000),
             usage("gpt-4", "openai-gpt-4o@openai", 100_000, 100_000),
             usage("gpt-3.5-turbo", "gpt-3.5-turbo@burst", 2_000_000, 1_000_000),
             usage("coder", "coder@inference", 10, 10),
             usage("burst", "burst@serverless/goblin-inference", 1000, 1000, cost=0.25),
             {**usage("gpt-4", "gpt-4@qwen", 9_999_999, 9_999_999), "month": "2025-12"}]  # another month
    report = savings.month_report(lines, document, "2026-01", nodes_usd=100.0, nodes_basis="test")
    gpt4 = report["aliases"]["gpt-4"]
    assert gpt4["estate"] == {"requests": 2, "input_tokens": 1_000_000, "output_tokens": 1_000_000, "images": 0}
    assert gpt4["external"]["requests"] == 1 and gpt4["priced_at"] == "openai/gpt-4o"
    assert gpt4["external_equivalent_usd"] == pytest.approx(2.50 + 10.00)
    assert report["aliases"]["gpt-3.5-turbo"]["priced_at"] == "openai/gpt-4o-mini"  # through gpt-3.5-turbo-fast
    assert report["aliases"]["gpt-3.5-turbo"]["external_equivalent_usd"] == pytest.approx(2 * 0.15 + 0.60)
    assert "no external model" in report["aliases"]["coder"]["unpriced"]
    t = report["totals"]
    assert t["external_usd"] == pytest.approx(0.1 * 2.5 + 0.1 * 10)
    assert t["serverless_usd"] == pytest.approx(0.25)
    assert t["saving_usd"] == pytest.approx(t["external_equivalent_usd"] - 100.0 - 0.25)
    assert "requests served by the estate" in savings.savings_line(report)


def test_metrics_are_prometheus_text_with_every_family_declared(document):
    state, _ = advance(None, [Result(c["id"], True, 12.0, "ok") for c in document["checks"]], NOW, 3)
    text = status.metrics_text(status.status_document(document, state, NOW, usage=[usage("gpt-4", "gpt-4@qwen", 7, 3)]))
    assert 'estate_check_up{check="service/qwen/ollama",what="service",node="qwen"} 1.0' in text
    assert 'estate_check_latency_seconds{check="gateway",what="gateway",node="vps"} 0.012' in text
    assert 'estate_alias_month_tokens{alias="gpt-4",served_by="estate",direction="output"} 3.0' in text
    for name in status.METRICS:
        assert f"# TYPE {name} gauge" in text
    page = status.status_html(status.status_document({**document, "stack": "<script>x</script>"}, state, NOW))
    assert "<script>x" not in page and "&lt;script&gt;" in page


def test_the_grafana_dashboard_reads_only_the_agents_metrics():
    import re

    from core.config import PROJECT_ROOT

    dash = json.loads((PROJECT_ROOT / "assets" / "grafana" / "estate.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    named = {m for e in exprs for m in re.findall(r"\bestate_[a-z_]+", e)}
    assert named and named <= set(status.METRICS), named - set(status.METRICS)
    assert {p["datasource"]["uid"] for p in dash["panels"]} == {"${datasource}"}


def test_a_hosted_service_is_the_estates_own_traffic_not_an_external_api(document):
    deps = document["deployments"]
    assert deps["chat-fallback@fly/chat-fallback"]["where"] == "service"
    assert deps["gcp-llama@cloudrun/llama-l4"]["where"] == "service"
    assert deps["gcp-llama@cloudrun/llama-l4"]["name"] == "llama-l4"
    lines = [usage("chat-fallback", "chat-fallback@fly/chat-fallback", 1000, 1000),
             usage("gcp-llama", "gcp-llama@cloudrun/llama-l4", 1000, 1000)]
    report = savings.month_report(lines, document, "2026-01", nodes_usd=0.0, nodes_basis="test")
    for alias in ("chat-fallback", "gcp-llama"):
        assert report["aliases"][alias]["estate"]["requests"] == 1
        assert report["aliases"][alias]["external"]["requests"] == 0
    assert report["totals"]["external_usd"] == 0.0
    assert "0 requests went to external fallbacks" in savings.savings_line(report)
    doc = status.status_document(document, {"checks": {}}, NOW)
    assert doc["aliases"]["chat-fallback"]["routes_now"] == ["service/chat-fallback"]
