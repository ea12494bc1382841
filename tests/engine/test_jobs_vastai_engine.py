"""GPU jobs on Vast.ai through the real engine: seed 003's budget training job, an interruptible bid for an RTX
4090 under a dollar cap. The loopback Vast.ai rents each job machine as a real container of the job's image on
this machine, reached over a real OpenSSH server whose sessions run inside it (``loopback/container_machine.py``);
the bucket is moto's real S3 server on loopback (``storage.<name>.endpoint``).

- `up` rents the machine on a bid, delivers the runner over SSH into the container and returns; the runner
  trains the tiny CPU model (scripts/build-trainer-image.sh) inside the image and uploads its outputs, log and
  status; the spend watcher beside the local gateway reads the status and deletes the machine; `refresh` shows
  ``succeeded`` with its duration and cost at the price the machine billed; `up` again runs nothing.
- A job outliving ``max_hours`` (0.0005 h, 1.8 s) is deleted at its cap by the watcher and shows ``capped``.
- A spot job outbid mid-run (its machine stopped under it) with ``on_preemption: resume`` is reported
  ``preempted`` and deleted by the watcher; `refresh` drops it; the next `up` rents again (another offer: the
  outbid machine now asks above the job's price cap) and the trainer resumes from its last checkpoint.
- A job whose instance Vast.ai takes back outright, with ``on_preemption: report`` (the default), is shown
  ``preempted`` by `refresh` and not run again.
- `destroy` of a running job deletes its machine: no instance and no container is left.

Skipped where the engine, sshd, Docker or the images are missing, except on the project's CI
(GPU_ESTATE_REQUIRE_VM=1), where that fails.
"""
import json
import subprocess
import time

import pytest
import yaml
from pulumi import automation as auto

import sandbox
from loopback import machine as loopback_machine
from loopback import sshd as loopback_sshd
from sandbox.s3 import LoopbackS3

pytestmark = [
    pytest.mark.engine,
    pytest.mark.money,
    pytest.mark.skipif(bool(sandbox.engine_missing()) and not sandbox.vm_required(), reason=sandbox.engine_missing()),
]

JOB_TYPE = "pulumi-python:dynamic/job:Job"
TRAINER = "gpu-estate/sandbox-trainer:1"
BUCKET = "models"


def missing() -> str:
    why = sandbox.engine_missing() or loopback_machine.missing()
    if why:
        return why
    found = subprocess.run(["docker", "image", "inspect", TRAINER], capture_output=True)
    return "" if found.returncode == 0 else f"no image {TRAINER} (scripts/build-trainer-image.sh)"


OPERATOR = {}
"""The operator's SSH key pair (made by the fixture): the public half is the job's ``ssh.public_key``, which the
program attaches to the instance; the private half is what SSH connects with (``ESTATE_SSH_PRIVATE_KEY``)."""


def job(command, **more):
    """Seed 003's job: Vast.ai, an interruptible bid for an RTX 4090, at most $0.80."""
    return {"provider": "vastai", "market": "spot", "bid_per_hour": 0.25, "gpu": {"model": "rtx4090"},
            "max_price_per_hour": 0.4, "ssh": {"public_key": OPERATOR["public"]}, "image": TRAINER, "command": command,
            "env": {"LR": "0.02"}, "secret_env": ["TRAINER_TOKEN"], "bucket": BUCKET, "inputs": ["datasets/line/"],
            "max_usd": 0.8, **more}


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    why = missing()
    if why:
        if sandbox.vm_required():
            pytest.fail(f"the Vast.ai job machines must run here: {why}")
        pytest.skip(why)
    work = sandbox.project_copy(tmp_path_factory.mktemp("project"))
    key = tmp_path_factory.mktemp("operator") / "id"
    loopback_sshd.keygen(key)
    OPERATOR.update(private=key.read_text(), public=key.with_suffix(".pub").read_text().strip())
    with LoopbackS3() as s3, sandbox.fake_clouds() as fakes, sandbox.ssh_agent(OPERATOR["private"]) as agent:
        s3.create_bucket(BUCKET)
        s3.client().put_object(Bucket=BUCKET, Key="datasets/line/points.txt",
                               Body="".join(f"{x} {2 * x + 1}\n" for x in range(-5, 6)).encode())
        path = work / "Pulumi.sandbox.yaml"
        doc = yaml.safe_load(path.read_text())
        cfg = doc["config"]
        doc["config"] = {
            "gpu-estate:nodes": {"gw": cfg["gpu-estate:nodes"]["gw"]},
            "gpu-estate:gateway": {"node": "gw", "deploy": "local", "port": 0, "aliases": {}},
            "gpu-estate:budget": cfg["gpu-estate:budget"], "gpu-estate:spend": cfg["gpu-estate:spend"],
            "gpu-estate:storage": {BUCKET: {"provider": "s3", "location": "us-east-1", "endpoint": s3.endpoint,
                                            "access_key_secret": "JOBS_S3_KEY", "secret_key_secret": "JOBS_S3_SECRET"}},
            "gpu-estate:jobs": {"train": job(["python3", "/trainer.py", "--epochs", "200"], outputs="models/line/1",
                                             max_hours=8)},
        }
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        state_dir = tmp_path_factory.mktemp("engine")
        st = sandbox.stack(sandbox.engine_env(fakes, state_dir, agent), work_dir=work)
        for name, value in (("JOBS_S3_KEY", s3.access_key), ("JOBS_S3_SECRET", s3.secret_key),
                            ("TRAINER_TOKEN", "trainer-token-value")):
            st.set_config(f"gpu-estate:{name}", auto.ConfigValue(value=value, secret=True))
        try:
            yield st, fakes, s3
        finally:
            st.destroy()


def jobs_in_state(st) -> dict:
    return {r["outputs"]["name"]: r["outputs"] for r in st.export_stack().deployment["resources"]
            if r["type"] == JOB_TYPE}


def status(s3, name: str, run: str = "1") -> dict:
    try:
        body = s3.client().get_object(Bucket=BUCKET, Key=f"estate-jobs/gpu-estate-sandbox-job-{name}-{run}/status.json")
    except s3.client().exceptions.NoSuchKey:
        return {}
    return json.loads(body["Body"].read())


def machines(fakes) -> list:
    return [i for i in fakes["vastai"].alive() if "-job-" in str(i["label"])]


def until(what: str, check, seconds: float = 120.0):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not so after {seconds:.0f}s"
        time.sleep(0.5)


def set_jobs(st, change) -> None:
    jobs = json.loads(st.get_config("gpu-estate:jobs").value)
    change(jobs)
    st.set_config("gpu-estate:jobs", sandbox.auto_config(jobs))


def test_a_spot_job_trains_inside_its_image_and_its_machine_is_released(estate):
    st, fakes, s3 = estate
    st.up()
    started = jobs_in_state(st)["train"]
    assert started["cloud"] == "vastai" and started["state"] == "starting"
    (create,) = [body for method, path, body in fakes["vastai"].requests if method == "PUT" and "/asks/" in path]
    # Rented on a bid, as the job's own image, with nothing of ours in the vendor's env or start script.
    assert (create["price"], create["image"], create["onstart"], create["env"]) == (0.25, TRAINER, "", {})
    assert 0.25 < started["price_per_hour"] < 0.4  # what the machine bills: the bid and its disk
    final = until("the train job's final status", lambda: status(s3, "train").get("state") in ("succeeded", "failed")
                  and status(s3, "train"))
    assert (final["state"], final["exit_code"]) == ("succeeded", 0), final
    assert final["instance"] == f"vastai:{started['instance_id']}"
    until("the train job's machine released", lambda: not machines(fakes))
    until("its container gone", lambda: not fakes["containers"].containers(), seconds=30)
    model = json.loads(s3.client().get_object(Bucket=BUCKET, Key="models/line/1/model.json")["Body"].read())
    assert model["samples"] == 11 and abs(model["a"] - 2) < 0.1 and abs(model["b"] - 1) < 0.5
    log = s3.client().get_object(Bucket=BUCKET, Key="estate-jobs/gpu-estate-sandbox-job-train-1/log.txt")["Body"].read()
    assert b"trained on 11 samples" in log
    assert "trainer-token-value" not in sandbox.sent_to_vendors(fakes)
    assert s3.secret_key not in sandbox.sent_to_vendors(fakes)

    st.refresh()
    seen = jobs_in_state(st)["train"]
    assert (seen["state"], seen["exit_code"], seen["machine_status"]) == ("succeeded", 0, "gone")
    assert seen["duration_s"] > 0
    assert seen["cost_usd"] == pytest.approx(seen["duration_s"] / 3600 * seen["price_per_hour"], abs=1e-4)
    creates = len([r for r in fakes["vastai"].requests if r[0] == "PUT" and "/asks/" in r[1]])
    assert set(st.up().summary.resource_changes) == {"same"}
    assert len([r for r in fakes["vastai"].requests if r[0] == "PUT" and "/asks/" in r[1]]) == creates


def test_a_job_past_max_hours_is_capped_and_released(estate):
    st, fakes, s3 = estate
    set_jobs(st, lambda jobs: jobs.update(long=job(["python3", "/trainer.py", "--epochs", "50", "--sleep", "600"],
                                                   outputs="models/long/1", max_hours=0.0005)))
    st.up()
    final = until("the long job capped", lambda: status(s3, "long").get("state") == "capped" and status(s3, "long"))
    assert "max_hours 0.0005 reached" in final["reason"]
    until("the long job's machine released", lambda: not machines(fakes))
    until("its container gone", lambda: not fakes["containers"].containers(), seconds=30)
    st.refresh()
    assert jobs_in_state(st)["long"]["state"] == "capped"
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}


def test_a_job_whose_instance_vastai_takes_back_is_reported_preempted(estate):
    st, fakes, s3 = estate
    set_jobs(st, lambda jobs: jobs.update(lost=job(["python3", "/trainer.py", "--epochs", "50", "--sleep", "600"],
                                                   outputs="models/lost/1", max_hours=1)))
    st.up()
    until("the lost job running", lambda: status(s3, "lost").get("state") == "running")
    (machine,) = machines(fakes)
    fakes["vastai"].preempt(machine["id"])  # taken back outright: no longer listed, its container gone
    st.refresh()
    seen = jobs_in_state(st)["lost"]  # `report`: kept in state, shown preempted, its cost stopped at the loss
    assert (seen["state"], seen["machine_status"]) == ("preempted", "gone") and seen["finished_at"]
    assert set(st.up().summary.resource_changes) == {"same"}  # not run again until its run id changes
    assert not machines(fakes) and not fakes["containers"].containers()


def test_an_outbid_job_resumes_from_its_last_checkpoint_and_destroy_leaves_nothing(estate):
    st, fakes, s3 = estate
    set_jobs(st, lambda jobs: jobs.update(spot=job(["python3", "/trainer.py", "--epochs", "150", "--pace", "0.1"],
                                                   outputs="models/spot/1", max_hours=1, on_preemption="resume",
                                                   sync_minutes=0.01)))
    st.up()
    until("the spot job's first checkpoint", lambda: "Contents" in s3.client().list_objects_v2(
        Bucket=BUCKET, Prefix="models/spot/1/checkpoints/epoch-50.json"))
    (first,) = machines(fakes)
    fakes["vastai"].outbid(first["id"], 0.5)  # someone bids more: the machine stops under the job
    lost = until("the outbid job reported", lambda: status(s3, "spot").get("state") == "preempted" and status(s3, "spot"))
    assert lost["instance"] == f"vastai:{first['id']}"
    until("the outbid machine deleted", lambda: not machines(fakes))
    st.refresh()
    assert "spot" not in jobs_in_state(st)  # gone, so the next `up` runs it again
    st.up()
    (second,) = machines(fakes)
    assert second["offer_id"] != first["offer_id"]  # the outbid machine now asks above the price cap
    final = until("the resumed spot job finished", lambda: status(s3, "spot").get("state") in ("succeeded", "failed")
                  and status(s3, "spot"))
    assert final["state"] == "succeeded", final
    log = s3.client().get_object(Bucket=BUCKET, Key="estate-jobs/gpu-estate-sandbox-job-spot-1/log.txt")["Body"].read()
    assert b"resumed at epoch" in log
    until("the spot job's machine released", lambda: not machines(fakes))

    # A running job's destroy deletes its machine: nothing bills, no container is left.
    set_jobs(st, lambda jobs: jobs["long"].update(run="2", max_hours=1))
    st.up()
    until("the long job's second run running", lambda: status(s3, "long", "2").get("state") == "running")
    assert len(machines(fakes)) == 1
    st.destroy()
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}
    assert not fakes["containers"].containers()
