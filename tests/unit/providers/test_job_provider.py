"""The job provider driven directly against the loopback TensorDock and moto's real S3 server: a create that
cannot start the job deletes the machine it rented before failing; delete of a running job deletes its
machine and verifies it; refresh reads the state from the status object and the vendor, keeps a finished
job, reports a lost one as preempted or, with resume, gone; only a new run id replaces a job."""
import json
import time

import pytest

from core.pricing import NodeRequest
from providers import gpu_cloud
from providers.gpu_cloud import LaunchSpec, Status
from providers.gpu_instance import LaunchInputs
from providers.http import CloudError
from providers.job import PROVIDER_VERSION, JobArgs, JobProvider, judge, runner_document
from providers.placement import Placement
from providers.ssh_forward import free_port

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFXdBfpWUE7y0nZ8rsibV0rc/1JxweHTokQjkgvrZxWD ops@estate"


def props(s3, run="1", resume=False, **caps):
    label = f"gpu-estate-test-job-train-{run}"
    doc = {"label": label, "run": run, "image": "x/y:1", "command": ["true"], "env": {}, "bucket": "models",
           "endpoint": s3.endpoint, "region": "us-east-1", "inputs": [], "outputs": "out", "resume": resume,
           "status_prefix": f"estate-jobs/{label}", "sync_seconds": 600, "gpus": False}
    args = JobArgs(name="train", label=label, run=run, clouds=["tensordock"],
                   request=NodeRequest(gpu_model="rtx4090", min_vram_gb=24),
                   launch=LaunchInputs(image="ubuntu2404", disk_gb=100, ssh_public_key=KEY, vcpu=4, ram_gb=16),
                   document=doc, caps={"max_hours": 1.0, "max_usd": 1.0, **caps}, ssh={"user": "root", "port": 22},
                   secrets={"s3": {"access_key": s3.access_key, "secret_key": s3.secret_key},
                            "ssh_private_key": "not-a-key"})
    return {**args.to_props(), "version": PROVIDER_VERSION}


def test_check_refuses_a_job_without_caps(s3):
    failures = JobProvider().check({}, props(s3, max_hours=0)).failures
    assert [f.property for f in failures] == ["caps.max_hours"]


def test_only_a_new_run_id_replaces_a_job(s3):
    p = JobProvider()
    assert p.diff("tensordock:1", props(s3), props(s3, run="2")).replaces == ["run"]
    capped = p.diff("tensordock:1", props(s3), props(s3, max_usd=2.0))
    assert capped.changes and capped.replaces == []


def test_a_create_that_cannot_start_the_job_deletes_the_machine_it_rented(clouds, s3, monkeypatch):
    monkeypatch.setenv("ESTATE_READY_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("ESTATE_POLL_SECONDS", "0.1")
    clouds["tensordock"].port_map[22] = free_port()  # the machine's SSH never answers
    with pytest.raises(CloudError, match="could not be started over SSH"):
        JobProvider(placement=Placement()).create(props(s3))
    assert clouds["tensordock"].alive() == []  # rented, then deleted: nothing bills outside the state
    assert [r[0] for r in clouds["tensordock"].requests].count("DELETE") == 1


def rent(label):
    with gpu_cloud.client("tensordock") as c:
        offer = c.offers(NodeRequest(gpu_model="rtx4090"))[0]
        return "tensordock:" + c.launch(offer, LaunchSpec(label=label, image="ubuntu2404", disk_gb=50,
                                                           ssh_public_key=KEY))


def test_refresh_reads_the_state_and_delete_stops_a_running_job(clouds, s3):
    p = JobProvider(placement=Placement())
    machine = rent("gpu-estate-test-job-train-1")
    outs = {**props(s3), "created_at": 1000.0, "price_per_hour": 0.4, "state": "starting"}
    s3.client().put_object(Bucket="models", Key="estate-jobs/gpu-estate-test-job-train-1/status.json",
                           Body=json.dumps({"state": "running", "started_at": 1001.0}).encode())
    read = p.read(machine, outs)
    assert read.id == machine and read.outs["state"] == "running" and read.outs["duration_s"] > 0
    p.delete(machine, read.outs)
    assert clouds["tensordock"].alive() == []  # verified gone before delete returned
    # Its machine gone before the job finished: a preemption, reported (kept in state) or, with resume, gone.
    lost = p.read(machine, read.outs)
    assert lost.id == machine and lost.outs["state"] == "preempted"
    # Its end is the refresh that first saw it gone: later refreshes do not make it last (and cost) longer.
    time.sleep(0.2)
    again = p.read(machine, lost.outs)
    assert again.outs["finished_at"] == lost.outs["finished_at"]
    assert (again.outs["duration_s"], again.outs["cost_usd"]) == (lost.outs["duration_s"], lost.outs["cost_usd"])
    assert p.read(machine, {**read.outs, "document": {**read.outs["document"], "resume": True}}).id == ""
    # A finished job stays in state with its result after its machine was released: `up` does not run it again.
    s3.client().put_object(Bucket="models", Key="estate-jobs/gpu-estate-test-job-train-1/status.json",
                           Body=json.dumps({"state": "succeeded", "exit_code": 0, "started_at": 1001.0,
                                            "finished_at": 1001.0 + 1800}).encode())
    done = p.read(machine, read.outs)
    assert (done.id, done.outs["state"], done.outs["exit_code"]) == (machine, "succeeded", 0)
    assert (done.outs["duration_s"], done.outs["cost_usd"]) == (1801.0, pytest.approx(0.2001, abs=1e-4))


def test_a_bucket_that_cannot_be_read_keeps_what_the_state_knew(clouds, s3):
    machine = rent("gpu-estate-test-job-train-1")
    outs = {**props(s3), "created_at": 1000.0, "price_per_hour": 0.4, "state": "running"}
    outs["secrets"] = {**outs["secrets"], "s3": {"access_key": "x", "secret_key": "y"}}
    outs["document"] = {**outs["document"], "bucket": "no-such-bucket"}
    read = JobProvider().read(machine, outs)
    assert read.id == machine and read.outs["state"] == "running"


def test_judge_names_the_states():
    running = type("I", (), {"status": Status.RUNNING})()
    assert judge(None, running, 0.0, 10.0, 3.6)["state"] == "starting"
    assert judge({"state": "capped", "capped_at": 5.0}, None, 0.0, 10.0, 3.6)["cost_usd"] == 0.005
    lost = judge({"state": "running"}, None, 0.0, 100.0, 3.6, known_finished=40.0)
    assert (lost["state"], lost["finished_at"], lost["cost_usd"]) == ("preempted", 40.0, 0.04)


def test_the_runner_gets_the_jobs_max_hours_to_hold_on_the_machine(s3):
    p = props(s3)
    doc = runner_document(p)
    assert doc["max_hours"] == p["caps"]["max_hours"] > 0
    assert "max_hours" not in p["document"]  # the state's document is unchanged


def test_refresh_reports_a_lost_runner_on_a_running_machine_as_preempted(clouds, s3):
    """The runner died with its machine up (a host reboot; a Vast.ai bid paused and resumed): its heartbeat is
    hours old. Refresh shows the job ``preempted`` naming why, as the job agent counts it; with ``resume``
    it stays in state while its machine is listed (the agent deletes it) and is gone once the machine is, so
    the next `up` rents again. A recent heartbeat is a running job."""
    p = JobProvider(placement=Placement())
    machine = rent("gpu-estate-test-job-train-1")
    now = time.time()
    outs = {**props(s3), "created_at": now - 5 * 3600, "price_per_hour": 0.4, "state": "running", "id": machine}
    outs["document"] = {**outs["document"], "heartbeat_seconds": 60.0}
    key = "estate-jobs/gpu-estate-test-job-train-1/status.json"
    s3.client().put_object(Bucket="models", Key=key, Body=json.dumps(
        {"state": "running", "started_at": now - 5 * 3600, "updated_at": now - 60, "instance": machine}).encode())
    assert p.read(machine, outs).outs["state"] == "running"
    s3.client().put_object(Bucket="models", Key=key, Body=json.dumps(
        {"state": "running", "started_at": now - 5 * 3600, "updated_at": now - 4 * 3600, "instance": machine}).encode())
    lost = p.read(machine, outs)
    assert lost.id == machine and lost.outs["state"] == "preempted"
    assert "stopped answering" in lost.outs["reason"] and machine in lost.outs["reason"]
    resumed = {**outs, "document": {**outs["document"], "resume": True}}
    assert p.read(machine, resumed).id == machine  # still listed: it bills until deleted, so it stays in state
    p.delete(machine, lost.outs)
    assert p.read(machine, resumed).id == ""


def test_the_start_reports_a_runner_that_dies_at_once_with_the_end_of_its_log(tmp_path):
    """``estate_start.py`` as a machine runs it (here, on this machine, with an empty bundle): a runner that exits
    before its first status (its job document missing) is reported with its exit and its log's end, and the
    start exits NOT_STARTED, which the create fails on."""
    import shutil
    import subprocess
    import sys
    from providers.job import CONTAINER_START, NOT_STARTED, RUNNER
    shutil.copy(RUNNER, tmp_path / "estate_job.py")
    run = subprocess.run([sys.executable, str(CONTAINER_START), str(tmp_path), "10"], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == NOT_STARTED
    assert "the runner did not start: it exited with status 1" in run.stderr and "job.json" in run.stderr


def test_a_resumed_run_whose_caps_ran_out_meanwhile_is_capped_without_renting(clouds, s3):
    """Preempted at hour 1 of max_hours 4, and the next `up` 5 h later: the caps count from the run's watch entry
    (``caps_from``), so refresh shows the job ``capped`` instead of dropping it for a resume, and a create (an
    `up` whose refresh had dropped it earlier) rents nothing and reports ``capped``."""
    p = JobProvider(placement=Placement())
    began = time.time() - 5 * 3600
    given = {**props(s3, resume=True, max_hours=4.0, max_usd=100.0), "caps_from": began}
    created = p.create(given)
    assert created.outs["state"] == "capped" and "max_hours 4 reached" in created.outs["reason"]
    assert clouds["tensordock"].alive() == [] and "POST" not in [r[0] for r in clouds["tensordock"].requests]
    assert p.read(created.id, created.outs).outs["state"] == "capped"
    p.delete(created.id, created.outs)  # nothing was rented: nothing to delete
    # The refresh that sees the first machine gone keeps the job, capped, rather than leave it for a resume.
    machine = rent("gpu-estate-test-job-train-1")
    outs = {**given, "created_at": began, "price_per_hour": 0.4, "state": "running"}
    s3.client().put_object(Bucket="models", Key="estate-jobs/gpu-estate-test-job-train-1/status.json",
                           Body=json.dumps({"state": "preempted", "started_at": began, "instance": machine,
                                            "finished_at": began + 3600}).encode())
    p.delete(machine, outs)
    read = p.read(machine, outs)
    assert (read.id, read.outs["state"]) == (machine, "capped") and "max_hours 4 reached" in read.outs["reason"]
    # Within its caps the same refresh leaves it for the next `up` to resume.
    assert p.read(machine, {**outs, "caps_from": time.time() - 1800}).id == ""
