"""A stack written by the code before the core-layer redesign is refreshed, updated with no changes and
destroyed by the code after it. Pulumi stores each dynamic provider pickled by its class path
(``providers.gpu_instance.GpuInstanceProvider``, ...), and resources by their URNs: both must still
resolve after modules moved and the gateway became a component of its own."""
import contextlib
import io
import shutil
import subprocess
import tarfile

import pytest

import sandbox

# The last commit before core/ existed: its program wrote the state this test reads back.
BEFORE = "8ab9237a853e3c2798f6cd60ac9052e4e1a6937f"

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(bool(sandbox.engine_missing()), reason=sandbox.engine_missing()),
]
CODE = ("__main__.py", "core", "components", "providers", "policy", "scripts", "loopback", "tests", "assets")


def checkout(commit: str, dest):
    try:
        archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=sandbox.ROOT, capture_output=True,
                                 check=True).stdout
    except subprocess.CalledProcessError as err:
        pytest.skip(f"commit {commit[:7]} is not in this clone's history: {err.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    (dest / ".venv").symlink_to(sandbox.ROOT / ".venv")


def test_state_written_before_the_redesign_stays_managed(tmp_path):
    work = tmp_path / "project"
    checkout(BEFORE, work)
    with sandbox.fake_clouds() as fakes:
        # The code before predates the vendor contract fixes: it asked TensorDock for external_port ==
        # internal_port, used Vast.ai's address unstripped and read RunPod's /http ports as public. Hosts that hand out exactly those ports and
        # an address without the newline let it rent, as it did then; the state it writes is the point.
        for host in fakes["tensordock"].hostnodes:
            host["available_resources"]["available_ports"] += [22, 3000, 11434]
        fakes["vastai"].ipaddr_suffix = ""
        fakes["runpod"].http_ports_public = True
        st = sandbox.stack(sandbox.engine_env(fakes, tmp_path / "engine"), work_dir=work)
        up = st.up()
        assert up.summary.resource_changes["create"] > 10
        rented = {n: [i["id"] for i in fakes[n].alive()] for n in ("tensordock", "vastai", "runpod")}

        for name in CODE:  # the same project directory, now with the code after the change
            target = work / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        sandbox.project_copy(work)

        st.refresh()
        preview = st.preview()
        # The gateway process is now a child of a Gateway component (reached by an alias): one new
        # component, which holds no cloud resource. One machine is re-rented, and only it: the sandbox's
        # Vast.ai node of then held a config secret in its vendor env, which no machine may hold now;
        # the preview names the key that forces it. The other machines are updated in place (their
        # stamps) and keep running. The serverless endpoint, the spend watcher and the Fly.io service the
        # sandbox stack now declares are made too.
        steps = preview.change_summary
        assert steps.get("create") == 4 and steps.get("replace") == 1 and "delete" not in steps, steps
        # (the sandbox's Vast.ai node now also runs ComfyUI with its images bridge: a new image, start script
        # and ports, which the preview names beside the secret)
        assert ("gpu-estate-sandbox-qwen: launch.image, launch.onstart, launch.ports, secrets changed: this rents a "
                "new machine") in preview.stdout
        again = st.up()
        assert again.summary.resource_changes.get("replace") == 1 and "delete" not in again.summary.resource_changes
        made = set(fakes["runpod"].endpoints)  # the new endpoint, apart from the machines rented before
        assert len(made) == 1
        now = {n: [i["id"] for i in fakes[n].alive() if i["id"] not in made] for n in rented}
        assert {n: ids for n, ids in now.items() if n != "vastai"} == {n: ids for n, ids in rented.items() if n != "vastai"}
        assert len(now["vastai"]) == 1 and now["vastai"] != rented["vastai"]
        assert "HF_TOKEN" not in (fakes["vastai"].alive()[0].get("env") or {})
        # The new machine has its models (the loopback Vast.ai shares one Ollama across its instances).
        assert sandbox.pulled(fakes)["vastai"] == ["qwen3:14b", "qwen3:8b"]
        assert st.up().summary.resource_changes == {"same": sum(again.summary.resource_changes.values())}

        st.destroy()
        assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}
        assert fakes["fly"].apps == {}
        assert sandbox.pulled(fakes) == {"tensordock": [], "vastai": [], "runpod": []}


# The last commit before workload kinds became classes, vendors one record, machines builders and
# placement its own module: the state its program wrote must stay managed with nothing replaced.
BEFORE_RESHAPE = "cd0185cf5b58dfa96c29c27f3834454bc68a02b8"


def test_state_written_before_the_reshape_upgrades_with_no_replacement(tmp_path):
    """The sandbox stack as it was, with its VM node (compose over SSH on this machine's sshd and Docker)
    when they run here, upgraded to the reshaped code."""
    why = sandbox.vm_missing()
    if why and sandbox.vm_required():
        pytest.fail(f"the VM node must run here: {why}")
    vm = not why
    work = tmp_path / "project"
    checkout(BEFORE_RESHAPE, work)
    if not vm:  # the stack as the code before wrote it, without the node that needs sshd and Docker
        import yaml

        path = work / "Pulumi.sandbox.yaml"
        doc = yaml.safe_load(path.read_text())
        doc["config"]["gpu-estate:nodes"].pop(sandbox.VM_NODE, None)
        doc["config"].pop("gpu-estate:WEBUI_SECRET_KEY", None)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with sandbox.fake_clouds(vm=vm) as fakes, contextlib.ExitStack() as stack:
        agent = stack.enter_context(sandbox.ssh_agent(fakes["machine"].sshd.private_key)) if vm else None
        st = sandbox.stack(sandbox.engine_env(fakes, tmp_path / "engine", agent), work_dir=work)
        up = st.up()
        assert up.summary.resource_changes["create"] > 10
        rented = {n: sorted(i["id"] for i in fakes[n].alive()) for n in ("tensordock", "vastai", "runpod")}
        endpoints = set(fakes["runpod"].endpoints)
        written = (work / "Pulumi.sandbox.yaml").read_text()

        for name in CODE + ("agents",):  # the same project directory, now with the code after the change
            target = work / name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
        sandbox.project_copy(work, vm=vm)
        # The same stack as it was written: what is checked is the code, not a stack edited since.
        (work / "Pulumi.sandbox.yaml").write_text(written)

        st.refresh()
        preview = st.preview(diff=True)
        steps = {k: v for k, v in preview.change_summary.items() if k != "same"}
        # Nothing is made, replaced or deleted, and nothing on a machine is run again.
        assert not {"create", "replace", "delete"} & set(steps), (steps, preview.stdout[-6000:])
        updated = [line.strip() for line in preview.stdout.splitlines() if line.strip().startswith("~ ")]
        assert not any("command:remote:Command" in line for line in updated), preview.stdout[-6000:]
        again = st.up()
        assert not {"create", "replace", "delete"} & set(again.summary.resource_changes), again.summary.resource_changes
        assert {n: sorted(i["id"] for i in fakes[n].alive()) for n in rented} == rented
        assert set(fakes["runpod"].endpoints) == endpoints
        assert st.up().summary.resource_changes == {"same": sum(again.summary.resource_changes.values())}

        st.destroy()
        assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}
