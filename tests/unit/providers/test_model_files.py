"""``pulumi-python:dynamic/files:ModelFile`` driven directly against OpenSSH's sshd on 127.0.0.1 (the node)
and a loopback file host (the download's source): the file is downloaded with progress and its sha256
checked, a bad digest fails naming the file and both digests and leaves nothing, a part is resumed, refresh
sees a file deleted or changed on the node, delete removes it, an unreachable node keeps the file in state on
refresh and fails its delete, a powered-off node is never contacted, and a gated file's token goes from the
node's secret file to the file host alone, never on a command line or in a log."""
import hashlib
import os

import pytest

from loopback.files import FileHost
from providers import model_files as mf

DATA = os.urandom(300_000)


@pytest.fixture
def host():
    with FileHost() as h:
        yield h


@pytest.fixture
def logs(monkeypatch):
    seen = {"info": [], "warn": []}
    monkeypatch.setattr(mf.pulumi.log, "info", lambda msg, *a, **k: seen["info"].append(msg))
    monkeypatch.setattr(mf.pulumi.log, "warn", lambda msg, *a, **k: seen["warn"].append(msg))
    return seen


def provider(sshd):
    p = mf.ModelFileProvider()
    p._private_key = sshd.private_key  # as configure() reads gpu-estate:sshPrivateKey
    return p


def props(sshd, tmp_path, host, data=DATA, name="a.safetensors", **over):
    sha = host.publish(f"/files/{name}", data)
    given = mf.ModelFileArgs(
        node="vm", workload="comfyui", path=str(tmp_path / "models" / "checkpoints" / name),
        url=host.url(f"/files/{name}"), sha256=sha, size_gb=len(data) / 1e9,
        ssh={"host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
             "host_key": " ".join(sshd.host_public_key.split()[:2])}, instance="tensordock:1").to_props()
    return {**given, "version": mf.PROVIDER_VERSION, **over}


def test_create_downloads_the_file_checks_its_sha256_and_reports_progress(sshd, tmp_path, host, logs):
    given = props(sshd, tmp_path, host)
    made = provider(sshd).create(given)
    path = tmp_path / "models" / "checkpoints" / "a.safetensors"
    assert path.read_bytes() == DATA and not path.with_name("a.safetensors.part").exists()
    assert made.id == f"vm/comfyui:{path}"
    assert made.outs["digest"] == given["sha256"] and made.outs["size"] == len(DATA)
    assert made.outs["mtime"] == int(path.stat().st_mtime)
    assert any("downloading a.safetensors: 100% (0.00 of ~0.0003 GB)" in m for m in logs["info"]), logs["info"]
    # Again on the same node: the file is there with its sha256, and nothing is downloaded.
    before = len(host.gets("/files/a.safetensors"))
    again = provider(sshd).create(given)
    assert again.outs["digest"] == given["sha256"] and len(host.gets("/files/a.safetensors")) == before
    assert any("already there with its sha256" in m for m in logs["info"])


def test_a_download_with_another_sha256_fails_naming_the_file_and_leaves_nothing(sshd, tmp_path, host, logs):
    given = {**props(sshd, tmp_path, host), "sha256": "0" * 64}
    with pytest.raises(mf.ModelFileError) as err:
        provider(sshd).create(given)
    message = str(err.value)
    assert "a.safetensors" in message and f"not the expected {'0' * 64}" in message
    assert hashlib.sha256(DATA).hexdigest() in message
    assert not list((tmp_path / "models" / "checkpoints").iterdir())


def test_a_part_left_by_a_broken_download_is_resumed(sshd, tmp_path, host, logs):
    given = props(sshd, tmp_path, host)
    host.cut_after = 100_000
    host.publish("/files/a.safetensors", DATA)
    path = tmp_path / "models" / "checkpoints" / "a.safetensors"
    # The transfer breaks off: the next attempt resumes the part from where the first stopped.
    provider(sshd).create(given)
    assert path.read_bytes() == DATA
    ranges = [h.get("range") for h in host.gets("/files/a.safetensors")]
    assert ranges == [None, "bytes=100000-"], ranges
    assert any("broke off" in m and "attempt 2 of 3" in m for m in logs["warn"]), logs["warn"]


def test_refresh_sees_a_file_deleted_or_changed_on_the_node_and_update_downloads_it_again(sshd, tmp_path, host, logs):
    p = provider(sshd)
    given = props(sshd, tmp_path, host)
    outs = p.create(given).outs
    path = tmp_path / "models" / "checkpoints" / "a.safetensors"
    assert p.read("id", outs).outs == outs  # as downloaded: only stat'ed

    path.write_bytes(b"something else")
    changed = p.read("id", outs).outs
    assert changed["digest"] == hashlib.sha256(b"something else").hexdigest()
    diff = p.diff("id", changed, given)
    assert diff.changes and not diff.replaces
    p.update("id", changed, given)
    assert path.read_bytes() == DATA

    path.unlink()
    gone = p.read("id", outs)
    assert gone.id == "" and gone.outs == {}


def test_a_new_url_or_sha256_downloads_again_in_place(sshd, tmp_path, host, logs):
    p = provider(sshd)
    old = p.create(props(sshd, tmp_path, host)).outs
    new_data = os.urandom(1000)
    new = props(sshd, tmp_path, host, data=new_data, name="b.safetensors")
    new = {**new, "path": old["path"]}  # the same file name, from elsewhere with other bytes
    diff = p.diff("id", old, new)
    assert diff.changes and diff.replaces == []
    outs = p.update("id", old, new).outs
    assert (tmp_path / "models" / "checkpoints" / "a.safetensors").read_bytes() == new_data
    assert outs["digest"] == hashlib.sha256(new_data).hexdigest()
    # Another name is another file: replaced (the new downloaded before the old is removed).
    renamed = p.diff("id", old, {**old, "path": old["path"].replace("a.safetensors", "c.safetensors")})
    assert renamed.replaces == ["path"] and not renamed.delete_before_replace


def test_delete_removes_the_file_and_an_absent_file_is_success(sshd, tmp_path, host, logs):
    p = provider(sshd)
    outs = p.create(props(sshd, tmp_path, host)).outs
    path = tmp_path / "models" / "checkpoints" / "a.safetensors"
    p.delete("id", outs)
    assert not path.exists()
    p.delete("id", outs)
    assert any("was already gone" in m for m in logs["info"])


def test_an_unreachable_node_keeps_the_file_on_refresh_and_fails_its_delete(sshd, tmp_path, host, logs):
    p = provider(sshd)
    outs = p.create(props(sshd, tmp_path, host)).outs
    sshd.stop()
    assert p.read("id", outs).outs == outs
    assert any("cannot reach the node" in m and "keeping" in m for m in logs["warn"])
    with pytest.raises(mf.ModelFileError, match="could not delete .*It stays in state"):
        p.delete("id", outs)
    assert (tmp_path / "models" / "checkpoints" / "a.safetensors").exists()


def test_another_host_key_is_refused(sshd, tmp_path, host, logs):
    given = props(sshd, tmp_path, host)
    given["ssh"] = {**given["ssh"], "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXNhbmRib3hrZXk="}
    with pytest.raises(mf.Unreachable, match="Host key verification failed"):
        provider(sshd).create(given)
    assert not (tmp_path / "models").exists()


def test_a_powered_off_node_is_never_contacted(tmp_path, logs):
    given = {"node": "vm", "workload": "comfyui", "path": "/nowhere/a.safetensors", "url": "http://127.0.0.1:9/a",
             "sha256": "a" * 64, "size_gb": 1.0, "active": False, "token_file": None, "instance": "x",
             "ssh": {"host": "127.0.0.1", "port": 9, "user": "root", "host_key": "ssh-ed25519 AAAA"}}
    p = mf.ModelFileProvider()
    assert p.create(given).outs["digest"] is None
    assert p.read("id", given).outs == given
    p.delete("id", given)
    assert any("powered off" in m for m in logs["info"])


def test_a_gated_file_carries_the_token_from_the_nodes_secret_file_and_nowhere_else(sshd, tmp_path, host, logs,
                                                                                    capfd):
    token = "hf_secretTokenValue123"
    env_file = tmp_path / "secrets" / "comfyui.env"
    env_file.parent.mkdir()
    env_file.write_text(f"OTHER=x\nHF_TOKEN={token}\n")
    env_file.chmod(0o600)
    given = props(sshd, tmp_path, host, name="gated.safetensors")
    host.publish("/files/gated.safetensors", DATA, token=token)
    p = provider(sshd)
    with pytest.raises(mf.ModelFileError, match="failed"):
        p.create(given)  # without the token: the host refuses it
    given = {**given, "token_file": str(env_file)}
    outs = p.create(given).outs
    assert (tmp_path / "models" / "checkpoints" / "gated.safetensors").read_bytes() == DATA
    assert host.gets("/files/gated.safetensors")[-1]["authorization"] == f"Bearer {token}"
    seen = repr(outs) + repr(logs) + "".join(capfd.readouterr())
    assert token not in seen
    # The header file the node wrote for curl is gone.
    assert not [f for f in os.listdir("/tmp") if f.startswith("tmp.") and token in _read(f"/tmp/{f}")]
    # A node without the secret file fails naming it.
    with pytest.raises(mf.ModelFileError, match="no secret env file .*nothing.env"):
        p.create({**given, "token_file": str(tmp_path / "secrets" / "nothing.env"), "path": given["path"] + "2"})


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def test_check_refuses_a_relative_path_and_a_bad_digest():
    failures = mf.ModelFileProvider().check({}, {"node": "vm", "workload": "c", "path": "models/a", "url": "http://x/a",
                                                 "sha256": "XYZ"}).failures
    assert {f.property for f in failures} == {"path", "sha256"}
