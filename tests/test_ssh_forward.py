"""The model library through an SSH port forward, against a real OpenSSH server on loopback."""
import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from providers import ssh_forward
from providers.ollama import OllamaModelProvider

SSHD = "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(not (os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen")),
                                reason="needs OpenSSH (apt-get install openssh-server)")


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    d = tmp_path_factory.mktemp("sshd")
    keygen(d / "host")
    keygen(d / "client")
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = ssh_forward.free_port()
    (d / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d / 'host'}
AuthorizedKeysFile {d / 'authorized_keys'}
PidFile {d / 'sshd.pid'}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
""")
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"sshd did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.05)
    yield {"port": port, "key": (d / "client").read_text(), "user": getpass.getuser()}
    proc.terminate()
    proc.wait(timeout=5)



def props(sshd, ollama):
    return {"node": "qwen", "model": "qwen3:8b", "endpoint": None, "instance": "vastai:1", "active": True,
            "ssh": {"host": "127.0.0.1", "port": sshd["port"], "user": sshd["user"], "key_env": "TEST_SSH_KEY",
                    "remote_port": ollama.httpd.server_address[1]}}


def test_models_are_pulled_through_the_forward(sshd, ollama, monkeypatch):
    monkeypatch.setenv("TEST_SSH_KEY", sshd["key"])
    created = OllamaModelProvider().create(props(sshd, ollama))
    assert created.outs["pulled"] is True and "qwen3:8b" in ollama.installed


def test_a_refused_key_fails_with_what_ssh_said(sshd, ollama, monkeypatch, tmp_path):
    keygen(tmp_path / "other")
    monkeypatch.setenv("TEST_SSH_KEY", (tmp_path / "other").read_text())
    with pytest.raises(ssh_forward.ForwardError, match="Permission denied"):
        OllamaModelProvider().create(props(sshd, ollama))
    assert ollama.pulls() == 0


def test_no_key_names_where_to_put_one(sshd, ollama, monkeypatch):
    monkeypatch.delenv("TEST_SSH_KEY", raising=False)
    with pytest.raises(ssh_forward.ForwardError, match="set TEST_SSH_KEY or the config secret gpu-estate:sshPrivateKey"):
        OllamaModelProvider().create(props(sshd, ollama))
