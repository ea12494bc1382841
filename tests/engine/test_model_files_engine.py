"""ComfyUI's model files through the real engine on the sandbox's VM node (real SSH to this machine's sshd,
real disk under /opt/estate), downloaded from a file host on 127.0.0.1: the preview lists each file as a
resource of its own; `up` downloads them (progress in the engine's output) with their sha256 checked; a file
deleted on the node is seen by refresh and downloaded again by the next `up`; a file dropped from the stack
is deleted from the node, and the machine is never replaced by any of it; a machine replaced for what it
is takes its files with it and the new one gets them; a file whose sha256 is not the
stack's fails the `up` naming it and the expected digest, leaving nothing on the node; and destroy, with the
node's sshd already down, goes through (the files go with the machine, never connected to) and leaves
nothing.

Skipped where the engine or the VM node (sshd, Docker, the sandbox image) is missing, except on the project's
CI (GPU_ESTATE_REQUIRE_VM=1), where that fails.
"""
import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml
from pulumi import automation as auto

import sandbox
from components import workloads
from loopback.files import FileHost

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(bool(sandbox.engine_missing()) and not sandbox.vm_required(), reason=sandbox.engine_missing()),
]

FILE_TYPE = "pulumi-python:dynamic/files:ModelFile"
MACHINE_TYPE = "pulumi-python:dynamic/gpu:Instance"
MODELS = Path(workloads.DATA_DIR) / "comfyui" / "ComfyUI" / "models"
DATA = {"a.safetensors": os.urandom(200_000), "b.safetensors": os.urandom(50_000), "c.safetensors": os.urandom(1000)}


def checkpoint(host: FileHost, name: str, kind: str = "checkpoints", sha256: str = "") -> dict:
    return {"name": name, "url": host.url(f"/files/{name}"), "kind": kind, "size_gb": len(DATA[name]) / 1e9,
            "sha256": sha256 or hashlib.sha256(DATA[name]).hexdigest()}


def vm_only_stack(work: Path, checkpoints: list) -> None:
    """The project copy's sandbox stack reduced to the VM node (its Ollama and a ComfyUI with ``checkpoints``)
    and the local gateway. ComfyUI's own image cannot be pulled here: the sandbox's loopback image stands in
    for it on ComfyUI's port (what is checked is the files on the node's disk)."""
    path = work / "Pulumi.sandbox.yaml"
    doc = yaml.safe_load(path.read_text())
    cfg = doc["config"]
    nodes = cfg["gpu-estate:nodes"]
    vm = nodes["vm"]
    ollama = {k: v for k, v in vm["workloads"]["ollama"].items() if k != "secret_env"}
    vm["workloads"] = {"ollama": ollama, "comfyui": {
        "kind": "comfyui", "image": "gpu-estate/loopback-ollama:sandbox", "gpu": False, "port": 28188,
        "env": {"LOOPBACK_PORT": "8188", "LOOPBACK_NAME": "vm-comfyui"}, "checkpoints": checkpoints}}
    cfg["gpu-estate:nodes"] = {"vm": vm, "gw": nodes["gw"]}
    gateway = cfg["gpu-estate:gateway"]
    gateway["aliases"] = {"tiny": gateway["aliases"]["tiny"]}
    gateway.pop("fallbacks", None)
    for key in ("gpu-estate:serverless", "gpu-estate:HF_TOKEN", "gpu-estate:WEBUI_SECRET_KEY"):
        cfg.pop(key, None)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def set_checkpoints(st, checkpoints: list) -> None:
    nodes = json.loads(st.get_config("gpu-estate:nodes").value)
    nodes["vm"]["workloads"]["comfyui"]["checkpoints"] = checkpoints
    st.set_config("gpu-estate:nodes", sandbox.auto_config(nodes))


def files_in_state(st) -> dict:
    return {Path(r["outputs"]["path"]).name: r["outputs"] for r in st.export_stack().deployment["resources"]
            if r["type"] == FILE_TYPE}


def machine_ids(st) -> list:
    return [r["id"] for r in st.export_stack().deployment["resources"] if r["type"] == MACHINE_TYPE]


def on_node() -> dict:
    """File name -> bytes of every file under ComfyUI's models/checkpoints on the node."""
    where = MODELS / "checkpoints"
    return {p.name: p.read_bytes() for p in sorted(where.iterdir())} if where.exists() else {}


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    why = sandbox.engine_missing() or sandbox.vm_missing()
    if why:
        if sandbox.vm_required():
            pytest.fail(f"the VM node must run here: {why}")
        pytest.skip(why)
    with FileHost() as host:
        for name, data in DATA.items():
            host.publish(f"/files/{name}", data)
        work = sandbox.project_copy(tmp_path_factory.mktemp("project"), vm=True)
        vm_only_stack(work, [checkpoint(host, "a.safetensors"), checkpoint(host, "b.safetensors")])
        with sandbox.fake_clouds(vm=True) as fakes, sandbox.ssh_agent(fakes["machine"].sshd.private_key) as agent:
            st = sandbox.stack(sandbox.engine_env(fakes, tmp_path_factory.mktemp("engine"), agent), work_dir=work)
            try:
                yield st, host, fakes
            finally:
                if fakes["machine"].sshd.proc.poll() is not None:
                    fakes["machine"].sshd.start()  # a test that stopped it and failed before its destroy
                st.destroy()


def test_model_files_are_downloaded_checked_restored_deleted_and_go_with_the_machine(estate):
    st, host, fakes = estate

    preview = st.preview()
    assert preview.stdout.count(FILE_TYPE) == 2, preview.stdout[-4000:]
    up = st.up()
    assert "vm: downloading a.safetensors: 100%" in up.stdout, up.stdout[-4000:]
    assert on_node() == {n: DATA[n] for n in ("a.safetensors", "b.safetensors")}
    state = files_in_state(st)
    assert state["a.safetensors"]["digest"] == hashlib.sha256(DATA["a.safetensors"]).hexdigest()
    machine = machine_ids(st)
    assert set(st.up().summary.resource_changes) == {"same"}  # nothing read again but a stat

    # Deleted on the node behind the state's back: refresh drops it, the next up downloads it again.
    (MODELS / "checkpoints" / "a.safetensors").unlink()
    st.refresh()
    assert set(files_in_state(st)) == {"b.safetensors"}
    again = st.up()
    assert again.summary.resource_changes.get("create") == 1
    assert on_node()["a.safetensors"] == DATA["a.safetensors"]

    # Dropped from the stack: deleted from the node; the machine is the same one.
    set_checkpoints(st, [checkpoint(host, "a.safetensors")])
    dropped = st.up()
    assert dropped.summary.resource_changes.get("delete") == 1 and "replace" not in dropped.summary.resource_changes
    assert set(on_node()) == {"a.safetensors"} and machine_ids(st) == machine

    # The machine replaced (a bigger disk is another machine): the old one goes with its files, never
    # connected to for them, and the next up downloads them onto the new one.
    nodes = json.loads(st.get_config("gpu-estate:nodes").value)
    nodes["vm"]["disk_gb"] = int(nodes["vm"].get("disk_gb") or 100) + 20
    st.set_config("gpu-estate:nodes", sandbox.auto_config(nodes))
    replaced = st.up()
    assert machine_ids(st) != machine and "delete" not in replaced.summary.resource_changes
    assert set(files_in_state(st)) == {"a.safetensors"} and on_node() == {"a.safetensors": DATA["a.safetensors"]}
    assert "vm: downloading a.safetensors: 100%" in replaced.stdout
    machine = machine_ids(st)

    # A file whose bytes are not the stack's sha256: the up fails naming it and the digest, nothing is left.
    wrong = "0" * 64
    set_checkpoints(st, [checkpoint(host, "a.safetensors"), checkpoint(host, "c.safetensors", kind="loras",
                                                                         sha256=wrong)])
    with pytest.raises(auto.CommandError) as failed:
        st.up()
    assert f"c.safetensors downloaded from {host.url('/files/c.safetensors')} has sha256 " in str(failed.value)
    assert f"not the expected {wrong}" in str(failed.value)
    assert not (MODELS / "loras").exists() or not list((MODELS / "loras").iterdir())
    assert machine_ids(st) == machine

    # Destroy with the node's sshd down: the files go with the machine, and nothing connects for them.
    set_checkpoints(st, [checkpoint(host, "a.safetensors")])
    st.up()
    fakes["machine"].sshd.stop()
    st.destroy()
    assert not st.export_stack().deployment.get("resources")
    assert not (Path(workloads.DATA_DIR) / "comfyui").exists()
