"""The model library through an SSH port forward, against a real OpenSSH server on loopback."""

import pytest

from loopback.sshd import LoopbackSshd, keygen
from loopback.sshd import missing as sshd_missing
from providers import ssh_forward
from providers.ollama import OllamaModelProvider

pytestmark = pytest.mark.skipif(bool(sshd_missing()), reason=sshd_missing() or "")


@pytest.fixture(scope="module")
def sshd():
    with LoopbackSshd() as server:
        yield {"port": server.port, "key": server.private_key, "user": server.user}


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
