"""The real engine on the sandbox stack: up, no-op up, model list edits, drift, refresh, destroy.

Runs on a copy of the project (sandbox.project_copy) so config edits leave Pulumi.sandbox.yaml as
committed. Skipped where the Pulumi CLI built by scripts/build-pulumi.sh is absent.
"""
import json
import time

import pytest
import requests
from pulumi import automation as auto
from pulumi.automation import errors

from loopback.webhook import FakeWebhook

from policy.pack_config import pack_config
import sandbox

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(bool(sandbox.engine_missing()), reason=sandbox.engine_missing()),
]

INSTANCES, MODELS, ENDPOINTS, SERVICES = 3, 5, 1, 1
# stack, estate, four node components, instances, models, the serverless endpoint, the Fly.io service,
# gateway + process + spend watcher
RESOURCES = 6 + INSTANCES + MODELS + ENDPOINTS + SERVICES + 3


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    work = sandbox.project_copy(tmp_path_factory.mktemp("project"))
    with sandbox.fake_clouds() as fakes:
        state_dir = tmp_path_factory.mktemp("engine")
        st = sandbox.stack(sandbox.engine_env(fakes, state_dir), work_dir=work)
        st.state_dir = state_dir
        yield st, fakes, work
        st.destroy()


def pack(work, **overrides):
    """The policy pack and its config for the sandbox, with some policies' config replaced."""
    config = {**pack_config("sandbox"), **overrides}
    path = work / "policy-config.json"
    path.write_text(json.dumps(config))
    return {"policy_packs": [str(work / "policy")], "policy_pack_configs": [str(path)]}


def test_the_policy_pack_blocks_an_up_over_budget(estate):
    st, fakes, work = estate
    with pytest.raises(errors.CommandError) as refused:
        st.up(**pack(work, **{"estate-plan-budget": {"monthly_usd": 50}, "estate-monthly-budget": {"monthly_usd": 50}}))
    assert ("the estate plans $145.46/month for 4 nodes, 1 serverless endpoint and 1 service, above the monthly "
            "budget $50.00"
            in str(refused.value))
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}  # nothing was rented
    assert fakes["fly"].apps == {}


def test_lifecycle(estate):
    st, fakes, work = estate
    # The refused up above left only the stack itself behind.
    preview = st.preview(**pack(work))
    assert preview.change_summary == {"create": RESOURCES - 1, "same": 1}
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}

    up = st.up(**pack(work))
    assert up.summary.resource_changes == {"create": RESOURCES - 1, "same": 1}
    assert sandbox.alive(fakes) == {"tensordock": 1, "vastai": 1, "runpod": 2}  # RunPod: a pod and an endpoint
    (endpoint,) = fakes["runpod"].endpoints.values()
    assert (endpoint["name"], endpoint["workersMax"], endpoint["idleTimeout"]) == ("gpu-estate-sandbox-burst", 2, 300)
    assert sandbox.pulled(fakes) == {"tensordock": ["llama3.2:3b", "qwen3:8b"], "vastai": ["qwen3:14b", "qwen3:8b"],
                                     "runpod": ["tinyllama:1.1b"]}
    nodes = up.outputs["nodes"].value
    assert nodes["inference"]["ports"]["11434"] > 0
    # the nodes' $128, the endpoint's 10 busy hours and the Fly.io machine's month
    assert up.outputs["cost"].value["total_monthly_usd"] == 145.46
    (app,) = fakes["fly"].apps.values()
    (machine,) = app["machines"].values()
    assert app["name"] == "goblin-chat-sandbox" and machine["state"] == "started"
    assert machine["config"]["guest"] == {"cpu_kind": "shared", "cpus": 2, "memory_mb": 2048}
    assert set(app["secrets"]) == {"LLAMA_API_KEY"} and app["secrets"]["LLAMA_API_KEY"] not in json.dumps(machine)

    # The gateway answers for the aliases, routed to the loopback Ollamas of the nodes serving them.
    gateway, master_key = up.outputs["gateway"].value, up.outputs["gateway_master_key"]
    assert master_key.secret and master_key.value.startswith("sk-")
    auth = {"Authorization": f"Bearer {master_key.value}"}
    models = requests.get(f"{gateway['url']}/v1/models", headers=auth, timeout=10).json()
    assert sorted(m["id"] for m in models["data"]) == ["big", "burst", "chat", "dall-e-3", "fallback", "fast"]
    answer = requests.post(f"{gateway['url']}/v1/chat/completions", headers=auth, timeout=60,
                           json={"model": "big", "messages": [{"role": "user", "content": "hi"}]}).json()
    assert answer["choices"][0]["message"]["content"] == "vastai-ollama answers with qwen3:14b"
    # 'burst' is the serverless endpoint, reached on RunPod's OpenAI route with the RunPod key.
    answer = requests.post(f"{gateway['url']}/v1/chat/completions", headers=auth, timeout=60,
                           json={"model": "burst", "messages": [{"role": "user", "content": "hi"}]}).json()
    assert answer["choices"][0]["message"]["content"] == f"serverless {endpoint['id']} answers with qwen2.5-1.5b"
    # 'fallback' is the Fly.io app, reached at its public address with the bearer the program generated.
    answer = requests.post(f"{gateway['url']}/v1/chat/completions", headers=auth, timeout=60,
                           json={"model": "fallback", "messages": [{"role": "user", "content": "hi"}]}).json()
    assert answer["choices"][0]["message"]["content"] == "fly app goblin-chat-sandbox answers with tinyllama-1.1b-chat"

    # The state holds the gateway's master key only encrypted, and no vendor was sent it.
    assert master_key.value not in sandbox.sent_to_vendors(fakes)
    (checkpoint,) = (st.state_dir / "state").rglob("sandbox.json")  # the state as the backend stores it
    assert '"ciphertext"' in checkpoint.read_text()
    # Each resource the program declared records where in the project it was declared.
    declared = [r for r in json.loads(checkpoint.read_text())["checkpoint"]["latest"]["resources"]
                if r["type"] not in ("pulumi:pulumi:Stack",) and not r["type"].startswith("pulumi:providers:")]
    assert len(declared) == RESOURCES - 1
    instance = next(r for r in declared if r["type"] == "pulumi-python:dynamic/gpu:Instance")
    assert any(f["sourcePosition"].startswith("project:///components/node.py#") for f in instance["stackTrace"])
    stored = [p for p in st.state_dir.rglob("*") if p.is_file()]  # with its history and backups
    assert len(stored) > 2 and not [p for p in stored if master_key.value.encode() in p.read_bytes()]

    again = st.up(**pack(work))
    assert again.summary.resource_changes == {"same": RESOURCES}
    assert sum(o.pulls() for o in fakes["ollama"].values()) == MODELS  # present models cost no pull

    # Editing one node's model list pulls the new tag and removes the dropped one; the only other change
    # is the gateway's config, which no longer routes qwen3:8b to that node.
    ids = {name: [i["id"] for i in fakes[name].alive()] for name in ("tensordock", "vastai", "runpod")}
    nodes_cfg = json.loads(st.get_config("gpu-estate:nodes").value)
    nodes_cfg["qwen"]["workloads"]["ollama"]["models"] = ["qwen3:14b", "llama3.2:3b"]
    st.set_config("gpu-estate:nodes", sandbox.auto_config(nodes_cfg))
    edit = st.up()
    assert edit.summary.resource_changes == {"create": 1, "delete": 1, "update": 1, "same": RESOURCES - 2}

    # Workers raised in RunPod's console: refresh sees it, the next up puts the stack's back, in place.
    endpoint["workersMax"] = 20
    st.refresh()
    converge = st.up()
    assert converge.summary.resource_changes.get("update") == 1 and "create" not in converge.summary.resource_changes
    assert fakes["runpod"].endpoints[endpoint["id"]]["workersMax"] == 2
    assert sandbox.pulled(fakes)["vastai"] == ["llama3.2:3b", "qwen3:14b"]
    assert {name: [i["id"] for i in fakes[name].alive()] for name in ids} == ids

    # Stopped behind the state's back: refresh sees it, the next up starts it again.
    (td_inst,) = fakes["tensordock"].alive()
    td_inst["status"] = "stopped"
    st.refresh()
    converge = st.up()
    assert converge.summary.resource_changes.get("update") == 1
    assert td_inst["status"] == "running"

    # Preempted: refresh drops it from state, the next up rents a new one and pulls its models again.
    (vast_inst,) = fakes["vastai"].alive()
    fakes["vastai"].preempt(vast_inst["id"])
    fakes["ollama"]["vastai"].installed.clear()  # the new machine starts with an empty disk
    st.refresh()
    st.up()
    assert sandbox.alive(fakes) == {"tensordock": 1, "vastai": 1, "runpod": 2}
    assert fakes["vastai"].alive()[0]["id"] != vast_inst["id"]
    assert sandbox.pulled(fakes)["vastai"] == ["llama3.2:3b", "qwen3:14b"]

    # Wake on request: the RunPod node ('fast' is its alone) stopped by its idle watcher, and its Ollama with
    # it. Refresh leaves an idle node as it is; a request through the gateway starts it and it answers.
    rp = fakes["runpod"]
    (pod,) = rp.pods.values()
    fakes["ollama"]["runpod"].serving = lambda: pod["desiredStatus"] == "RUNNING" and pod["runtime"] is not None
    from providers import gpu_cloud

    client = gpu_cloud.client("runpod")
    client.stop(pod["id"])
    client.close()
    st.refresh()
    assert st.preview().change_summary == {"same": RESOURCES}  # an idle node stopped is not drift
    gateway = st.outputs()["gateway"].value
    answer = requests.post(f"{gateway['url']}/v1/chat/completions", headers=auth, timeout=120,
                           json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "runpod-ollama answers with tinyllama:1.1b"
    assert pod["desiredStatus"] == "RUNNING"

    # The spend watcher beside the gateway: the vendors bill far more than the month's $200, so it alerts,
    # stops every node, the gateway wakes none, and `up` starts none until the month is resumed.
    hook = FakeWebhook()
    try:
        st.set_config("gpu-estate:spendWebhook", auto.ConfigValue(hook.url, secret=True))
        assert st.up().summary.resource_changes == {"update": 1, "same": RESOURCES - 1}  # the watcher, restarted
        for cloud, inst in (("tensordock", td_inst), ("vastai", fakes["vastai"].alive()[0]), ("runpod", pod)):
            fakes[cloud].bill(inst["id"], 100000.0)
        ledger = work / ".estate" / "sandbox" / "gateway" / "spend-ledger.json"
        for _ in range(120):
            if "stop" in hook.kinds() and json.loads(ledger.read_text())["stopped"] == ["batch", "inference", "qwen"]:
                break
            time.sleep(0.5)
        assert "threshold" in hook.kinds() and "stop" in hook.kinds(), hook.posts
        assert td_inst["status"] == "stopped" and pod["desiredStatus"] == "EXITED"
        assert fakes["vastai"].alive()[0]["intended_status"] == "stopped"
        asleep = requests.post(f"{gateway['url']}/v1/chat/completions", headers=auth, timeout=60,
                               json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
        assert asleep.status_code == 503 and "this month's spend has reached the budget" in asleep.text
        with pytest.raises(errors.CommandError) as refused:
            st.up()
        month = json.loads(ledger.read_text())["month"]
        assert f"gpu-estate:spend.resume_month: $" in str(refused.value)
        assert f"Set gpu-estate:spend.resume_month to '{month}'" in str(refused.value)
        assert td_inst["status"] == "stopped"  # the refused up started nothing
        watch = json.loads(st.get_config("gpu-estate:spend").value)
        st.set_config("gpu-estate:spend", sandbox.auto_config({**watch, "resume_month": month}))
        st.refresh()
        st.up()
        assert td_inst["status"] == "running" and fakes["vastai"].alive()[0]["intended_status"] == "running"
        assert pod["desiredStatus"] == "EXITED"  # an idle node stays as the watcher left it
        time.sleep(2.5)  # two more looks: a resumed month is watched, not stopped
        assert td_inst["status"] == "running"
        assert hook.url not in sandbox.sent_to_vendors(fakes)
        stored = [p for p in st.state_dir.rglob("*") if p.is_file()]
        assert not [p for p in stored if hook.url.encode() in p.read_bytes()]
    finally:
        hook.close()
    st.destroy()
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}
    assert fakes["fly"].apps == {}  # the Machine, its volume and the app, each verified gone
    assert sandbox.pulled(fakes) == {"tensordock": [], "vastai": [], "runpod": []}
    with pytest.raises(requests.ConnectionError):  # the gateway process is gone too
        requests.get(f"{gateway['url']}/health/liveliness", timeout=5)
