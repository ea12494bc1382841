"""The loopback Fly Machines API held to Fly's own client: fly-go's ``flaps`` package (what flyctl speaks
through), built by scripts/build-fly-client.sh, drives one Machine's life against it; and the requests
the estate's provider sends are the shapes fly-go's own structs send for the same things."""
import json
import os
import subprocess
from pathlib import Path

import pytest

import sandbox
from loopback.fly import FakeFly
from providers.fly import FlyMachineProvider
from sandbox.real_ollama import CACHE

TOKEN = "fly-contract-token"


def fly_client() -> Path:
    marker = CACHE / "fly-client-bin"
    path = Path(marker.read_text().strip()) if marker.exists() else None
    if path is None or not path.exists():
        why = "fly-go's client is not built (make setup: scripts/build-fly-client.sh)"
        if sandbox.vm_required():
            pytest.fail(why)
        pytest.skip(why)
    return path


@pytest.fixture
def fly():
    server = FakeFly(token=TOKEN)
    yield server
    server.close()


def drive(fly: FakeFly, app: str = "goblin-chat"):
    run = subprocess.run([str(fly_client()), app, "personal", "iad"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "FLY_FLAPS_BASE_URL": fly.url, "FLY_API_TOKEN": TOKEN})
    steps = {s["step"]: s for s in map(json.loads, run.stdout.splitlines())}
    return run, steps


def test_fly_gos_client_runs_a_machines_life_on_the_loopback(fly):
    run, steps = drive(fly)
    assert run.returncode == 0, run.stderr
    failed = {k: s["error"] for k, s in steps.items() if not s["ok"]}
    assert not failed
    assert list(steps) == ["client", "create_app", "set_secret", "list_secrets", "create_volume", "launch", "get",
                           "list", "stop", "get_stopped", "destroy", "delete_volume", "volumes_after"]
    machine = steps["launch"]["result"]
    assert machine["name"] == "goblin-chat-llm" and machine["region"] == "iad" and machine["state"] == "started"
    assert machine["config"]["guest"] == {"cpu_kind": "shared", "cpus": 2, "memory_mb": 2048}
    assert steps["get"]["result"]["id"] == machine["id"]
    assert [m["id"] for m in steps["list"]["result"]] == [machine["id"]]
    assert steps["get_stopped"]["result"]["state"] == "stopped"
    assert steps["create_volume"]["result"]["size_gb"] == 1 and steps["volumes_after"]["result"] == []
    assert [s["name"] for s in steps["list_secrets"]["result"]] == ["LLAMA_API_KEY"]
    app = fly.apps["goblin-chat"]
    assert app["org"] == "personal" and app["secrets"] == {"LLAMA_API_KEY": "contract-bearer"}
    assert app["machines"][machine["id"]]["state"] == "destroyed"
    # fly-go signs every call with the token as Fly's API takes it.
    assert {h.get("authorization") for h in fly.headers} == {f"Bearer {TOKEN}"}


def test_the_loopback_refuses_what_fly_refuses(fly):
    fly.apps["goblin-chat"] = {"id": "app1", "name": "goblin-chat", "org": "someone-else", "secrets": {},
                               "volumes": {}, "machines": {}}
    run, steps = drive(fly)
    assert run.returncode == 1 and not steps["create_app"]["ok"]  # an app name is taken across Fly
    fly.token = "another"
    run, steps = drive(fly, app="other-app")
    assert not steps["create_app"]["ok"] and "authenticated" in steps["create_app"]["error"]
    assert "other-app" not in fly.apps


def shape(value):
    """The JSON shape of a value: dicts by key, lists by their first item, scalars by type."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def within(ours, theirs, path=""):
    """The paths of ``ours`` whose shape differs from fly-go's where fly-go sends the same key."""
    bad = []
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for k, v in ours.items():
            if k in theirs:
                bad += within(v, theirs[k], f"{path}.{k}")
    elif isinstance(ours, list) and isinstance(theirs, list) and ours and theirs:
        bad += within(ours[0], theirs[0], f"{path}[]")
    elif ours != theirs:
        bad.append(f"{path}: ours {ours}, fly-go's {theirs}")
    return bad


def test_the_providers_requests_are_shaped_as_fly_gos(fly, monkeypatch):
    run, _ = drive(fly)
    assert run.returncode == 0, run.stderr
    theirs = {(m, p.replace("goblin-chat", "APP")): b for m, p, b in fly.requests if isinstance(b, dict)}
    fly.requests.clear()
    monkeypatch.setenv("FLY_API_URL", f"{fly.url}/v1")
    monkeypatch.setenv("FLY_API_TOKEN", TOKEN)
    props = FlyMachineProvider().check({}, {
        "app": "goblin-two", "org": "personal", "region": "iad", "image": "ghcr.io/ggml-org/llama.cpp:server-b6870",
        "guest": {"cpu_kind": "shared", "cpus": 2, "memory_mb": 2048}, "volume_gb": 1, "port": 8080,
        "env": {"LLAMA_ARG_ALIAS": "tinyllama-1.1b-chat"}, "secret_name": "LLAMA_API_KEY",
        "stamps": {}}).inputs
    FlyMachineProvider().create(props)
    ours = {(m, p.replace("goblin-two", "APP")): b for m, p, b in fly.requests if isinstance(b, dict)}
    posts = {"/v1/apps", "/v1/apps/APP/secrets/LLAMA_API_KEY", "/v1/apps/APP/volumes", "/v1/apps/APP/machines"}
    for path in posts:
        assert ("POST", path) in ours and ("POST", path) in theirs, path
        assert set(ours[("POST", path)]) <= set(theirs[("POST", path)]) | {"encrypted"}, path
        assert within(shape(ours[("POST", path)]), shape(theirs[("POST", path)])) == [], path
    # The Machine's config: every key fly-go sends, ours sends the same way (fly-go writes autostop "off" as
    # false, and so do we).
    config = ours[("POST", "/v1/apps/APP/machines")]["config"]
    assert within(shape(config), shape(theirs[("POST", "/v1/apps/APP/machines")]["config"])) == []
    assert config["services"][0]["autostop"] is theirs[("POST", "/v1/apps/APP/machines")]["config"]["services"][0]["autostop"] is False
    assert config["restart"] == theirs[("POST", "/v1/apps/APP/machines")]["config"]["restart"] == {"policy": "always"}
