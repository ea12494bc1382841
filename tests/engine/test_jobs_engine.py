"""GPU jobs through the real engine on the sandbox's VM node: a TensorDock machine (loopback TensorDock) whose
SSH is a real OpenSSH server on this machine and whose Docker is this machine's. The bucket is moto's real S3
server on loopback, used by the estate as an existing bucket (``storage.<name>.endpoint``).

- `up` rents the job's machine, starts its runner over SSH and returns without waiting for the job; the
  runner trains a tiny CPU model in a locally built image (scripts/build-trainer-image.sh) and uploads its
  outputs, log and status; the spend watcher beside the local gateway reads the status and deletes the
  machine; `refresh` shows ``succeeded`` with its duration and cost; `up` again runs nothing.
- A second job outliving ``max_hours`` (0.0005 h, 1.8 s: the cap is a stack key, no test knob) is deleted at
  its cap by the watcher and shows ``capped``; its container is gone.
- A job whose machine is lost mid-run (a preemption: the vendor deletes it) with ``on_preemption: resume``
  is reported gone by `refresh`; the next `up` rents again and the trainer resumes from the checkpoint the
  runner had uploaded.
- A new ``run`` id replaces the job, and the preview says the key; `destroy` of a running job deletes its
  machine; afterwards the loopback clouds hold no instance.

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
from providers import gpu_cloud
from sandbox.s3 import LoopbackS3

pytestmark = [
    pytest.mark.engine,
    pytest.mark.money,
    pytest.mark.skipif(bool(sandbox.engine_missing()) and not sandbox.vm_required(), reason=sandbox.engine_missing()),
]

JOB_TYPE = "pulumi-python:dynamic/job:Job"
TRAINER = "gpu-estate/sandbox-trainer:1"
BUCKET = "models"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXNhbmRib3hrZXk= sandbox@gpu-estate"


def trainer_missing() -> str:
    found = subprocess.run(["docker", "image", "inspect", TRAINER], capture_output=True)
    return "" if found.returncode == 0 else f"no image {TRAINER} (scripts/build-trainer-image.sh)"


def job(command, **more):
    return {"provider": "tensordock", "gpu": {"model": "rtx4090"}, "max_price_per_hour": 0.4,
            "ssh": {"public_key": KEY}, "image": TRAINER, "command": command, "env": {"LR": "0.02"},
            "secret_env": ["TRAINER_TOKEN"], "bucket": BUCKET, "inputs": ["datasets/line/"], "gpus": False,
            "max_usd": 0.5, **more}


def jobs_stack(work, endpoint: str, jobs: dict) -> dict:
    """The project copy's sandbox stack reduced to the local gateway, its spend watcher, the bucket and ``jobs``;
    returns the config it replaced."""
    path = work / "Pulumi.sandbox.yaml"
    doc = yaml.safe_load(path.read_text())
    cfg = doc["config"]
    doc["config"] = {
        "gpu-estate:nodes": {"gw": cfg["gpu-estate:nodes"]["gw"]},
        "gpu-estate:gateway": {"node": "gw", "deploy": "local", "port": 0, "aliases": {}},
        "gpu-estate:budget": cfg["gpu-estate:budget"], "gpu-estate:spend": cfg["gpu-estate:spend"],
        "gpu-estate:storage": {BUCKET: {"provider": "s3", "location": "us-east-1", "endpoint": endpoint,
                                        "access_key_secret": "JOBS_S3_KEY", "secret_key_secret": "JOBS_S3_SECRET"}},
        "gpu-estate:jobs": jobs,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg


def bucket_with_points(s3, fakes) -> None:
    """The bucket with the trainer's data (eleven points of y = 2x + 1), and a TensorDock host for job machines
    (the loopback TensorDock gives a host's GPUs back on no delete)."""
    s3.create_bucket(BUCKET)
    td = fakes["tensordock"]
    td.hostnodes.append(td.hostnode("hn-muc-1", "Munich", "Germany", "geforcertx4090-pcie-24gb", 0.38, 8))
    s3.client().put_object(Bucket=BUCKET, Key="datasets/line/points.txt",
                           Body="".join(f"{x} {2 * x + 1}\n" for x in range(-5, 6)).encode())


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    why = sandbox.engine_missing() or sandbox.vm_missing() or trainer_missing()
    if why:
        if sandbox.vm_required():
            pytest.fail(f"the VM node must run here: {why}")
        pytest.skip(why)
    work = sandbox.project_copy(tmp_path_factory.mktemp("project"), vm=True)
    with LoopbackS3() as s3, sandbox.fake_clouds(vm=True) as fakes, \
            sandbox.ssh_agent(fakes["machine"].sshd.private_key) as agent:
        bucket_with_points(s3, fakes)
        jobs_stack(work, s3.endpoint, {"train": job(["python3", "/trainer.py", "--epochs", "200"],
                                                    outputs="models/line/1", max_hours=1)})
        state_dir = tmp_path_factory.mktemp("engine")
        st = sandbox.stack(sandbox.engine_env(fakes, state_dir, agent), work_dir=work)
        st.state_dir = state_dir
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


def job_machines(fakes) -> list:
    return [i for i in fakes["tensordock"].alive() if "-job-" in i["name"]]


def until(what: str, check, seconds: float = 120.0):
    """``check()`` once it is truthy, polled every half second; fails naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not so after {seconds:.0f}s"
        time.sleep(0.5)


def containers(label: str) -> list:
    return subprocess.run(["docker", "ps", "-aq", "--filter", f"label=estate-job={label}"],
                          capture_output=True, text=True).stdout.split()


def test_a_job_runs_uploads_its_model_and_its_machine_is_released(estate):
    st, fakes, s3 = estate
    up = st.up()
    assert up.summary.resource_changes.get("create", 0) > 0
    started = jobs_in_state(st)["train"]
    assert started["state"] == "starting" and started["cloud"] == "tensordock"
    # The runner trains in the image, uploads, and the watcher beside the gateway deletes the machine.
    final = until("the train job's final status", lambda: status(s3, "train").get("state") in ("succeeded", "failed")
                  and status(s3, "train"))
    assert (final["state"], final["exit_code"]) == ("succeeded", 0), final
    until("the train job's machine released", lambda: not job_machines(fakes))
    model = json.loads(s3.client().get_object(Bucket=BUCKET, Key="models/line/1/model.json")["Body"].read())
    assert model["samples"] == 11 and abs(model["a"] - 2) < 0.1 and abs(model["b"] - 1) < 0.5
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET, Prefix="models/line/1/")["Contents"]]
    assert "models/line/1/checkpoints/epoch-200.json" in keys
    log = s3.client().get_object(Bucket=BUCKET, Key="estate-jobs/gpu-estate-sandbox-job-train-1/log.txt")["Body"].read()
    assert b"trained on 11 samples" in log
    assert "trainer-token-value" not in sandbox.sent_to_vendors(fakes)  # the secret env went over SSH only
    # The state as the backend stores it, with its history and backups, holds neither secret in plain text.
    stored = [p for p in st.state_dir.rglob("*") if p.is_file()]
    assert stored and not [p for p in stored if b"trainer-token-value" in p.read_bytes()
                           or s3.secret_key.encode() in p.read_bytes()]

    st.refresh()
    seen = jobs_in_state(st)["train"]
    assert seen["state"] == "succeeded" and seen["exit_code"] == 0 and seen["machine_status"] == "gone"
    assert seen["duration_s"] > 0 and seen["cost_usd"] == pytest.approx(seen["duration_s"] / 3600 * seen["price_per_hour"], abs=1e-4)
    # A finished job is not run again: nothing changes, nothing is rented.
    creates = len([r for r in fakes["tensordock"].requests if r[0] == "POST"])
    again = st.up()
    assert set(again.summary.resource_changes) == {"same"}
    assert len([r for r in fakes["tensordock"].requests if r[0] == "POST"]) == creates


def test_a_job_past_max_hours_is_capped_and_nothing_bills(estate):
    st, fakes, s3 = estate
    jobs = json.loads(st.get_config("gpu-estate:jobs").value)
    jobs["long"] = job(["python3", "/trainer.py", "--epochs", "50", "--sleep", "600"], outputs="models/long/1",
                       max_hours=0.0005)
    st.set_config("gpu-estate:jobs", sandbox.auto_config(jobs))
    st.up()
    label = "gpu-estate-sandbox-job-long-1"
    final = until("the long job capped", lambda: status(s3, "long").get("state") == "capped" and status(s3, "long"))
    assert "max_hours 0.0005 reached" in final["reason"]
    until("the long job's machine released", lambda: not job_machines(fakes))
    until("the long job's container gone", lambda: not containers(label), seconds=30)
    st.refresh()
    assert jobs_in_state(st)["long"]["state"] == "capped"
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}


def test_a_preempted_job_resumes_from_its_last_checkpoint(estate):
    st, fakes, s3 = estate
    jobs = json.loads(st.get_config("gpu-estate:jobs").value)
    jobs["spot"] = job(["python3", "/trainer.py", "--epochs", "150", "--pace", "0.1"], outputs="models/spot/1",
                       max_hours=1, on_preemption="resume", sync_minutes=0.01)
    st.set_config("gpu-estate:jobs", sandbox.auto_config(jobs))
    st.up()
    checkpoint = "models/spot/1/checkpoints/epoch-50.json"
    until("the spot job's first checkpoint uploaded", lambda: "Contents" in s3.client().list_objects_v2(
        Bucket=BUCKET, Prefix=checkpoint))
    (machine,) = job_machines(fakes)
    with gpu_cloud.client("tensordock") as c:  # lost behind the state's back, as a preempted machine is
        c.terminate(machine["id"])
    st.refresh()
    assert "spot" not in jobs_in_state(st)  # gone, so the next `up` runs it again
    st.up()
    final = until("the resumed spot job finished", lambda: status(s3, "spot").get("state") in ("succeeded", "failed")
                  and status(s3, "spot"))
    assert final["state"] == "succeeded", final
    log = s3.client().get_object(Bucket=BUCKET, Key="estate-jobs/gpu-estate-sandbox-job-spot-1/log.txt")["Body"].read()
    assert b"resumed at epoch" in log
    until("the spot job's machine released", lambda: not job_machines(fakes))


def test_a_new_run_id_replaces_the_job_and_destroy_stops_a_running_one(estate):
    st, fakes, s3 = estate
    jobs = json.loads(st.get_config("gpu-estate:jobs").value)
    jobs["long"]["run"] = "2"
    jobs["long"]["max_hours"] = 1
    st.set_config("gpu-estate:jobs", sandbox.auto_config(jobs))
    preview = st.preview()
    # The job, on a new machine, and its watch entry: the new run's caps count from its own start.
    assert preview.change_summary.get("replace") == 2
    assert "run changed ('1' -> '2')" in preview.stdout
    replaced = [line for line in preview.stdout.splitlines() if line.lstrip().startswith("+-")]
    assert any("dynamic:Job" in line and "job-long" in line for line in replaced), replaced
    assert any("job:Watch" in line and "job-long-watch" in line for line in replaced), replaced
    st.up()
    until("the long job's second run running", lambda: status(s3, "long", "2").get("state") == "running")
    assert len(job_machines(fakes)) == 1 and containers("gpu-estate-sandbox-job-long-2")
    st.destroy()
    assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}
    until("the long job's container gone", lambda: not containers("gpu-estate-sandbox-job-long-2"), seconds=30)
