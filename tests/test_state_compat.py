"""A stack written by the code before the core-layer redesign is refreshed, updated with no changes and
destroyed by the code after it. Pulumi stores each dynamic provider pickled by its class path
(``providers.gpu_instance.GpuInstanceProvider``, ...), and resources by their URNs: both must still
resolve after modules moved and the gateway became a component of its own."""
import io
import shutil
import subprocess
import tarfile

import pytest

from scripts import sandbox

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
        # stamps) and keep running. The serverless endpoint and the spend watcher the sandbox stack now
        # declares are made too.
        steps = preview.change_summary
        assert steps.get("create") == 3 and steps.get("replace") == 1 and "delete" not in steps, steps
        assert "gpu-estate-sandbox-qwen: secrets changed: this rents a new machine" in preview.stdout
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
        assert sandbox.pulled(fakes) == {"tensordock": [], "vastai": [], "runpod": []}
