"""The health agent through the real engine on the sandbox stack: `up` with ``gpu-estate:health`` starts it
beside the local gateway; a node's Ollama stopped -> the loopback webhook receives "down" within the
window, and "up" once it answers again; the status document shows it, the status view answers only with
the gateway's master key, and requests through the real gateway show up in its savings report.

The checks run every second here (``ESTATE_HEALTH_EVERY_SECONDS``, the documented knob), so the window is a
few seconds. Skipped where the Pulumi CLI built by scripts/build-pulumi.sh is absent.
"""
import json
import time

import pytest
import requests
from pulumi import automation as auto

import sandbox
from core import health
from loopback.ollama import FakeOllama
from loopback.webhook import FakeWebhook
from tests.conftest import vm_node_or_skip

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(bool(sandbox.engine_missing()), reason=sandbox.engine_missing()),
]

WINDOW = 30.0
"""Seconds a down or up may take to reach the webhook: two failed rounds a second apart, and the engine's
machine shared with other tests."""


def until(what, read, seconds=WINDOW, seen=lambda: ""):
    deadline = time.monotonic() + seconds
    while True:
        got = read()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come within {seconds:g} s; {seen()}")
        time.sleep(0.3)


def test_a_stopped_service_alerts_down_then_up_and_the_status_view_shows_it(tmp_path_factory):
    work = sandbox.project_copy(tmp_path_factory.mktemp("project"))
    hook = FakeWebhook()
    with sandbox.fake_clouds() as fakes:
        env = {**sandbox.engine_env(fakes, tmp_path_factory.mktemp("engine")), health.EVERY_ENV: "1"}
        st = sandbox.stack(env, work_dir=work)
        try:
            st.set_config("gpu-estate:health", sandbox.auto_config({"down_after": 2, "alert_format": "json"}))
            st.set_config("gpu-estate:spendWebhook", auto.ConfigValue(hook.url, secret=True))
            outputs = st.up().outputs
            key = outputs["gateway_master_key"].value
            url, view = outputs["gateway"].value["url"], outputs["gateway"].value["status_url"]
            state = work / ".estate" / "sandbox" / "gateway" / "health" / health.STATUS_FILE
            doc = until("the first status document", lambda: json.loads(state.read_text()) if state.exists() else None)
            assert {s["id"]: s["state"] for s in doc["services"]}["service/qwen/ollama"] == "up"

            # Two requests through the real gateway: its usage callback counts them for the savings report.
            for _ in range(2):
                chat = requests.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=120,
                                     json={"model": "big", "messages": [{"role": "user", "content": "hi"}]})
                assert chat.status_code == 200, chat.text
            saved = until("the requests in the savings report", lambda: (lambda a: a if a and a["estate"]["requests"] == 2 else None)(
                (json.loads(state.read_text())["savings"]["aliases"]).get("big")))
            assert saved["estate"]["output_tokens"] == 12 and saved["external"]["requests"] == 0
            assert requests.get(f"{view}/status.json", timeout=10).status_code == 401
            seen = requests.get(f"{view}/status.json", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
            assert seen["stack"] and "big" in seen["aliases"]

            # The vastai node's Ollama stops: its service is down after two failed rounds, once.
            qwen = fakes["ollama"]["vastai"]
            port = qwen.httpd.server_address[1]
            qwen.kill()
            until("down", lambda: [p for p in hook.posts if p.get("check") == "service/qwen/ollama" and p["state"] == "down"])
            doc = until("the status document showing it", lambda: (lambda d: d if {s["id"]: s["state"] for s in d["services"]}[
                "service/qwen/ollama"] == "down" else None)(json.loads(state.read_text())))
            assert doc["aliases"]["big"]["routes_now"] == ["inference"]  # its fallback 'chat', on the node still up
            back = FakeOllama(name="vastai-ollama", port=port)
            try:
                for tag in ("qwen3:14b", "qwen3:8b"):
                    back.install(tag)
                until("up", lambda: [p for p in hook.posts if p.get("check") == "service/qwen/ollama" and p["state"] == "up"])
                time.sleep(3)  # three more rounds: no other alert for it
                assert [p["state"] for p in hook.posts if p.get("check") == "service/qwen/ollama"] == ["down", "up"]
            finally:
                back.close()
            assert hook.url not in json.dumps(hook.posts) and key not in json.dumps(hook.posts)
        finally:
            st.destroy()
            hook.close()


def tunnel_pid(st, node: str) -> int:
    resources = st.export_stack().deployment["resources"]
    (pid,) = [r["outputs"]["pid"] for r in resources
              if r["type"] == "pulumi-python:dynamic/gateway:LocalTunnel" and r["outputs"].get("node") == node]
    return int(pid)


def states(hook, check):
    """The states posted for ``check`` in Slack's shape (the event under ``estate``)."""
    return [p["estate"]["state"] for p in hook.posts if p["estate"]["check"] == check]


def test_with_the_vm_node_a_stopped_container_and_a_killed_tunnel_alert_down_and_up(tmp_path_factory):
    """The `vm` node: the real Ollama in Docker behind the local gateway's SSH forward. Its container stopped
    -> its service is down (the forward still listens), started -> up; the forward killed -> the tunnel and
    the service behind it are down, and the next `up`, which starts the forward again in place, brings both
    up."""
    import os
    import signal
    import subprocess

    vm_node_or_skip()
    work = sandbox.project_copy(tmp_path_factory.mktemp("project"), vm=True)
    hook = FakeWebhook()
    service, tunnel = "service/vm/ollama", "tunnel/vm/21434"
    with sandbox.fake_clouds(vm=True) as fakes, sandbox.ssh_agent(fakes["machine"].sshd.private_key) as agent:
        env = {**sandbox.engine_env(fakes, tmp_path_factory.mktemp("engine"), agent), health.EVERY_ENV: "1"}
        st = sandbox.stack(env, work_dir=work)
        try:
            st.set_config("gpu-estate:health", sandbox.auto_config({"down_after": 2, "alert_format": "slack"}))
            st.set_config("gpu-estate:spendWebhook", auto.ConfigValue(hook.url, secret=True))
            st.up()
            state = work / ".estate" / "sandbox" / "gateway" / "health" / health.STATUS_FILE
            until("the vm node's checks up", lambda: state.exists() and (lambda s: s[service] == s[tunnel] == "up")(
                {s["id"]: s["state"] for s in json.loads(state.read_text())["services"]}), seconds=120)

            def seen():
                services = json.loads(state.read_text())["services"] if state.exists() else []
                return f"posts {hook.posts}; checks {[(x['id'], x['state'], x['detail']) for x in services]}"

            container = fakes["machine"].containers()["ollama"]["id"]
            subprocess.run(["docker", "stop", container], check=True, capture_output=True, timeout=120)
            until("the stopped container's down", lambda: states(hook, service) == ["down"], seen=seen)
            assert states(hook, tunnel) == []  # the forward still listens
            subprocess.run(["docker", "start", container], check=True, capture_output=True, timeout=120)
            until("its recovery", lambda: states(hook, service) == ["down", "up"], seconds=90, seen=seen)

            os.killpg(tunnel_pid(st, "vm"), signal.SIGKILL)
            until("the killed tunnel's down", lambda: states(hook, tunnel) == ["down"], seen=seen)
            until("the service behind it down", lambda: states(hook, service) == ["down", "up", "down"], seen=seen)
            st.up()  # the forward is started again in place
            until("the tunnel up again", lambda: states(hook, tunnel) == ["down", "up"], seconds=60, seen=seen)
            until("the service up again", lambda: states(hook, service) == ["down", "up", "down", "up"], seconds=60, seen=seen)
            assert all(p["text"].startswith("gpu-estate-sandbox: ") for p in hook.posts)  # slack's shape
            assert hook.url not in json.dumps(hook.posts)
        finally:
            st.destroy()
            hook.close()
