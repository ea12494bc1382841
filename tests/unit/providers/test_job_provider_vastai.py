"""The job provider on Vast.ai, driven directly against the loopback Vast.ai (whose job instances are real
containers of the job's image reached over a real sshd, ``loopback/container_machine.py``) and moto's real S3
server: the machine is the job's image with nothing of ours in the vendor's env, start script or user-data;
the runner runs inside it and uploads the command's outputs and its final status; a spot job bids as a node
does and is priced at what the machine bills; an image without python3 is refused by the start, saying so;
a machine stopped under its job (outbid) is shown preempted and kept until it is gone; a create that cannot
start the job deletes the bid instance it rented. Skipped without Docker, sshd or the sandbox image, except on the project's CI (GPU_ESTATE_REQUIRE_VM=1)."""
import json
import subprocess
import time

import pytest

import sandbox
from core.pricing import NodeRequest
from loopback import machine as loopback_machine
from loopback import sshd as loopback_sshd
from loopback.container_machine import ContainerMachines
from providers import gpu_cloud
from providers.gpu_instance import LaunchInputs
from providers.http import CloudError
from providers import job as job_provider
from providers.job import NO_PYTHON, OLD_PYTHON, PROVIDER_VERSION, JobArgs, JobProvider, container_start_script, judge
from providers.placement import Placement

IMAGE = loopback_machine.IMAGE  # the sandbox's Debian Python image: sh and python3, no coreutils
WRITE = ("import os; open(os.environ['ESTATE_JOB_OUTPUTS'] + '/out.txt', 'w').write(os.environ['TOKEN'][::-1] + "
         "os.environ['LR']); print('wrote', os.getcwd())")


@pytest.fixture(scope="module")
def operator(tmp_path_factory):
    """The operator's SSH key pair: its public half is the job's ``ssh.public_key``, attached to the instance."""
    path = tmp_path_factory.mktemp("operator") / "id"
    loopback_sshd.keygen(path)
    return type("Key", (), {"private_key": path.read_text(), "public_key": path.with_suffix(".pub").read_text().strip()})()


@pytest.fixture
def machines(clouds, monkeypatch):
    why = loopback_machine.missing()
    if why:
        if sandbox.vm_required():
            pytest.fail(why)
        pytest.skip(why)
    held = ContainerMachines(lambda inst: "-job-" in str(inst.get("label")))
    held.attach(clouds["vastai"])
    monkeypatch.setenv("ESTATE_POLL_SECONDS", "0.1")
    monkeypatch.setenv("ESTATE_READY_TIMEOUT_SECONDS", "30")
    try:
        yield held
    finally:
        held.close()


def props(s3, key, image=IMAGE, command=("python3", "-c", WRITE), run="1", spot=False, resume=False):
    label = f"gpu-estate-test-job-vast-{run}"
    doc = {"label": label, "run": run, "image": image, "command": list(command), "env": {"LR": "0.5 $HOME"},
           "bucket": "models", "endpoint": s3.endpoint, "region": "us-east-1", "inputs": [], "outputs": f"out/{run}",
           "resume": resume, "status_prefix": f"estate-jobs/{label}", "sync_seconds": 600, "gpus": True}
    args = JobArgs(name="vast", label=label, run=run, clouds=["vastai"],
                   request=NodeRequest(gpu_model="rtx4090", min_vram_gb=24, spot=spot),
                   launch=LaunchInputs(image="ubuntu2404", disk_gb=20, ssh_public_key=key.public_key, vcpu=4, ram_gb=16,
                                       cloud_init="#cloud-config\n"),
                   document=doc, caps={"max_hours": 1.0, "max_usd": 1.0}, ssh={"user": "root", "port": 22},
                   secrets={"s3": {"access_key": s3.access_key, "secret_key": s3.secret_key},
                            "env": {"TOKEN": "s3cr3t-token"}, "ssh_private_key": key.private_key},
                   host_key={"private": "not-this-machines-key", "public": "ssh-ed25519 AAAAnotthis"},
                   bid_per_hour=0.25 if spot else None)
    return {**args.to_props(), "version": PROVIDER_VERSION}


def status(s3, label):
    try:
        return json.loads(s3.client().get_object(Bucket="models", Key=f"estate-jobs/{label}/status.json")["Body"].read())
    except s3.client().exceptions.NoSuchKey:
        return {}


def until(check, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not so in time"
        time.sleep(0.3)
    return check()


def test_a_spot_job_runs_inside_its_image_on_vastai(clouds, s3, machines, operator):
    created = JobProvider(placement=Placement()).create(props(s3, operator, spot=True))
    cloud, iid = created.id.split(":")
    assert cloud == "vastai"
    (inst,) = clouds["vastai"].alive()
    # The machine is the job's image; the vendor got no env, start script or user-data of ours, no secret.
    assert (inst["image"], inst["onstart"], inst["env"]) == (IMAGE, "", {})
    assert inst["bid"] == 0.25 and created.outs["price_per_hour"] == inst["dph_total"]
    assert inst["ssh_keys"] == [operator.public_key]  # attached, as `vastai attach ssh` does: SSH lets it in
    assert "s3cr3t-token" not in json.dumps(clouds["vastai"].requests) and s3.secret_key not in json.dumps(
        clouds["vastai"].requests)
    final = until(lambda: status(s3, inst["label"]).get("state") in ("succeeded", "failed") and status(s3, inst["label"]))
    assert (final["state"], final["exit_code"], final["instance"]) == ("succeeded", 0, created.id), final
    out = s3.client().get_object(Bucket="models", Key="out/1/out.txt")["Body"].read()
    assert out == b"nekot-t3rc3s0.5 $HOME"  # the secret env and the env reached the command as data
    # The runner ran inside the container: its job directory is there, and not on this machine.
    assert machines.containers()
    read = JobProvider().read(created.id, created.outs)
    assert read.outs["state"] == "succeeded"
    JobProvider().delete(created.id, read.outs)
    assert clouds["vastai"].alive() == [] and not machines.containers()


def test_an_image_without_python3_is_refused_by_the_start_naming_it(tmp_path):
    """The start as a container machine runs it, in a shell that finds no python3: it says why and exits with
    the status the provider fails the create on (deleting the machine: see the create's own test)."""
    run = subprocess.run(["/bin/sh", "-c", container_start_script("gpu-estate-test-job-vast-1")],
                         env={"PATH": str(tmp_path)}, capture_output=True, text=True, timeout=10)
    assert run.returncode == NO_PYTHON and "the job image has no python3" in run.stderr


def test_a_machine_stopped_under_its_job_is_preempted_and_kept_until_gone(clouds, s3, machines, operator):
    p = props(s3, operator, command=("python3", "-c", "import time; time.sleep(600)"), run="2", spot=True)
    created = JobProvider(placement=Placement()).create(p)
    label = p["label"]
    until(lambda: status(s3, label).get("state") == "running")
    (inst,) = clouds["vastai"].alive()
    clouds["vastai"].outbid(inst["id"], 0.5)  # someone bids more: the machine stops under the job
    read = JobProvider().read(created.id, {**created.outs, "document": {**p["document"], "resume": True}})
    # Stopped, it still bills its disk: kept in state (shown preempted) even with resume, for the agent to delete.
    assert (read.id, read.outs["state"], read.outs["machine_status"]) == (created.id, "preempted", "stopped")
    JobProvider().delete(created.id, read.outs)
    assert clouds["vastai"].alive() == [] and not machines.containers()
    # Gone, a resume job is reported gone: the next `up` rents again.
    assert JobProvider().read(created.id, {**read.outs, "document": {**p["document"], "resume": True}}).id == ""


def test_a_status_another_machine_of_the_run_wrote_is_not_this_ones():
    running = type("I", (), {"status": gpu_cloud.Status.RUNNING})()
    old = {"state": "preempted", "instance": "vastai:1", "finished_at": 5.0}
    assert judge(old, running, 0.0, 10.0, 3.6, machine="vastai:2")["state"] == "starting"
    assert judge(old, running, 0.0, 10.0, 3.6, machine="vastai:1")["state"] == "preempted"


def test_a_vastai_create_that_cannot_start_the_job_deletes_the_machine_it_rented(clouds, s3, monkeypatch):
    """The instance's SSH never answers (no container machine stands behind it): the create fails and the bid
    instance it rented is deleted, verified, before it raises: nothing bills outside the state."""
    monkeypatch.setenv("ESTATE_READY_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("ESTATE_POLL_SECONDS", "0.1")
    no_machine = type("Key", (), {"private_key": "not-a-key", "public_key": "ssh-ed25519 AAAAnot ops@estate"})()
    with pytest.raises(CloudError, match="could not be started over SSH"):
        JobProvider(placement=Placement()).create(props(s3, no_machine, spot=True))
    assert clouds["vastai"].alive() == []
    assert [r[0] for r in clouds["vastai"].requests].count("DELETE") == 1


def test_a_python3_too_old_for_the_runner_is_refused_by_the_start_naming_its_version(tmp_path):
    fake = tmp_path / "python3"  # a python3 that is 3.6: it fails the version check and names itself
    fake.write_text("#!/bin/sh\nif [ \"$1\" = -V ]; then echo 'Python 3.6.9'; exit 0; fi\nexit 1\n")
    fake.chmod(0o755)
    run = subprocess.run(["/bin/sh", "-c", container_start_script("gpu-estate-test-job-vast-1")],
                         env={"PATH": str(tmp_path)}, capture_output=True, text=True, timeout=10)
    assert run.returncode == OLD_PYTHON and "Python 3.6.9, older than 3.7" in run.stderr


def test_a_runner_that_cannot_write_its_first_status_fails_the_create_which_deletes_the_machine(
        clouds, s3, machines, operator, monkeypatch):
    """The runner starts but its bucket does not answer: the start waits for its first status, stops it, prints
    the end of its log and exits NOT_STARTED; the create fails at once (no retry until the ready timeout) and
    deletes the machine rather than leave it billing until a cap."""
    monkeypatch.setattr(job_provider, "START_CONFIRM_SECONDS", 3.0)
    p = props(s3, operator, run="9")
    p["document"] = {**p["document"], "endpoint": "http://127.0.0.1:9"}  # nothing listens: every write fails
    started = time.monotonic()
    with pytest.raises(CloudError, match="the runner did not start: it wrote no status in 3 s") as err:
        JobProvider(placement=Placement()).create(p)
    assert time.monotonic() - started < 25  # failed at the first start, not retried until the ready timeout
    assert "estate-job" in str(err.value)  # the end of the runner's log
    assert clouds["vastai"].alive() == [] and not machines.containers()
