"""The health agent: its probes against loopback servers, its rounds posting down and up to a loopback webhook
(no storm, no lost alert, no secret), and its status view behind the gateway's master key."""
import json
import socket
import struct
import threading

import pytest
import requests

from agents import health as agent
from core import health
from loopback.base import FakeServer
from loopback.ollama import FakeOllama
from loopback.openai_server import FakeModelServer
from loopback.webhook import FakeWebhook


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webhook():
    hook = FakeWebhook()
    yield hook
    hook.close()


# -- probes ----------------------------------------------------------------------------------------------------

def test_ollama_lists_its_models_and_each_loaded_alias_model_answers_one_token(ollama):
    ollama.install("qwen3:8b")
    ollama.install("qwen3:14b")
    spec = {"type": "ollama", "path": "/api/tags", "models": ["qwen3:8b", "qwen3:14b"], "generate": ["qwen3:8b", "qwen3:14b"],
            "loaded_only": True}
    assert agent.probe(ollama.url, spec, 5) == "lists 2 models"  # none loaded: none loaded for the probe
    assert ollama.chats == []
    ollama.loaded.append("qwen3:8b")
    assert agent.probe(ollama.url, spec, 5) == "lists 2 models, qwen3:8b answered a one-token generation"
    assert ollama.chats == ["qwen3:8b"]
    assert agent.probe(ollama.url, spec, 5, quiet=True) == "lists 2 models"  # an idle node: no generation
    assert ollama.chats == ["qwen3:8b"]
    with pytest.raises(agent.ProbeFailed, match="/api/tags does not list llama3.2:3b"):
        agent.probe(ollama.url, {**spec, "models": ["llama3.2:3b"]}, 5)


def test_a_loaded_model_that_cannot_answer_fails_the_probe(ollama):
    ollama.install("qwen3:8b")
    ollama.loaded.append("qwen3:8b")
    orig = ollama.route
    ollama.route = lambda m, p, q, b: (500, {"error": "CUDA error: out of memory"}) if p == "/api/generate" else orig(m, p, q, b)
    with pytest.raises(agent.ProbeFailed, match="qwen3:8b did not answer a one-token generation .HTTP 500."):
        agent.probe(ollama.url, {"type": "ollama", "models": ["qwen3:8b"], "generate": ["qwen3:8b"], "loaded_only": True}, 5)


def test_an_openai_server_answers_its_health_route_and_lists_its_model():
    server = FakeModelServer("Qwen/Qwen2.5-Coder-7B-Instruct")
    try:
        spec = {"type": "openai", "path": "/health", "models": ["Qwen/Qwen2.5-Coder-7B-Instruct"]}
        assert agent.probe(server.url, spec, 5) == "serves Qwen/Qwen2.5-Coder-7B-Instruct"
        with pytest.raises(agent.ProbeFailed, match="/v1/models does not list other"):
            agent.probe(server.url, {**spec, "models": ["other"]}, 5)
        with pytest.raises(agent.ProbeFailed, match=r"GET /ready answered HTTP 404"):
            agent.probe(server.url, {"type": "http", "path": "/ready"}, 5)
    finally:
        server.close()


def test_tcp_refused_is_a_failure():
    port = free_port()
    with pytest.raises(OSError):
        agent.probe(f"http://127.0.0.1:{port}", {"type": "tcp"}, 2)


class PostgresFirstExchange:
    """The first exchange of PostgreSQL's protocol 3.0 as the server speaks it (the manual's "Message Flow":
    an SSLRequest, code 80877103, is answered with one byte, ``N`` without TLS; the StartupMessage, version
    196608, with an AuthenticationSASL ``R`` message, or an ErrorResponse ``E`` where pg_hba.conf rejects the
    connection). tests/contract/test_postgres_probe.py holds the probe to Debian's real PostgreSQL."""

    def __init__(self, role="estate"):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port, self.role, self.seen = self.sock.getsockname()[1], role, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                length, code = struct.unpack("!II", conn.recv(8))
                assert (length, code) == (8, 80877103)
                conn.sendall(b"N")
                length, version = struct.unpack("!II", conn.recv(8))
                params = conn.recv(length - 8).split(b"\x00")
                self.seen.append((version, params[:4]))
                if params[1].decode() == self.role:
                    body = struct.pack("!I", 10) + b"SCRAM-SHA-256\x00\x00"
                    conn.sendall(b"R" + struct.pack("!I", 4 + len(body)) + body)
                else:
                    msg = (b"SFATAL\x00C28000\x00Mpg_hba.conf rejects connection for host \"127.0.0.1\", user \""
                           + params[1] + b"\", database \"vectors\", no encryption\x00\x00")
                    conn.sendall(b"E" + struct.pack("!I", 4 + len(msg)) + msg)

    def close(self):
        self.sock.close()


def test_postgres_is_asked_for_the_estates_database_without_a_driver():
    pg = PostgresFirstExchange()
    try:
        spec = {"type": "postgres", "user": "estate", "database": "vectors"}
        assert agent.probe(f"http://127.0.0.1:{pg.port}", spec, 5) == "asks for authentication"
        assert pg.seen == [(196608, [b"user", b"estate", b"database", b"vectors"])]
        with pytest.raises(agent.ProbeFailed, match='pg_hba.conf rejects connection for host "127.0.0.1", user "nobody"'):
            agent.probe(f"http://127.0.0.1:{pg.port}", {**spec, "user": "nobody"}, 5)
    finally:
        pg.close()


# -- rounds, alerts, state --------------------------------------------------------------------------------------

SECRETS = {"LITELLM_MASTER_KEY": "sk-planted-master-key-0123456789", "OPENAI_API_KEY": "sk-proj-planted-openai-key",
           "RUNPOD_API_KEY": "rpa_PLANTEDRUNPODKEY", "VASTAI_API_KEY": "planted-vast-key-abcdef"}


def document(ollama_url, tunnel_port, fmt="json", power="running", down_after=2):
    return {"stack": "gpu-estate-test", "down_after": down_after, "timeout_seconds": 3, "format": fmt, "budget_usd": 100,
            "checks": [{"id": "service/gpu/ollama", "what": "service", "node": "gpu", "url": ollama_url,
                        "models": ["qwen3:8b"], "probe": {"type": "ollama", "models": ["qwen3:8b"], "generate": ["qwen3:8b"],
                                                          "loaded_only": True}},
                       {"id": "tunnel/gpu/11434", "what": "tunnel", "node": "gpu", "url": f"http://127.0.0.1:{tunnel_port}",
                        "probe": {"type": "tcp"}}],
            "nodes": [{"node": "gpu", "provider": "vastai", "power": power, "instance": "vastai:77", "hourly_usd": 0.3,
                       "models": ["qwen3:8b"]}],
            "aliases": {"fast": {"model": "qwen3:8b", "fallbacks": ["openai-mini"], "nodes": ["gpu"], "serverless": []}},
            "external": {"openai-mini": "openai/gpt-4o-mini"}, "deployments": {}, "prices": {}}


class Listener:
    """A port that accepts connections, as an SSH forward's local end does while its tunnel runs."""

    def __init__(self, port=0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


def test_a_dead_service_and_tunnel_alert_down_once_and_up_once_with_no_secret(tmp_path, webhook, monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    secret_hook = webhook.url + "?token=planted-webhook-token"  # a webhook's URL is itself a secret
    ollama = FakeOllama()
    ollama.install("qwen3:8b")
    tunnel = Listener()
    port = ollama.httpd.server_address[1]
    doc = document(ollama.url, tunnel.port)
    said = []
    a = agent.Agent(doc, tmp_path, webhook=secret_hook, say=said.append, ledger=tmp_path / "none.json")
    hits = []
    post = agent.post_alert
    a._post = lambda url, p: (hits.append(url), post(webhook.url, p))[1]
    a.run_once()
    assert webhook.posts == []
    ollama.close()
    tunnel.close()
    a.run_once()
    assert webhook.posts == []  # one failure of two
    a.run_once()
    assert sorted((p["check"], p["state"]) for p in webhook.posts) == [("service/gpu/ollama", "down"), ("tunnel/gpu/11434", "down")]
    a.run_once()
    assert len(webhook.posts) == 2  # still down: nothing more
    status = json.loads((tmp_path / health.STATUS_FILE).read_text())
    assert {s["id"]: s["state"] for s in status["services"]} == {"service/gpu/ollama": "down", "tunnel/gpu/11434": "down"}
    assert status["aliases"]["fast"]["routes_now"] == ["external/openai-mini"]
    back = FakeOllama(port=port)
    back.install("qwen3:8b")
    tunnel = Listener(tunnel.port)
    try:
        a.run_once()
        assert sorted((p["check"], p["state"]) for p in webhook.posts[2:]) == [("service/gpu/ollama", "up"), ("tunnel/gpu/11434", "up")]
        a.run_once()
        assert len(webhook.posts) == 4
    finally:
        back.close()
        tunnel.close()
    sent = json.dumps(webhook.posts) + "\n".join(said)
    for value in [*SECRETS.values(), "planted-webhook-token"]:
        assert value not in sent
    assert hits and all(h == secret_hook for h in hits)


def test_an_alert_the_webhook_refuses_is_posted_next_round_once(tmp_path, webhook):
    tunnel_port = free_port()
    a = agent.Agent({**document("http://127.0.0.1:1", tunnel_port, down_after=1), "checks": document("x", tunnel_port)["checks"][1:]},
                    tmp_path, webhook=webhook.url, say=lambda _: None, ledger=tmp_path / "none.json")
    webhook.failing = True
    a.run_once()
    assert webhook.posts == [] and json.loads(a.state_path.read_text())["pending"]
    webhook.failing = False
    a.run_once()
    a.run_once()
    assert [p["state"] for p in webhook.posts] == ["down"]


def test_a_node_its_idle_watcher_stopped_is_not_down(tmp_path, webhook):
    looks = []
    a = agent.Agent(document("http://127.0.0.1:1", free_port(), power="idle", down_after=1), tmp_path, webhook=webhook.url,
                    look=lambda instance: looks.append(instance) or False, say=lambda _: None, ledger=tmp_path / "none.json")
    for _ in range(3):
        doc = a.run_once()
    assert looks == ["vastai:77"] * 3 and webhook.posts == []
    assert {s["state"] for s in doc["services"]} == {"stopped"} and doc["nodes"][0]["state"] == "stopped"
    # Its vendor says it runs: then it is probed, and down is down.
    a._look = lambda instance: True
    a.run_once()
    assert {p["state"] for p in webhook.posts} == {"down"}


@pytest.mark.parametrize("fmt", ["slack", "discord", "ntfy"])
def test_each_format_reaches_a_webhook_in_its_shape(tmp_path, fmt):
    got = []

    class Hook(FakeServer):
        def route(self, method, path, query, body):
            got.append(body)
            return 200, {}

    hook = Hook()
    try:
        a = agent.Agent({**document("http://127.0.0.1:1", free_port(), fmt=fmt, down_after=1), "checks": document("x", free_port())["checks"][1:]},
                        tmp_path, webhook=f"{hook.url}/hook", say=lambda _: None, ledger=tmp_path / "none.json")
        a.run_once()
    finally:
        hook.close()
    (body,) = got
    text = {"slack": lambda b: b["text"], "discord": lambda b: b["content"], "ntfy": lambda b: b}[fmt](body)
    assert "gpu-estate-test: tunnel/gpu/11434 is DOWN after 1 failed checks" in str(text)


def test_the_status_view_answers_only_with_the_master_key(tmp_path):
    a = agent.Agent(document("http://127.0.0.1:1", free_port()), tmp_path, webhook="", say=lambda _: None,
                    ledger=tmp_path / "none.json")
    a.run_once()
    httpd = agent.serve(a, 0, "sk-the-master-key")
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        assert requests.get(f"{url}/status.json", timeout=5).status_code == 401
        assert requests.get(f"{url}/metrics", headers={"Authorization": "Bearer sk-wrong"}, timeout=5).status_code == 401
        ok = requests.get(f"{url}/status.json", headers={"Authorization": "Bearer sk-the-master-key"}, timeout=5)
        assert ok.status_code == 200 and ok.json()["stack"] == "gpu-estate-test"
        behind_caddy = requests.get(f"{url}/metrics", headers={"x-litellm-api-key": "Bearer sk-the-master-key"}, timeout=5)
        assert 'estate_check_up{check="tunnel/gpu/11434",what="tunnel",node="gpu"} 0.0' in behind_caddy.text
        page = requests.get(f"{url}/status", headers={"Authorization": "Bearer sk-the-master-key"}, timeout=5)
        assert page.headers["Content-Type"].startswith("text/html") and "service/gpu/ollama" in page.text
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert not agent.authorized({"Authorization": "Bearer "}, "")  # no key configured: nobody passes


def test_the_agent_as_shipped_runs_on_the_gateway_python_alone(tmp_path, webhook, ollama):
    """The modules a gateway host gets under lib/, run in isolated mode by LiteLLM's Python (its packages, no
    project on the path), with the webhook from the environment as its unit gives: one round against a
    loopback Ollama and a dead tunnel, with the check document the program renders for a gateway host."""
    import subprocess

    from components import gateway
    from core.config import parse_spec
    from core.topology import plan_estate
    from providers.local_gateway import litellm_binary
    from tests.mocks import stack_estate, unpack_library

    if not litellm_binary().exists():
        pytest.skip(f"no LiteLLM at {litellm_binary()}: `make setup` installs it")
    r = stack_estate("prod")
    r["health"] = {"down_after": 1, "alert_format": "json"}
    plan = plan_estate(parse_spec(r))
    ollama.install("deepseek-coder-v2:16b")
    ollama.install("llama3.1:8b")
    ollama.install("mistral:7b")
    ollama.loaded.append("deepseek-coder-v2:16b")
    endpoints = {"inference": ("127.0.0.1", {"11434": ollama.httpd.server_address[1]})}
    checks = health.check_document(plan, "gpu-estate-prod", endpoints)
    checks["checks"] = [c for c in checks["checks"] if c["id"] in ("service/inference/ollama", "tunnel/qwen/11434")]
    checks["checks"][1]["url"] = f"http://127.0.0.1:{free_port()}"
    files = gateway.gateway_files(plan, "model_list: []\n", {}, library=True, checks=checks)
    doc = tmp_path / gateway.HEALTH_DOCUMENT
    doc.parent.mkdir(parents=True)
    doc.write_text(files[gateway.HEALTH_DOCUMENT])
    unpack_library(tmp_path / "lib")
    run = subprocess.run(
        [str(litellm_binary().parent / "python"), "-I", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); from agents.health import main; sys.exit(main(sys.argv[2:]))",
         str(tmp_path / "lib"), "--document", str(doc), "--state-dir", str(tmp_path / "state"), "--every", "0"],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "ESTATE_SPEND_WEBHOOK": webhook.url})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "health: service/inference/ollama: up" in run.stdout and "deepseek-coder-v2:16b answered" in run.stdout
    assert [(p["check"], p["state"]) for p in webhook.posts] == [("tunnel/qwen/11434", "down")]
    status = json.loads((tmp_path / "state" / health.STATUS_FILE).read_text())
    assert status["aliases"]["coder"]["routes_now"] == ["inference"]


def test_the_health_unit_passes_systemd_analyze_verify_and_litellm_loads_the_usage_callback(tmp_path):
    import shutil
    import subprocess

    from components import gateway
    from core.config import parse_spec
    from core.topology import plan_estate
    from tests.mocks import stack_estate

    if not shutil.which("systemd-analyze"):
        pytest.skip("no systemd-analyze: scripts/install-tools.sh installs systemd")
    r = stack_estate("prod")
    r["health"] = {"port": 4200}
    plan = plan_estate(parse_spec(r))
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\n")
    docker.chmod(0o755)
    units = gateway.gateway_units(plan, {}, docker=str(docker))
    unit = units[gateway.HEALTH_UNIT]
    assert "-m agents.health --document /app/health/checks.json --state-dir /var/lib/estate/health --serve 4200" in unit
    assert "-e ESTATE_SPEND_LEDGER=/var/lib/estate/spend/spend-ledger.json" in unit  # prod runs the spend watcher
    assert ("-v /etc/estate/gateway/health/estate_usage.py:/app/estate_usage.py:ro -v /var/lib/estate/health:/var/lib/estate/health "
            "-e ESTATE_USAGE_DIR=/var/lib/estate/health") in units["estate-litellm-blue.service"]
    assert gateway.litellm_config(plan)["litellm_settings"]["callbacks"] == ["estate_usage.handler", "prometheus"]
    for name in (gateway.HEALTH_UNIT, "estate-litellm-blue.service"):
        (tmp_path / name).write_text(units[name])
    run = subprocess.run(["systemd-analyze", "verify", str(tmp_path / gateway.HEALTH_UNIT), str(tmp_path / "estate-litellm-blue.service")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_the_edge_forwards_the_status_view_under_the_gateways_hostname(tmp_path):
    """Caddy (validated by the real caddy) and the Cloudflare connector forward /estate/status, .json and
    /metrics of the gateway's hostname to the agent, behind their own auth; the agent asks for the key."""
    import os
    import shutil
    import subprocess

    from components import edge
    from core.config import parse_spec
    from core.topology import plan_estate
    from tests.mocks import stack_estate

    r = stack_estate("prod")
    r["health"] = {"port": 4200}
    rules = edge.ingress_rules(plan_estate(parse_spec(r)), audiences={"myai.example.com": "aud-1"})
    status, gw = [x for x in rules if x.get("hostname") == "myai.example.com"]
    assert status["service"] == "http://127.0.0.1:4200" and status["path"] == edge.STATUS_PATHS
    assert status["origin_request"]["access"]["aud_tags"] == ["aud-1"] and gw["path"] == edge.INFERENCE_PATHS
    assert [x for x in edge.ingress_rules(plan_estate(parse_spec(stack_estate("prod")))) if x.get("path") == edge.STATUS_PATHS] == []
    r["edge"]["mode"] = "caddy"
    text = edge.render_caddyfile(plan_estate(parse_spec(r)), "$2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG")
    assert text.count("reverse_proxy 127.0.0.1:4200") == 1
    if shutil.which("caddy"):
        (tmp_path / "Caddyfile").write_text(text)
        run = subprocess.run(["caddy", "validate", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)})
        assert run.returncode == 0, run.stderr[-2000:]
    # The agent answers the paths the edge forwards as its own.
    a = agent.Agent(document("http://127.0.0.1:1", free_port()), tmp_path / "s", webhook="", say=lambda _: None,
                    ledger=tmp_path / "none.json")
    a.run_once()
    httpd = agent.serve(a, 0, "sk-k")
    try:
        got = requests.get(f"http://127.0.0.1:{httpd.server_address[1]}/estate/status.json",
                           headers={"x-litellm-api-key": "Bearer sk-k"}, timeout=5)
        assert got.status_code == 200 and got.json()["stack"] == "gpu-estate-test"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_failed_webhook_post_is_logged_without_the_webhook_path(tmp_path):
    """A Slack/Discord/ntfy webhook's path is its secret; a connection error's text names the whole URL."""
    secret = "/api/webhooks/1234/planted-webhook-path-secret"
    said = []
    a = agent.Agent(document("http://127.0.0.1:1", free_port(), down_after=1), tmp_path,
                    webhook=f"http://127.0.0.1:{free_port()}{secret}", say=said.append, ledger=tmp_path / "none.json")
    a.run_once()
    failed = [line for line in said if "webhook post failed" in line]
    assert failed and all("ConnectionError posting to 127.0.0.1" in line for line in failed)
    assert not any("planted" in line for line in said)
