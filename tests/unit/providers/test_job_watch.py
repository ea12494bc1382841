"""``pulumi-python:dynamic/job:Watch`` driven directly: a job's watch entry written 0600 beside the spend
watcher (in a local directory, and over OpenSSH's sshd on 127.0.0.1 for a gateway host), kept with its
``created_at`` across updates, written anew for a new run, reported when its file is gone, and removed when
the job leaves the stack. The entry is what ``agents.spend.read_job_entries`` reads."""
import json
import stat

import pytest

from agents.spend import read_job_entries
from core.jobs import watch_file
from providers.http import CloudError
from providers.job_watch import JobWatchProvider

ENTRY = {"job": "train", "label": "gpu-estate-sandbox-job-train-1", "run": "1", "clouds": ["tensordock"],
         "hourly_usd": 0.4, "max_hours": 1.0, "max_usd": 0.5, "bucket": "models", "endpoint": None,
         "region": "us-east-1", "status_prefix": "estate-jobs/gpu-estate-sandbox-job-train-1",
         "key": {"access_key": "AKIDJOB", "secret_key": "job-secret"}}


def props(directory, **more):
    return {"name": "train", "file": watch_file("train"), "entry": dict(ENTRY), "directory": str(directory),
            "ssh": None, **more}


def test_a_local_entry_is_written_0600_kept_across_updates_and_removed(tmp_path):
    p = JobWatchProvider()
    d = tmp_path / "jobs"
    given = props(d)
    made = p.create(given)
    path = d / watch_file("train")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (read,) = read_job_entries(d, say=print)
    assert read == {**ENTRY, "created_at": made.outs["created_at"]}

    # A changed cap is an update in place: the caps still count from when the entry was first written.
    capped = props(d, entry={**ENTRY, "max_usd": 0.25})
    diff = p.diff(made.id, made.outs, capped)
    assert diff.changes and not diff.replaces
    updated = p.update(made.id, made.outs, capped).outs
    assert updated["created_at"] == made.outs["created_at"]
    assert json.loads(path.read_text())["max_usd"] == 0.25

    # A new run is a new entry (its caps count from its own start).
    rerun = props(d, entry={**ENTRY, "label": "gpu-estate-sandbox-job-train-2", "run": "2"})
    assert p.diff(made.id, updated, rerun).replaces == ["entry"]

    # A file removed behind the state's back is reported, and the next `up` writes it again.
    path.unlink()
    seen = p.read(made.id, updated).outs
    assert seen["present"] is False and p.diff(made.id, seen, capped).changes
    assert p.update(made.id, seen, capped).outs["created_at"] == made.outs["created_at"] and path.exists()

    p.delete(made.id, updated)
    assert not path.exists() and read_job_entries(d, say=print) == []
    p.delete(made.id, updated)  # already gone: nothing to do


def test_a_name_never_leaves_the_directory():
    for name in ("../../etc/passwd", "a b; rm -rf /", "train"):
        file = watch_file(name)
        assert "/" not in file and " " not in file and ";" not in file and file.endswith(".json")
    assert watch_file("a/b") != watch_file("a_b")


@pytest.fixture
def remote(sshd, tmp_path):
    p = JobWatchProvider()
    p._private_key = sshd.private_key  # as configure() reads gpu-estate:sshPrivateKey
    ssh = {"host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
           "host_key": " ".join(sshd.host_public_key.split()[:2]), "key_env": "ESTATE_SSH_PRIVATE_KEY"}
    return p, props(tmp_path / "gateway" / "spend" / "jobs", ssh=ssh)


def test_a_gateway_hosts_entry_arrives_over_ssh_pinned_to_its_host_key(remote, tmp_path):
    p, given = remote
    made = p.create(given)
    path = tmp_path / "gateway" / "spend" / "jobs" / watch_file("train")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["key"]["secret_key"] == "job-secret"
    assert p.read(made.id, made.outs).outs["present"] is True
    path.unlink()
    assert p.read(made.id, made.outs).outs["present"] is False
    p.update(made.id, made.outs, given)
    assert path.exists()
    p.delete(made.id, made.outs)
    assert not path.exists()


def test_a_gateway_host_with_another_key_gets_nothing(remote, tmp_path):
    p, given = remote
    other = {**given, "ssh": {**given["ssh"], "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXNhbmRib3hrZXk="}}
    with pytest.raises(CloudError, match="gateway host"):
        p.create(other)
    assert not (tmp_path / "gateway").exists()


def test_a_gateway_host_that_cannot_be_reached_never_stops_the_destroy(remote, tmp_path, monkeypatch):
    """Its entry bills nothing: failing the delete would keep every GPU node whose delete had not started
    rented. The warning names the file left on the host and the command that removes it."""
    from providers import job_watch
    from providers.ssh_forward import free_port
    warned = []
    monkeypatch.setattr(job_watch.pulumi.log, "warn", lambda msg, *a, **k: warned.append(msg))
    p, given = remote
    made = p.create(given)
    path = tmp_path / "gateway" / "spend" / "jobs" / watch_file("train")
    away = {**made.outs, "ssh": {**made.outs["ssh"], "port": free_port()}}  # nothing listens there
    p.delete(made.id, away)
    (message,) = warned
    assert str(path) in message and "rm -f" in message and "The destroy goes on" in message
    assert "job-secret" not in message
    assert path.exists()  # honestly left, as the warning says
    p.delete(made.id, made.outs)  # once the host answers
    assert not path.exists()
