"""The job runner (``assets/job/estate_job.py``) against moto's real S3 server and the real Docker engine:
inputs come down, the command runs in its image with its words as arguments, and the outputs, the log
and the final status (exit code included) go up, through the project's own stdlib S3 client
(``providers/s3.py``), which boto3 reads back. Skipped without Docker or the sandbox image, except on
the project's CI (GPU_ESTATE_REQUIRE_VM=1)."""
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import sandbox
from loopback import machine as loopback_machine
from providers.s3 import S3, S3Error
from sandbox.s3 import LoopbackS3

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "assets" / "job"))
import estate_job  # noqa: E402

IMAGE = loopback_machine.IMAGE  # the sandbox's Debian Python image, present where the VM node runs


@pytest.fixture(scope="module")
def s3():
    why = loopback_machine.missing()
    if why:
        if sandbox.vm_required():
            pytest.fail(why)
        pytest.skip(why)
    with LoopbackS3() as server:
        server.create_bucket("models")
        yield server


def job_dir(tmp_path, s3, command, **more):
    doc = {"label": "t-job-1", "run": "1", "image": IMAGE, "command": command, "env": {"LR": "3e-4 $HOME"},
           "bucket": "models", "endpoint": s3.endpoint, "region": "us-east-1", "inputs": ["data/"],
           "outputs": f"out/{tmp_path.name}", "status_prefix": f"estate-jobs/{tmp_path.name}", "resume": False,
           "sync_seconds": 600, "gpus": False, **more}
    (tmp_path / "job.json").write_text(json.dumps(doc))
    (tmp_path / "secrets.json").write_text(json.dumps({"env": {"TOKEN": "s3cr3t"}, "s3": {
        "access_key": s3.access_key, "secret_key": s3.secret_key}}))
    return tmp_path, doc


def obj(s3, key) -> bytes:
    return s3.client().get_object(Bucket="models", Key=key)["Body"].read()


TRAIN = ("import os, sys; data = open('/job/inputs/data/xs.txt').read(); "
         "open('/job/outputs/weights.txt', 'w').write(str(sum(map(int, data.split())))); "
         "print('lr', os.environ['LR'], 'args', sys.argv[1:]); sys.exit(int(os.environ.get('EXIT', '0')))")


def test_a_job_runs_in_its_image_and_its_outputs_log_and_status_land_in_the_bucket(s3, tmp_path):
    s3.client().put_object(Bucket="models", Key="data/xs.txt", Body=b"1 2 3\n")
    root, doc = job_dir(tmp_path, s3, ["python3", "-c", TRAIN, "--name", "x; touch /job/outputs/pwned"])
    assert estate_job.Runner(root).run() == 0
    assert obj(s3, f"{doc['outputs']}/weights.txt") == b"6"
    status = json.loads(obj(s3, f"{doc['status_prefix']}/status.json"))
    assert (status["state"], status["exit_code"], status["outputs"]) == ("succeeded", 0, [f"{doc['outputs']}/weights.txt"])
    log = obj(s3, f"{doc['status_prefix']}/log.txt").decode()
    # The words reached the command as arguments, exactly (no shell read the ';'), and env values stay literal.
    assert "lr 3e-4 $HOME args ['--name', 'x; touch /job/outputs/pwned']" in log
    assert not (root / "outputs" / "pwned").exists()
    assert (root / "command.env").stat().st_mode & 0o777 == 0o600


def test_a_failing_command_still_reports_its_exit_code_and_uploads_what_it_wrote(s3, tmp_path):
    s3.client().put_object(Bucket="models", Key="data/xs.txt", Body=b"4 5\n")
    root, doc = job_dir(tmp_path, s3, ["python3", "-c", TRAIN], env={"LR": "1", "EXIT": "3"})
    assert estate_job.Runner(root).run() == 1
    status = json.loads(obj(s3, f"{doc['status_prefix']}/status.json"))
    assert (status["state"], status["exit_code"]) == ("failed", 3)
    assert obj(s3, f"{doc['outputs']}/weights.txt") == b"9"


def test_resume_starts_from_the_checkpoints_under_the_outputs_prefix(s3, tmp_path):
    out = f"out/{tmp_path.name}"
    s3.client().put_object(Bucket="models", Key=f"{out}/ckpt/step-7.txt", Body=b"7")
    step = ("import os; print('resumed', os.environ.get('ESTATE_JOB_RESUMED'), "
            "open('/job/outputs/ckpt/step-7.txt').read())")
    root, doc = job_dir(tmp_path, s3, ["python3", "-c", step], inputs=[], resume=True)
    assert estate_job.Runner(root).run() == 0
    assert "resumed 1 7" in obj(s3, f"{doc['status_prefix']}/log.txt").decode()


def test_the_client_refuses_a_wrong_key_and_reads_a_missing_object_as_none(s3):
    good = S3("models", s3.access_key, s3.secret_key, endpoint=s3.endpoint)
    assert good.get("no/such/key") is None
    good.put("a/b c+d.txt", b"x")  # keys with spaces and plus signs are signed as S3 reads them
    assert good.list("a/") == ["a/b c+d.txt"] and good.get("a/b c+d.txt") == b"x"
    with pytest.raises(S3Error):
        S3("no-such-bucket", s3.access_key, s3.secret_key, endpoint=s3.endpoint).put("k", b"v")


@pytest.fixture(scope="module")
def bucket():
    """moto's S3 server alone, for the runner's status writes (no Docker needed)."""
    from sandbox import s3 as sandbox_s3
    why = sandbox_s3.missing()
    if why:
        pytest.skip(why)
    with LoopbackS3() as server:
        server.create_bucket("models")
        yield server


def test_a_late_heartbeat_never_overwrites_the_final_status(bucket, tmp_path):
    root, doc = job_dir(tmp_path, bucket, ["true"])
    runner = estate_job.Runner(root)
    runner.final_status("succeeded", exit_code=0)
    runner.status("running")  # the syncer's heartbeat, landing after the end
    assert json.loads(obj(bucket, f"{doc['status_prefix']}/status.json"))["state"] == "succeeded"


def test_a_failure_after_the_syncer_started_stops_its_heartbeat(bucket, tmp_path, monkeypatch):
    monkeypatch.setattr(estate_job, "SYNC_FLOOR_SECONDS", 0.2)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # `docker` is not found: Popen raises
    root, doc = job_dir(tmp_path, bucket, ["true"], inputs=[], sync_seconds=0.2)
    assert estate_job.Runner(root).run() == 1
    time.sleep(1.0)  # several sync periods: a syncer left running would have written `running` by now
    status = json.loads(obj(bucket, f"{doc['status_prefix']}/status.json"))
    assert status["state"] == "failed" and "FileNotFoundError" in status["error"]


def test_an_unwritable_starting_status_still_ends_in_a_retried_final_status(bucket, tmp_path, monkeypatch):
    monkeypatch.setattr(estate_job, "FINAL_RETRY_SECONDS", (0.0, 0.0))
    root, doc = job_dir(tmp_path, bucket, ["true"], inputs=[])
    runner = estate_job.Runner(root)
    real_put, calls = runner.s3.put, []

    def flaky(key, body, *args):  # the bucket refuses the first three writes (starting, then the final twice)
        calls.append(json.loads(body)["state"])
        if len(calls) <= 3:
            raise OSError("connection reset")
        return real_put(key, body, *args)

    monkeypatch.setattr(runner.s3, "put", flaky)
    assert runner.run() == 1
    assert calls == ["starting", "failed", "failed", "failed"]
    status = json.loads(obj(bucket, f"{doc['status_prefix']}/status.json"))
    assert status["state"] == "failed" and "OSError" in status["error"]


def test_links_in_the_outputs_are_not_followed(bucket, tmp_path):
    """The job's image writes the outputs: a link there to the runner's secrets (or a directory outside) is
    not uploaded, only the regular files inside."""
    root, doc = job_dir(tmp_path, bucket, ["true"], inputs=[])
    runner = estate_job.Runner(root)
    (root / "outputs" / "sub").mkdir(parents=True)
    (root / "outputs" / "sub" / "weights.txt").write_text("w")
    (root / "outputs" / "keys.json").symlink_to(root / "secrets.json")
    (root / "outputs" / "job").symlink_to(root, target_is_directory=True)
    assert runner.push_outputs() == [f"{doc['outputs']}/sub/weights.txt"]
    listed = bucket.client().list_objects_v2(Bucket="models", Prefix=doc["outputs"] + "/").get("Contents", [])
    assert [o["Key"] for o in listed] == [f"{doc['outputs']}/sub/weights.txt"]


def test_the_runner_stops_the_command_at_its_own_max_hours(s3, tmp_path, monkeypatch):
    """A backstop for a job the spend watcher never learned of: at max_hours the container is killed (the
    host is left alone) and the final status is capped."""
    monkeypatch.setattr(estate_job, "CAP_POLL_SECONDS", 0.2)
    root, doc = job_dir(tmp_path, s3, ["python3", "-c", "import time; print('working', flush=True); time.sleep(600)"],
                        inputs=[], label=f"t-cap-{tmp_path.name[-12:].lower().replace('_', '-')}",
                        max_hours=3.0 / 3600)  # three seconds
    started = time.monotonic()
    assert estate_job.Runner(root).run() == 1
    assert time.monotonic() - started < 120  # not the command's ten minutes
    status = json.loads(obj(s3, f"{doc['status_prefix']}/status.json"))
    assert status["state"] == "capped" and "max_hours" in status["reason"]
    left = subprocess.run(["docker", "ps", "-q", "--filter", f"label=estate-job={doc['label']}"],
                          capture_output=True, text=True, timeout=60).stdout.strip()
    assert left == ""  # the container is gone


def test_a_command_that_ended_just_before_its_cap_keeps_its_own_result(bucket, tmp_path):
    root, _ = job_dir(tmp_path, bucket, ["true"], inputs=[], max_hours=1.0)
    runner = estate_job.Runner(root)
    runner.started -= 2 * 3600  # the cap has passed
    proc = subprocess.Popen(["true"])
    proc.wait()  # but the command had already ended
    runner.capping(proc, threading.Event())
    assert runner.capped == ""


CONTAINER_TRAIN = ("import os, sys; i, o = os.environ['ESTATE_JOB_INPUTS'], os.environ['ESTATE_JOB_OUTPUTS']; "
                   "data = open(i + '/data/xs.txt').read(); "
                   "open(o + '/weights.txt', 'w').write(str(sum(map(int, data.split())))); "
                   "print('lr', os.environ['LR'], 'token', os.environ['TOKEN'], 'args', sys.argv[1:], 'cwd', os.getcwd())")


def test_on_a_container_machine_the_command_runs_beside_the_runner_not_in_docker(s3, tmp_path):
    """Vast.ai: the machine is the job's image and the runner runs inside it; the command is its child, its words
    as arguments, its env as data, its inputs and outputs under the mount (``/job`` on the machine)."""
    s3.client().put_object(Bucket="models", Key="data/xs.txt", Body=b"1 2 3\n")
    mount = tmp_path / "mount"
    root, doc = job_dir(tmp_path, s3, ["python3", "-c", CONTAINER_TRAIN, "x; touch pwned"], container=True,
                        mount=str(mount), instance="vastai:42")
    assert estate_job.Runner(root).run() == 0
    assert obj(s3, f"{doc['outputs']}/weights.txt") == b"6"
    status = json.loads(obj(s3, f"{doc['status_prefix']}/status.json"))
    assert (status["state"], status["exit_code"], status["instance"]) == ("succeeded", 0, "vastai:42")
    log = obj(s3, f"{doc['status_prefix']}/log.txt").decode()
    assert f"lr 3e-4 $HOME token s3cr3t args ['x; touch pwned'] cwd {mount / 'outputs'}" in log
    assert (mount / "inputs" / "data" / "xs.txt").exists() and not (root / "command.env").exists()
    assert not (root / "secrets.json").exists()  # the bucket key stayed in the runner's memory only


def test_on_a_container_machine_the_cap_stops_the_commands_whole_process_group(s3, tmp_path, monkeypatch):
    monkeypatch.setattr(estate_job, "CAP_POLL_SECONDS", 0.2)
    pid_file = tmp_path / "child.pid"
    spawn = ("import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
             f"open({str(pid_file)!r}, 'w').write(str(c.pid)); print('working', flush=True); time.sleep(600)")
    root, doc = job_dir(tmp_path, s3, ["python3", "-c", spawn], inputs=[], container=True,
                        mount=str(tmp_path / "mount"), max_hours=2.0 / 3600)
    started = time.monotonic()
    assert estate_job.Runner(root).run() == 1
    assert time.monotonic() - started < 60
    status = json.loads(obj(s3, f"{doc['status_prefix']}/status.json"))
    assert status["state"] == "capped" and "max_hours" in status["reason"]
    child = int(pid_file.read_text())
    for _ in range(50):  # the killed grandchild is reaped by init: gone within moments
        if not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the command's own child outlived the cap")


def test_on_a_container_machine_what_the_command_leaves_running_does_not_hold_its_end(s3, tmp_path):
    """A command that ends leaving a process behind with its output open (a daemon it started) ends the job
    all the same: the leftover is killed with the command's session, the result is the command's own."""
    leave = ("import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
             "print('left one behind', flush=True)")
    root, doc = job_dir(tmp_path, s3, ["python3", "-c", leave], inputs=[], container=True, mount=str(tmp_path / "m"))
    started = time.monotonic()
    assert estate_job.Runner(root).run() == 0
    assert time.monotonic() - started < 60
    assert "left one behind" in obj(s3, f"{doc['status_prefix']}/log.txt").decode()


def test_the_heartbeat_goes_on_through_a_long_download_and_a_long_last_upload(bucket, tmp_path, monkeypatch):
    """The job agent counts a runner lost when its heartbeat is late (``core.jobs.lost_after``): a slow but live
    runner must keep writing it while it downloads its inputs and while it uploads its outputs after the
    command ended, every ``heartbeat_seconds``, whatever ``sync_seconds`` says."""
    monkeypatch.setattr(estate_job, "SYNC_FLOOR_SECONDS", 0.05)
    bucket.client().put_object(Bucket="models", Key="data/xs.txt", Body=b"1 2 3\n")
    root, doc = job_dir(tmp_path, bucket, ["sh", "-c", "echo w > weights.txt"], container=True,
                        mount=str(tmp_path / "mount"), heartbeat_seconds=0.2, sync_seconds=600)
    runner = estate_job.Runner(root)
    writes = []
    put, download, put_file = runner.s3.put, runner.s3.download, runner.s3.put_file

    def recording_put(key, body, *args):
        writes.append(json.loads(body)["state"])
        return put(key, body, *args)

    def slow_download(*args):
        time.sleep(1.2)
        return download(*args)

    def slow_put_file(key, path, *args):
        if key.endswith("weights.txt"):
            time.sleep(1.2)
        return put_file(key, path, *args)

    monkeypatch.setattr(runner.s3, "put", recording_put)
    monkeypatch.setattr(runner.s3, "download", slow_download)
    monkeypatch.setattr(runner.s3, "put_file", slow_put_file)
    assert runner.run() == 0
    assert writes[0] == "starting" and writes[-1] == "succeeded"
    assert writes.count("starting") >= 4  # beats while the inputs came down
    assert writes.index("running") < len(writes) - 1
    assert writes[writes.index("running"):-1].count("running") >= 4  # and while the outputs went up
    assert json.loads(obj(bucket, f"{doc['status_prefix']}/status.json"))["state"] == "succeeded"
