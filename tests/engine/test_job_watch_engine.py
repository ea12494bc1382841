"""A job is never rented without a spend watcher to release it, through the real engine on the sandbox's VM
node.

The stack holds a long job (the trainer, then ten minutes asleep; ``max_hours`` 0.0005, 1.8 s) and a Vast.ai
node whose offer search answers only after a while and then fails (loopback Vast.ai faults), so the `up`
fails before the gateway and its spend watcher deploy. Nothing on a job's machine can stop its billing, so
the job's resource depends on the watcher (and on its watch entry): the failed `up` rents nothing for it.
The next `up`, without the broken node, starts the spend watcher, then rents the job's machine; the watcher
reads the job's entry and releases the machine at its cap: nothing bills afterwards.

Skipped where the engine, sshd, Docker or the images are missing, except on the project's CI
(GPU_ESTATE_REQUIRE_VM=1), where that fails.
"""
import json

import pytest
import yaml
from pulumi import automation as auto

import sandbox
from core.jobs import watch_file
from sandbox.s3 import LoopbackS3
from tests.engine import test_jobs_engine as jobs_engine
from tests.engine.test_jobs_engine import (JOB_TYPE, bucket_with_points, job, job_machines, jobs_stack, status,
                                           until)

pytestmark = jobs_engine.pytestmark

WATCH_TYPE = "pulumi-python:dynamic/job:Watch"
WATCHER_TYPE = "pulumi-python:dynamic/spend:LocalWatcher"
BROKEN = {"provider": "vastai", "gpu": {"model": "rtx3090"}, "max_price_per_hour": 0.3, "hours_per_month": 10,
          "workloads": {"ollama": {"models": ["llama3.2:3b"]}}}


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    why = sandbox.engine_missing() or sandbox.vm_missing() or jobs_engine.trainer_missing()
    if why:
        if sandbox.vm_required():
            pytest.fail(f"the VM node must run here: {why}")
        pytest.skip(why)
    work = sandbox.project_copy(tmp_path_factory.mktemp("project"), vm=True)
    with LoopbackS3() as s3, sandbox.fake_clouds(vm=True) as fakes, \
            sandbox.ssh_agent(fakes["machine"].sshd.private_key) as agent:
        bucket_with_points(s3, fakes)
        jobs_stack(work, s3.endpoint, {"long": job(["python3", "/trainer.py", "--epochs", "50", "--sleep", "600"],
                                                   outputs="models/long/1", max_hours=0.0005)})
        path = work / "Pulumi.sandbox.yaml"
        doc = yaml.safe_load(path.read_text())
        doc["config"]["gpu-estate:nodes"]["broken"] = BROKEN
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        st = sandbox.stack(sandbox.engine_env(fakes, tmp_path_factory.mktemp("engine"), agent), work_dir=work)
        for name, value in (("JOBS_S3_KEY", s3.access_key), ("JOBS_S3_SECRET", s3.secret_key),
                            ("TRAINER_TOKEN", "trainer-token-value")):
            st.set_config(f"gpu-estate:{name}", auto.ConfigValue(value=value, secret=True))
        try:
            yield st, fakes, s3, work
        finally:
            st.destroy()


def test_a_failing_up_launches_no_job_and_the_next_rents_it_after_its_watcher(estate):
    st, fakes, s3, work = estate
    # Vast.ai answers the broken node's offer search late, then fails it: the gateway never deploys.
    fakes["vastai"].inject("hang", count=1, seconds=20)
    fakes["vastai"].inject("status", count=200, status=500)
    with pytest.raises(auto.CommandError) as failed:
        st.up()
    assert "broken" in str(failed.value)
    fakes["vastai"].faults.clear()
    entry_path = work / ".estate" / "sandbox" / "gateway" / "jobs" / watch_file("long")

    resources = st.export_stack().deployment["resources"]
    # The gateway and its spend watcher never started: the failure stopped them, and the job with them.
    assert not [r for r in resources if r["type"] == WATCHER_TYPE]
    assert not [r for r in resources if r["type"] == JOB_TYPE]
    assert not job_machines(fakes), "a job's machine was rented with no spend watcher to release it"

    # The next `up`, the broken node gone, starts the watcher, then rents the job's machine; the watcher
    # reads the job's entry and releases the machine at its cap.
    doc = json.loads(st.get_config("gpu-estate:nodes").value)
    doc.pop("broken")
    st.set_config("gpu-estate:nodes", sandbox.auto_config(doc))
    st.up()
    resources = st.export_stack().deployment["resources"]
    (watch,) = [r for r in resources if r["type"] == WATCH_TYPE]
    (watcher,) = [r for r in resources if r["type"] == WATCHER_TYPE]
    (launched,) = [r for r in resources if r["type"] == JOB_TYPE]
    # The job's machine is rented after its entry and after the watcher runs.
    assert {watch["urn"], watcher["urn"]} <= set(launched.get("dependencies", []))
    entry = json.loads(entry_path.read_text())
    assert entry["label"] == "gpu-estate-sandbox-job-long-1" and entry["max_hours"] == 0.0005
    assert entry["key"]["access_key"] == s3.access_key and oct(entry_path.stat().st_mode & 0o777) == "0o600"
    until("the long job's machine released", lambda: not job_machines(fakes), seconds=180)
    assert status(s3, "long").get("state") == "capped"
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}

    # The job leaving the stack takes its entry with it.
    st.set_config("gpu-estate:jobs", sandbox.auto_config({}))
    st.up()
    assert not entry_path.exists()
