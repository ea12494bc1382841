"""The VM path through the real engine: a TensorDock node with ``access: ssh`` whose SSH endpoint is a real
OpenSSH server on 127.0.0.1 (this machine), its compose project delivered by the real ``command``
provider, its containers run by Docker with compose v2, its model pulled by the containerised real
Ollama from the loopback registry through the SSH forward, and answered through the local gateway's own
SSH forward.

Skipped where the engine, sshd, Docker, compose or the sandbox image is missing, except on the project's
CI (GPU_ESTATE_REQUIRE_VM=1), where a missing part fails the test instead.
"""
import json
import threading
import time
from pathlib import Path

import pytest
import requests
from pulumi import automation as auto

from components import workloads
import sandbox
from tests.conftest import vm_node_or_skip

pytestmark = [
    pytest.mark.engine,
    pytest.mark.money,
    # On the project's CI the engine must be there too: a missing part fails in the fixture instead.
    pytest.mark.skipif(bool(sandbox.engine_missing()) and not sandbox.vm_required(), reason=sandbox.engine_missing()),
]

OLLAMA = "http://127.0.0.1:21434"  # the vm node's ports in Pulumi.sandbox.yaml, bound on the machine's loopback
WEBUI = "http://127.0.0.1:23000"
MYAI = "http://127.0.0.1:28000"


@pytest.fixture(scope="module")
def vm(tmp_path_factory):
    vm_node_or_skip()
    work = sandbox.project_copy(tmp_path_factory.mktemp("project"), vm=True)
    with sandbox.fake_clouds(vm=True) as fakes, sandbox.ssh_agent(fakes["machine"].sshd.private_key) as agent:
        state_dir = tmp_path_factory.mktemp("engine")
        st = sandbox.stack(sandbox.engine_env(fakes, state_dir, agent), work_dir=work)
        try:
            yield st, fakes, fakes["machine"]
        finally:
            st.destroy()


class Poller:
    """Requests a URL in a loop while an operation runs; records when it failed."""

    def __init__(self, url: str):
        self.url, self.failures, self.successes = url, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                requests.get(self.url, timeout=2).raise_for_status()
                self.successes += 1
            except requests.RequestException:
                self.failures.append(time.monotonic())
            self._stop.wait(0.05)

    def __enter__(self) -> "Poller":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def outage_seconds(self) -> float:
        return (self.failures[-1] - self.failures[0]) if self.failures else 0.0


def answer(url: str, seconds: float = 30.0) -> dict:
    """The JSON a service answers once it listens (a container just started may not yet)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            resp = requests.get(url, timeout=5)
            resp.raise_for_status()
            return resp.json()
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def nodes(st) -> dict:
    return json.loads(st.get_config("gpu-estate:nodes").value)


def files_under(machine) -> bytes:
    return b"".join(p.read_bytes() for p in machine.root.rglob("*") if p.is_file())


def test_up_delivers_the_project_and_a_second_up_changes_nothing(vm):
    st, fakes, machine = vm
    up = st.up()
    changes = up.summary.resource_changes
    assert changes.get("create", 0) > 0 and set(changes) <= {"create", "same"}
    containers = machine.containers()
    assert {s: c["state"] for s, c in containers.items()} == {"ollama": "running", "webui": "running",
                                                              "myai-api": "running"}
    # The container of the stack's own runs its entrypoint and arguments, on the port the stack gave.
    assert [m["id"] for m in answer(f"{MYAI}/v1/models")["data"]] == ["myai-7b"]
    compose = machine.file("compose.yaml")
    assert "gpu-estate/ollama:0.17.4" in compose and "network_mode: host" in compose
    # The model arrived through the SSH forward: the container's real Ollama pulled it from the registry on
    # the machine's loopback, and keeps it on the disk.
    tiny = fakes["registry"].name(*sandbox.TINY)
    assert sandbox.pulled(fakes)[sandbox.VM_NODE] == [tiny]
    tags = requests.get(f"{OLLAMA}/api/tags", timeout=5).json()
    assert [(m["name"], m["digest"]) for m in tags["models"]] == [(tiny, fakes["registry"].digest(*sandbox.TINY))]
    assert requests.get(f"{OLLAMA}/api/version", timeout=5).json() == {"version": "0.17.4"}
    # The gateway answers the alias with the real Ollama's tokens, through its own SSH forward.
    key = up.outputs["gateway_master_key"].value
    said = requests.post(f"{up.outputs['gateway'].value['url']}/v1/chat/completions", timeout=60,
                         headers={"Authorization": f"Bearer {key}"},
                         json={"model": sandbox.VM_ALIAS, "messages": [{"role": "user", "content": "hello"}],
                               "max_tokens": 8})
    assert said.status_code == 200, said.text
    assert said.json()["choices"][0]["message"]["content"].strip()
    assert said.headers["x-litellm-model-id"] == f"{sandbox.VM_ALIAS}@{sandbox.VM_NODE}"
    # The secret reached the node as a 0600 file that the container reads, not as a compose value.
    secret = st.get_config("gpu-estate:WEBUI_SECRET_KEY").value
    assert machine.file("secrets/webui.env") == f"WEBUI_SECRET_KEY={secret}\n"
    assert secret not in compose
    assert f"WEBUI_SECRET_KEY={secret}" in containers["webui"]["env"]
    # The VM answered first contact with the host key the program generated for it and installed through
    # its cloud-init: the pinned key was known before any connection, never learned from one.
    (host_key,) = [r for r in st.export_stack().deployment["resources"]
                   if r["type"] == "pulumi-python:dynamic/ssh:HostKey"]
    assert host_key["inputs"]["expected"] == " ".join(machine.sshd.host_public_key.split()[:2])
    assert host_key["outputs"]["host_key"] == host_key["inputs"]["expected"]
    token = st.get_config("gpu-estate:HF_TOKEN").value
    assert f"HF_TOKEN={token}" in containers["ollama"]["env"]
    # Over SSH only: the vendor was sent neither (its API, console and host would read them).
    sent = sandbox.sent_to_vendors(fakes)
    assert sent.count('"POST"') >= 1 and secret not in sent and token not in sent

    again = st.up()
    assert set(again.summary.resource_changes) == {"same"}
    assert {s: c["id"] for s, c in machine.containers().items()} == {s: c["id"] for s, c in containers.items()}


def test_editing_a_workload_recreates_only_its_container_and_nothing_undoes_it(vm):
    st, fakes, machine = vm
    before = machine.containers()
    cfg = nodes(st)
    cfg["vm"]["workloads"]["webui"]["env"]["WEBUI_NAME"] = "estate chat"
    st.set_config("gpu-estate:nodes", sandbox.auto_config(cfg))
    preview = st.preview()
    assert preview.change_summary.get("update") == 1 and "replace" not in preview.change_summary
    with Poller(f"{OLLAMA}/api/version") as ollama, Poller(f"{WEBUI}/api/version") as webui:
        edit = st.up()
        time.sleep(1)  # the loop runs on after the up: a late `compose down` would show here
    # One update in place (the workloads command); nothing replaced, so no old delete ran afterwards.
    assert edit.summary.resource_changes == {"update": 1, "same": sum(edit.summary.resource_changes.values()) - 1}
    after = machine.containers()
    assert after["ollama"]["id"] == before["ollama"]["id"]  # the untouched workload kept its container
    assert after["webui"]["id"] != before["webui"]["id"]
    assert "WEBUI_NAME=estate chat" in after["webui"]["env"]
    assert {c["state"] for c in after.values()} == {"running"}
    assert ollama.failures == [] and ollama.successes > 0
    assert webui.successes > 0 and requests.get(f"{WEBUI}/api/version", timeout=5).ok
    print(f"open-webui outage while its container was recreated: {webui.outage_seconds:.2f}s")


def test_rotating_a_secret_redelivers_it_and_leaves_no_old_copy(vm):
    st, fakes, machine = vm
    old = st.get_config("gpu-estate:WEBUI_SECRET_KEY").value
    before = machine.containers()
    new = "rotated-" + old[::-1]
    st.set_config("gpu-estate:WEBUI_SECRET_KEY", auto.ConfigValue(value=new, secret=True))
    up = st.up()
    assert up.summary.resource_changes.get("update") == 2  # the secret files, then the deploy
    assert machine.file("secrets/webui.env") == f"WEBUI_SECRET_KEY={new}\n"
    assert old.encode() not in files_under(machine)
    after = machine.containers()
    assert f"WEBUI_SECRET_KEY={new}" in after["webui"]["env"]
    assert after["ollama"]["id"] == before["ollama"]["id"]


def gateway_pid(st) -> int:
    (local,) = [r for r in st.export_stack().deployment["resources"]
                if r["type"] == "pulumi-python:dynamic/gateway:Local"]
    return local["outputs"]["pid"]


def test_a_gateway_config_change_restarts_it_and_it_keeps_serving(vm):
    st, fakes, machine = vm
    key = st.outputs()["gateway_master_key"].value
    pid = gateway_pid(st)
    g = json.loads(st.get_config("gpu-estate:gateway").value)
    g["timeouts"]["default"] = 90
    st.set_config("gpu-estate:gateway", sandbox.auto_config(g))
    up = st.up()
    assert up.summary.resource_changes.get("update", 0) >= 1 and "replace" not in up.summary.resource_changes
    assert gateway_pid(st) != pid  # restarted on the new config, with the same master key
    url = st.outputs()["gateway"].value["url"]
    models = requests.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
    assert sorted(m["id"] for m in models["data"]) == ["big", "burst", "chat", "dall-e-3", "fallback", "fast", "tiny"]


def test_a_machine_answering_with_another_host_key_gets_no_secret(vm):
    st, fakes, machine = vm
    old_secret = st.get_config("gpu-estate:WEBUI_SECRET_KEY").value
    original = machine.sshd.rekey()  # another machine answers at the node's address
    try:
        st.set_config("gpu-estate:WEBUI_SECRET_KEY", auto.ConfigValue("rotated-under-a-changed-host-key", secret=True))
        with pytest.raises(auto.CommandError) as err:
            st.up()
        assert "host key mismatch" in str(err.value)  # the command provider refused the handshake
        # Nothing was sent: the secret file on the node still holds the old value.
        assert machine.file("secrets/webui.env") == f"WEBUI_SECRET_KEY={old_secret}\n"
        # A refresh says which key changed and keeps the recorded one.
        refresh = st.refresh()
        assert "its SSH host key changed" in refresh.stdout
    finally:
        machine.sshd.rekey(Path(original))
    st.up()  # the recorded key answers again: the rotated secret is delivered
    assert machine.file("secrets/webui.env") == "WEBUI_SECRET_KEY=rotated-under-a-changed-host-key\n"


def test_refresh_and_destroy_with_the_node_ssh_gone(vm):
    st, fakes, machine = vm
    count = len(st.export_stack().deployment["resources"])
    machine.sshd.stop()  # the node no longer answers SSH (and so neither does its Ollama, to us)
    st.refresh()
    assert len(st.export_stack().deployment["resources"]) == count  # nothing it cannot see is dropped
    st.destroy()
    # The instance is deleted without waiting on its SSH; losing it took the containers and disk with it.
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}
    assert machine.containers() == {}
    assert machine.file("compose.yaml") is None and machine.file("secrets/webui.env") is None
    assert workloads.COMPOSE_FILE.startswith(str(machine.root))
