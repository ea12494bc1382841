"""The edge in front of the gateway, tested with the real Caddy (rendered by components/edge.py) in front
of the real LiteLLM proxy on 127.0.0.1: only inference routes pass, the gateway sees its own address as Host
whatever the client sends, and the key still works."""
import re
import shutil
import socket
import subprocess
import time

import pytest
import requests

from components import edge
from providers.local_gateway import LocalGatewayProvider, litellm_binary
from tests.contract.test_gateway import litellm_proxy, proxy_spec  # noqa: F401  (the fixture starting the real proxy)
from core.topology import plan_estate

CADDY = shutil.which("caddy") or "/usr/bin/caddy"
HOST = "gw.example.test"
ADMIN_PATHS = ["/key/generate", "/key/list", "/user/new", "/user/info", "/team/new", "/spend/logs", "/ui",
               "/ui/", "/mcp", "/mcp/", "/mcp-rest/tools/list", "/config/update", "/config/yaml", "/model/new",
               "/model/info", "/global/spend", "/organization/new", "/health", "/routes", "/v1/../key/generate",
               "/%6Bey/generate", "/v1/models/../../key/generate", "/sso/key/generate", "/budget/new",
               "/customer/new", "/credentials", "/guardrails/list", "/cache/ping", "/debug/asyncio-tasks"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def caddy_front(litellm_proxy, tmp_path_factory):  # noqa: F811
    if not shutil.which(CADDY) and not __import__("os").path.exists(CADDY):
        pytest.skip("no caddy")
    d = tmp_path_factory.mktemp("caddy")
    password = "estate-test"
    hashed = subprocess.run([CADDY, "hash-password", "--plaintext", password], capture_output=True, text=True,
                            check=True).stdout.strip()
    upstream = litellm_proxy["url"].removeprefix("http://")
    site = {"host": HOST, "user": edge.BASIC_AUTH_USER, "hash": hashed, "matcher": "", "upstream": upstream,
            "inference_only": True}
    from core.templates import render
    text = render("gateway/Caddyfile.j2", sites=[site], email="admin@example.test",
                  inference_paths=edge.INFERENCE_PATHS)
    port = free_port()
    # On loopback, plain HTTP: the site as rendered, on a port of this test, no certificates, no admin API.
    text = text.replace("{\n\temail", "{\n\tauto_https off\n\tadmin off\n\temail", 1)
    text = text.replace(f"\n{HOST} {{", f"\nhttp://{HOST}:{port} {{", 1)
    (d / "Caddyfile").write_text(text)
    run = subprocess.run([CADDY, "validate", "--config", str(d / "Caddyfile"), "--adapter", "caddyfile"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr + text
    proc = subprocess.Popen([CADDY, "run", "--config", str(d / "Caddyfile"), "--adapter", "caddyfile"],
                            stdout=open(d / "caddy.log", "w"), stderr=subprocess.STDOUT, cwd=d)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(url, timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.1)
    yield {"url": url, "auth": (edge.BASIC_AUTH_USER, password), "key": litellm_proxy["key"], "proxy": litellm_proxy,
           "log": d / "caddy.log"}
    proc.terminate()
    proc.wait(timeout=10)


def through(front, path, method="GET", host=HOST, key=True, **kw):
    headers = {"Host": host, **kw.pop("headers", {})}
    if key:
        headers["x-litellm-api-key"] = f"Bearer {front['key']}"
    return requests.request(method, front["url"] + path, headers=headers, auth=front["auth"], timeout=60,
                            allow_redirects=False, **kw)


def test_an_inference_request_with_the_key_passes(caddy_front):
    resp = through(caddy_front, "/v1/models")
    assert resp.status_code == 200, resp.text
    assert sorted(m["id"] for m in resp.json()["data"]) == ["backup", "burst", "coder", "fast", "gpt-4"]
    chat = through(caddy_front, "/v1/chat/completions", method="POST",
                   json={"model": "gpt-4", "messages": [{"role": "user", "content": "hello"}]})
    assert chat.status_code == 200, chat.text


def test_without_the_key_or_the_password_nothing_passes(caddy_front):
    refused = through(caddy_front, "/v1/models", key=False)  # basic auth passes; LiteLLM refuses the missing key
    assert refused.status_code in (400, 401, 403) and "data" not in refused.json()
    no_password = requests.get(caddy_front["url"] + "/v1/models", headers={"Host": HOST}, timeout=30)
    assert no_password.status_code == 401


@pytest.mark.parametrize("path", ADMIN_PATHS)
def test_an_admin_route_from_outside_is_not_reached_even_with_the_key(caddy_front, path):
    for method in ("GET", "POST"):
        resp = through(caddy_front, path, method=method, json={})
        assert resp.status_code == 404, (path, method, resp.status_code, resp.text[:200])


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.1:4000", "evil.example", f"{HOST}.evil.example"])
def test_a_hostile_host_header_reaches_nothing(caddy_front, host):
    for path in ("/key/generate", "/v1/models"):
        resp = through(caddy_front, path, method="POST" if path.startswith("/key") else "GET", host=host, json={})
        assert resp.status_code != 200 or not resp.content, (host, path, resp.status_code, resp.text[:200])
        assert "sk-" not in resp.text


def test_the_gateway_sees_its_own_address_as_host_not_the_clients(caddy_front):
    """The proxy in front sets the Host the gateway sees: a forwarded-host trick reaches nothing either."""
    resp = through(caddy_front, "/key/generate", method="POST", json={},
                   headers={"X-Forwarded-Host": "localhost", "X-Forwarded-For": "127.0.0.1"})
    assert resp.status_code == 404
    assert "header_up Host {upstream_hostport}" in open(edge.__file__.replace("components/edge.py",
                                                                              "assets/gateway/Caddyfile.j2")).read()


def test_every_admin_route_litellm_lists_is_outside_the_inference_paths():
    """Against the installed LiteLLM's own route table: nothing but inference and liveness matches."""
    python = litellm_binary().parent / "python"
    if not python.exists():
        pytest.skip(f"no LiteLLM at {litellm_binary()}")
    run = subprocess.run([str(python), "-c", "from litellm.proxy._types import LiteLLMRoutes as R\n"
                          "import json; print(json.dumps({k: list(getattr(R, k).value) for k in "
                          "('management_routes', 'spend_tracking_routes', 'info_routes', 'master_key_only_routes', "
                          "'sso_only_routes', 'admin_viewer_routes') if hasattr(R, k)}))"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    import json
    routes = {r for group in json.loads(run.stdout).values() for r in group}
    assert len(routes) > 50
    allowed = re.compile(edge.INFERENCE_PATHS)
    passing = sorted(r for r in routes if allowed.search(r))
    assert passing == ["/models", "/v1/models"], passing  # listed among its info routes: what a client lists
