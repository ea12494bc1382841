"""The Fly.io service: its spec and price, and the dynamic provider driven directly against the loopback
Fly Machines API (adopt by name, lost answers, 429s, refresh, verified delete)."""
import pytest

from core import pricing
from core.config import parse_spec
from core.errors import ConfigError
from loopback.fly import FakeFly
from providers.fly import FlyApi, FlyMachineProvider, machine_name, volume_name
from providers.http import CloudError

APP = "goblin-chat"


def props(**over):
    p = {"app": APP, "org": "personal", "region": "iad", "image": "ghcr.io/ggml-org/llama.cpp:server-b6870",
         "guest": {"cpu_kind": "shared", "cpus": 2, "memory_mb": 2048}, "volume_gb": 1, "port": 8080,
         "env": {"LLAMA_ARG_ALIAS": "tinyllama-1.1b", "LLAMA_CACHE": "/models"}, "secret_name": "LLAMA_API_KEY", "stamps": {"node": "chat"}, **over}
    result = FlyMachineProvider().check({}, p)
    assert result.failures == []
    return result.inputs


@pytest.fixture
def fly(monkeypatch):
    server = FakeFly(token="fly-test-token")
    monkeypatch.setenv("FLY_API_URL", f"{server.url}/v1")
    monkeypatch.setenv("FLY_API_TOKEN", "fly-test-token")
    # Fly's own proxy address, which an engine test run before in this process may have pointed elsewhere.
    monkeypatch.delenv("FLY_APPS_URL", raising=False)
    yield server
    server.close()


def test_create_makes_the_app_its_secret_volume_and_an_always_on_machine(fly):
    created = FlyMachineProvider().create(props())
    app = fly.apps[APP]
    (machine,) = app["machines"].values()
    (volume,) = app["volumes"].values()
    assert created.id == APP and created.outs["machine_id"] == machine["id"] and created.outs["machine_state"] == "started"
    assert created.outs["url"] == f"https://{APP}.fly.dev"
    assert machine["name"] == machine_name(APP) and machine["region"] == "iad"
    config = machine["config"]
    assert config["guest"] == {"cpu_kind": "shared", "cpus": 2, "memory_mb": 2048}
    assert config["restart"] == {"policy": "always"}
    (service,) = config["services"]
    assert (service["autostop"], service["min_machines_running"]) == (False, 1)
    assert config["mounts"] == [{"volume": volume["id"], "path": "/models"}]
    assert volume["name"] == volume_name(APP) and volume["attached_machine_id"] == machine["id"]
    # The bearer is an app secret, never in the machine's config.
    bearer = created.outs["api_key"]
    assert len(bearer) >= 40 and app["secrets"] == {"LLAMA_API_KEY": bearer}
    assert bearer not in str(config)
    assert all(h.get("authorization") == "Bearer fly-test-token" for h in fly.headers)


def test_the_bearer_in_env_is_refused():
    result = FlyMachineProvider().check({}, {**props(), "env": {"LLAMA_API_KEY": "x"}})
    assert [f.property for f in result.failures] == ["env"]


def test_a_lost_answer_to_each_create_adopts_what_fly_made(fly):
    for path in ("/v1/apps", f"/v1/apps/{APP}/volumes", f"/v1/apps/{APP}/machines"):
        fly.inject("drop", method="POST", path=path)
    created = FlyMachineProvider().create(props())
    app = fly.apps[APP]
    assert len(app["machines"]) == 1 and len(app["volumes"]) == 1
    assert created.outs["machine_id"] in app["machines"]
    assert fly.calls[("POST", "/v1/apps")] == 1  # never sent twice: looked up by name


def test_a_second_create_adopts_by_name(fly):
    first = FlyMachineProvider().create(props())
    second = FlyMachineProvider().create(props(image="ghcr.io/ggml-org/llama.cpp:server-b6871"))
    app = fly.apps[APP]
    assert len(app["machines"]) == 1 and len(app["volumes"]) == 1
    assert second.outs["machine_id"] == first.outs["machine_id"]
    (machine,) = app["machines"].values()
    assert machine["config"]["image"].endswith("b6871")


def test_a_429_is_retried_after_flys_retry_after(fly):
    import time

    fly.inject("status", count=1, method="POST", path="/v1/apps", status=429, body={"error": "rate limited"},
               headers={"Retry-After": "1"})
    start = time.monotonic()
    FlyMachineProvider().create(props())
    creates = [i for i, (m, p) in enumerate(fly.log) if (m, p) == ("POST", "/v1/apps")]
    assert len(creates) == 2 and len(fly.apps) == 1  # sent again once Fly said it may be
    assert time.monotonic() - start >= 1.0  # not before the second Fly asked for


def test_429s_are_retried(fly):
    fly.inject("status", count=2, method="POST", path="/v1/apps", status=429, body={"error": "rate limited"})
    fly.inject("status", count=2, method="GET", path=f"/v1/apps/{APP}/machines", status=429)
    created = FlyMachineProvider().create(props())
    assert created.outs["machine_state"] == "started" and len(fly.apps) == 1


def test_refresh_tells_a_gone_app_from_a_destroyed_machine_and_an_unknown(fly):
    prov = FlyMachineProvider()
    outs = prov.create(props()).outs
    with FlyApi({}) as api:  # destroyed behind the state's back
        api.destroy(APP, outs["machine_id"])
    read = prov.read(APP, outs)
    assert read.id == APP and read.outs["machine_state"] == "destroyed"
    assert prov.diff(APP, read.outs, props()).changes  # the next up launches it again
    updated = prov.update(APP, read.outs, props())
    assert updated.outs["machine_state"] == "started"
    fly.inject("status", count=20, method="GET", path=f"/v1/apps/{APP}", status=503)
    with pytest.raises(CloudError):
        prov.read(APP, outs)  # cannot see it: the state keeps it
    fly.faults.clear()
    del fly.apps[APP]
    assert prov.read(APP, outs).id == ""


def test_a_new_region_replaces_and_a_new_size_updates(fly):
    prov = FlyMachineProvider()
    olds = prov.create(props()).outs
    assert prov.diff(APP, olds, props(region="ord")).replaces == ["region"]
    d = prov.diff(APP, olds, props(guest={"cpu_kind": "shared", "cpus": 2, "memory_mb": 4096}))
    assert d.changes and d.replaces == []


def test_delete_destroys_machine_volume_and_app_and_verifies(fly):
    prov = FlyMachineProvider()
    outs = prov.create(props()).outs
    fly.inject("status", count=1, method="DELETE", path=f"/v1/apps/{APP}/volumes", status=412,
               body={"error": "volume is attached"})
    prov.delete(APP, outs)
    assert APP not in fly.apps
    prov.delete(APP, outs)  # already gone: nothing to do, no error


def test_delete_that_fly_refuses_keeps_the_resource(fly, monkeypatch):
    monkeypatch.setenv("ESTATE_DELETE_TIMEOUT_SECONDS", "0.2")
    prov = FlyMachineProvider()
    outs = prov.create(props()).outs
    fly.inject("status", count=1000, method="DELETE", path=f"/v1/apps/{APP}", status=412, body={"error": "busy"})
    with pytest.raises(CloudError):
        prov.delete(APP, outs)
    assert APP in fly.apps


def test_the_app_answers_the_gateway_only_with_its_bearer(fly):
    import requests

    bearer = FlyMachineProvider().create(props()).outs["api_key"]
    url = f"{fly.app_url(APP)}/v1/chat/completions"
    body = {"model": "tinyllama-1.1b", "messages": [{"role": "user", "content": "hi"}]}
    assert requests.post(url, json=body, timeout=5).status_code == 401
    ok = requests.post(url, json=body, headers={"Authorization": f"Bearer {bearer}"}, timeout=5)
    assert ok.status_code == 200 and ok.json()["model"] == "tinyllama-1.1b"


SPEC = {
    "nodes": {"vps": {"provider": "host", "address": "127.0.0.1", "workloads": {"litellm": {}}}},
    "services": {"chat": {"provider": "fly", "app": APP, "region": "iad", "served_name": "tinyllama-1.1b",
                          "model": "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF",
                          "gguf": "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf"}},
    "gateway": {"node": "vps", "deploy": "local", "aliases": {"chat": "tinyllama-1.1b"}},
    "budget": {"monthly_usd": 100},
}


def test_the_service_is_priced_per_month_from_flys_rates():
    est = pricing.estimate_estate(parse_spec(SPEC)).services[0]
    # shared-cpu-2x ($3.89 for 30 days with 512 MB) + 1.5 GB at $5, over 730 h, and a 1 GB volume at $0.15.
    assert est.instance_hourly_usd == pytest.approx((3.89 + 7.5) / 720, abs=1e-6)
    assert est.monthly_usd == pytest.approx(round((3.89 + 7.5) / 720 * 730 + 0.15, 2))


@pytest.mark.parametrize("key,value,needle", [
    ("size", "shared-cpu-3x", "services.chat.size"),
    ("memory_mb", 300, "services.chat"),
    ("region", "Virginia", "services.chat.region"),
    ("app", "Goblin_Chat", "services.chat.app"),
])
def test_bad_input_names_the_key(key, value, needle):
    bad = {**SPEC, "services": {"chat": {**SPEC["services"]["chat"], key: value}}}
    with pytest.raises(ConfigError) as err:
        parse_spec(bad)
    assert needle in str(err.value) and str(value) in str(err.value)


def test_the_gateway_routes_to_the_app_with_its_bearer_from_env():
    from components.gateway import litellm_config
    from core.topology import plan_estate

    plan = plan_estate(parse_spec(SPEC))
    (entry,) = [m for m in litellm_config(plan, services={"chat": f"https://{APP}.fly.dev"})["model_list"]
                if m["model_name"] == "chat"]
    assert entry["litellm_params"]["api_base"] == f"https://{APP}.fly.dev/v1"
    assert entry["litellm_params"]["api_key"] == "os.environ/FLY_CHAT_KEY"
    assert entry["litellm_params"]["model"] == "openai/tinyllama-1.1b"


def test_a_stamps_edit_leaves_the_machine_running_and_a_stopped_one_is_started(fly):
    prov = FlyMachineProvider()
    olds = prov.create(props()).outs
    (machine,) = fly.apps[APP]["machines"].values()
    instance = machine["instance_id"]
    fly.log.clear()
    news = props(stamps={"node": "chat", "monthly_usd": 12})
    assert prov.diff(APP, olds, news).changes
    outs = prov.update(APP, olds, news).outs
    assert outs["stamps"]["monthly_usd"] == 12 and fly.log == []  # no call to Fly, no restart
    assert machine["instance_id"] == instance

    with FlyApi({}) as api:  # stopped behind the state's back
        api._call("POST", f"/apps/{APP}/machines/{machine['id']}/stop")
    read = prov.read(APP, outs)
    assert read.outs["machine_state"] == "stopped" and prov.diff(APP, read.outs, news).changes
    started = prov.update(APP, read.outs, news).outs
    assert started["machine_state"] == "started" and machine["state"] == "started"
    assert started["machine_id"] == machine["id"] and len(fly.apps[APP]["machines"]) == 1


def test_a_create_whose_machine_never_starts_tears_down_what_it_made(fly, monkeypatch):
    """A failed create keeps no state: the app, volume and Machine it made are destroyed and verified gone."""
    monkeypatch.setenv("ESTATE_BOOT_TIMEOUT_SECONDS", "0.3")
    monkeypatch.setenv("ESTATE_POLL_SECONDS", "0.05")
    fly.boot_polls = 10 ** 6  # never started
    with pytest.raises(CloudError, match="did not start.*destroyed and verified gone") as raised:
        FlyMachineProvider().create(props())
    assert "stays in state" not in str(raised.value)
    assert APP not in fly.apps


def test_a_failed_create_in_an_adopted_app_removes_only_its_own_machine_and_volume(fly, monkeypatch):
    monkeypatch.setenv("ESTATE_BOOT_TIMEOUT_SECONDS", "0.3")
    monkeypatch.setenv("ESTATE_POLL_SECONDS", "0.05")
    api = FlyApi({})
    with api:
        api.create_app(APP, "personal")
        other = api.create_volume(APP, "iad", 1)  # not this create's: an earlier volume of the app
    fly.boot_polls = 10 ** 6
    with pytest.raises(CloudError, match="destroyed and verified gone"):
        FlyMachineProvider().create(props())
    app = fly.apps[APP]
    assert [m for m in app["machines"].values() if m["state"] != "destroyed"] == []
    assert [v["id"] for v in app["volumes"].values() if v.get("state") != "destroyed"] == [other["id"]]


def test_a_failed_create_whose_teardown_fails_names_what_is_left(fly, monkeypatch):
    monkeypatch.setenv("ESTATE_BOOT_TIMEOUT_SECONDS", "0.3")
    monkeypatch.setenv("ESTATE_DELETE_TIMEOUT_SECONDS", "0.3")
    monkeypatch.setenv("ESTATE_POLL_SECONDS", "0.05")
    fly.boot_polls = 10 ** 6
    fly.inject("status", count=1000, method="DELETE", path=f"/v1/apps/{APP}", status=412, body={"error": "busy"})
    with pytest.raises(CloudError, match=f"the Fly app {APP} with its volume and Machine may still bill.*scripts/leftovers.py"):
        FlyMachineProvider().create(props())
    assert APP in fly.apps
