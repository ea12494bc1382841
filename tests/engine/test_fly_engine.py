"""The sandbox's Fly.io fallback through the real engine on the loopback Fly: `up` makes the app, its
secret, volume and always-on Machine and the local gateway answers the alias through the app's address
with the bearer the provider made; a Machine destroyed behind the state's back is seen by refresh and
launched again by `up`; a size edit updates in place while a region edit replaces; destroy leaves Fly
with nothing. Runs on a project copy whose sandbox stack is reduced to the gateway and the service."""
import json

import pytest
import requests
import yaml

import sandbox
from providers.fly import FlyApi

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(bool(sandbox.engine_missing()), reason=sandbox.engine_missing()),
]

APP = "goblin-chat-sandbox"
FLY = "pulumi-python:dynamic/fly:Machine"


def fly_only_stack(work) -> None:
    path = work / "Pulumi.sandbox.yaml"
    doc = yaml.safe_load(path.read_text())
    c = doc["config"]
    gateway = {**c["gpu-estate:gateway"], "aliases": {"fallback": "tinyllama-1.1b-chat"}, "fallbacks": {}}
    doc["config"] = {"gpu-estate:nodes": {"gw": c["gpu-estate:nodes"]["gw"]},
                     "gpu-estate:services": c["gpu-estate:services"], "gpu-estate:gateway": gateway,
                     "gpu-estate:budget": c["gpu-estate:budget"]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    work = sandbox.project_copy(tmp_path_factory.mktemp("project"))
    fly_only_stack(work)
    with sandbox.fake_clouds() as fakes:
        state_dir = tmp_path_factory.mktemp("engine")
        st = sandbox.stack(sandbox.engine_env(fakes, state_dir), work_dir=work)
        st.state_dir = state_dir
        try:
            yield st, fakes
        finally:
            st.destroy()


def ask(st, master_key):
    gateway = st.outputs()["gateway"].value
    return requests.post(f"{gateway['url']}/v1/chat/completions", timeout=60,
                         headers={"Authorization": f"Bearer {master_key}"},
                         json={"model": "fallback", "messages": [{"role": "user", "content": "hi"}]})


def test_the_fly_fallback_through_the_engine(estate):
    st, fakes = estate
    fly = fakes["fly"]
    up = st.up()
    assert up.summary.resource_changes.get("create", 0) >= 5  # stack, estate, gw node, gateway, its process, Fly
    (app,) = fly.apps.values()
    (machine,) = app["machines"].values()
    (volume,) = app["volumes"].values()
    assert app["name"] == APP and machine["state"] == "started" and volume["attached_machine_id"] == machine["id"]
    assert machine["config"]["restart"] == {"policy": "always"}
    assert machine["config"]["services"][0]["autostop"] is False
    assert up.outputs["services"].value == {"chat-fallback": fly.app_url(APP)}
    assert up.outputs["cost"].value["total_monthly_usd"] == pytest.approx(11.70)

    # The gateway reaches the app at its address, with the bearer the provider made and set as Fly's secret.
    master_key = up.outputs["gateway_master_key"].value
    answer = ask(st, master_key)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == f"fly app {APP} answers with tinyllama-1.1b-chat"
    bearer = app["secrets"]["LLAMA_API_KEY"]
    assert bearer not in json.dumps(machine) and bearer not in json.dumps(fly.requests[:1])
    # The state as the backend stores it (with its history and backups) holds the bearer only encrypted.
    stored = [p for p in st.state_dir.rglob("*") if p.is_file()]
    assert len(stored) > 2 and not [p for p in stored if bearer.encode() in p.read_bytes()]

    assert st.up().summary.resource_changes == {"same": sum(up.summary.resource_changes.values())}

    # Destroyed behind the state's back: refresh sees it, the next up launches it again on the same volume.
    with FlyApi({}) as api:
        api.destroy(APP, machine["id"])
    st.refresh()
    converge = st.up()
    assert converge.summary.resource_changes.get("update") == 1 and "create" not in converge.summary.resource_changes
    (relaunched,) = [m for m in app["machines"].values() if m["state"] != "destroyed"]
    assert relaunched["id"] != machine["id"] and relaunched["config"]["mounts"][0]["volume"] == volume["id"]
    assert ask(st, master_key).status_code == 200

    # More memory updates the Machine in place; a new region would replace the app, and the preview says so.
    services = json.loads(st.get_config("gpu-estate:services").value)
    services["chat-fallback"]["memory_mb"] = 4096
    st.set_config("gpu-estate:services", sandbox.auto_config(services))
    grown = st.up()
    assert grown.summary.resource_changes.get("update", 0) >= 1 and "create" not in grown.summary.resource_changes
    assert relaunched["config"]["guest"]["memory_mb"] == 4096 and len(fly.apps) == 1
    services["chat-fallback"]["region"] = "ord"
    st.set_config("gpu-estate:services", sandbox.auto_config(services))
    moved = st.preview()
    assert moved.change_summary.get("replace") == 1

    st.destroy()
    assert fly.apps == {}
