"""SSH host keys pinned, against OpenSSH's own sshd: recorded on first contact, verified by the model
library's forward and by the gateway's autossh unit, and a machine answering with another key gets
nothing."""
import os
import shlex
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from components import gateway as gw
from core.config import parse_spec
from core.topology import plan_estate
from providers import host_key as hk
from providers.ssh_forward import ForwardError, forward
from tests.mocks import stack_estate


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *_a):
        pass


@pytest.fixture
def service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def props(sshd, **extra):
    return {"node": "vm", "host": "127.0.0.1", "port": sshd.port, "machine": "tensordock:1", "expected": None,
            "host_key": None, **extra}


def test_first_contact_records_the_servers_key_and_a_stack_key_is_taken_as_given(sshd):
    created = hk.HostKeyProvider().create(props(sshd))
    assert hk.same_key(created.outs["host_key"], sshd.host_public_key)
    given = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGgtgdW9ZLnsrjGnasMVWnMuUvMEboNU8GOJmJqjIes"
    assert hk.HostKeyProvider().create(props(sshd, expected=given)).outs["host_key"] == given


def test_first_contact_waits_for_a_booting_machine_then_gives_up_naming_the_wait(sshd, monkeypatch):
    sshd.stop()
    threading.Timer(1.0, sshd.start).start()  # SSH comes up a second later, as a booting VM's does
    monkeypatch.setenv(hk.WAIT_SECONDS_ENV, "20")
    assert hk.same_key(hk.HostKeyProvider().create(props(sshd)).outs["host_key"], sshd.host_public_key)
    sshd.stop()
    monkeypatch.setenv(hk.WAIT_SECONDS_ENV, "1")
    with pytest.raises(hk.HostKeyError, match=rf"node 'vm' \(127.0.0.1:{sshd.port}\): SSH did not answer within 1s"):
        hk.HostKeyProvider().create(props(sshd))


def test_another_key_at_the_same_machine_fails_naming_both_and_refresh_keeps_the_recorded_one(sshd):
    provider = hk.HostKeyProvider()
    outs = provider.create(props(sshd)).outs
    recorded = outs["host_key"]
    sshd.rekey()  # someone else answers at the node's address
    with pytest.raises(hk.HostKeyError) as err:
        provider.update("id", outs, {**outs, "port": sshd.port, "host": "127.0.0.1"})
    assert "its SSH host key changed" in str(err.value) and recorded[:40] in str(err.value)
    assert "nothing is sent to it" in str(err.value)
    assert provider.read("id", outs).outs["host_key"] == recorded
    # A new machine (its id changed) records afresh: that is a replace, never an update.
    diff = provider.diff("id", outs, {**outs, "machine": "tensordock:2"})
    assert diff.replaces == ["machine"]


def test_the_model_librarys_forward_verifies_the_pinned_key(sshd, service, tmp_path):
    pinned = sshd.host_public_key
    with forward("127.0.0.1", sshd.port, sshd.user, service, sshd.private_key, host_key=pinned) as local:
        assert requests.get(f"http://127.0.0.1:{local}/", timeout=10).text == "hello"
    sshd.rekey()
    with pytest.raises(ForwardError, match=r"the server's host key is not the pinned one .*nothing was sent"):
        with forward("127.0.0.1", sshd.port, sshd.user, service, sshd.private_key, host_key=pinned):
            pass


def tunnel_unit_command(sshd, service: int, known_hosts: Path, key_file: Path) -> list:
    """The ExecStart of the gateway's autossh unit for a node at the loopback sshd, as systemd would run
    it, with the unit's file paths moved under the test's directory."""
    raw = stack_estate("prod")
    raw["tunnels"] = [{"node": "qwen", "ports": [11434]}]
    images = [a for a, m in raw["gateway"]["aliases"].items() if m in raw["nodes"]["qwen"]["workloads"]["comfyui"]["workflows"]]
    for key in ("aliases", "fallbacks", "timeouts"):  # the unit forwards Ollama's port alone, as the test reaches it
        raw["gateway"][key] = {a: v for a, v in raw["gateway"][key].items() if a not in images}
    plan = plan_estate(parse_spec(raw))
    units = gw.gateway_units(plan, {"qwen": ("127.0.0.1", sshd.port, sshd.user, sshd.host_public_key)})
    line = next(l for l in units["estate-tunnel-qwen.service"].splitlines() if l.startswith("ExecStart="))
    line = line.removeprefix("ExecStart=").replace(gw.KNOWN_HOSTS, str(known_hosts)).replace(
        f"{gw.CONFIG_DIR}/tunnel_key", str(key_file))
    args = shlex.split(line)
    local = int(next(a for a in args if a.startswith("127.0.0.1:")).split(":")[1])
    # Reach the test's service through the forward the unit asks for (11434 on the node's loopback).
    args = [a.replace(":127.0.0.1:11434", f":127.0.0.1:{service}") for a in args]
    return args, local


@pytest.mark.skipif(not shutil.which("autossh"), reason="autossh is not installed (apt-get install autossh)")
def test_the_gateways_autossh_unit_verifies_the_pinned_key(sshd, service, tmp_path):
    key_file = tmp_path / "tunnel_key"
    key_file.write_text(sshd.private_key)
    key_file.chmod(0o600)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(gw.known_hosts({"qwen": ("127.0.0.1", sshd.port, sshd.user, sshd.host_public_key)}))
    args, local = tunnel_unit_command(sshd, service, known_hosts, key_file)

    def run_unit(seconds: float) -> bool:
        proc = subprocess.Popen(args, env={**os.environ, "AUTOSSH_GATETIME": "0", "AUTOSSH_MAXSTART": "1"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    if requests.get(f"http://127.0.0.1:{local}/", timeout=2).text == "hello":
                        return True
                except requests.RequestException:
                    time.sleep(0.2)
            return False
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    assert run_unit(15)  # the pinned key: the tunnel forwards
    sshd.rekey()
    assert not run_unit(4)  # another key at the node's address: no tunnel at all


def test_a_generated_host_key_rides_in_cloud_init_and_runcmd_makes_it_sshds(tmp_path):
    from components import workloads
    from core.config import parse_spec as parse
    from providers.ssh_key import generate

    pair = generate("gpu-estate-test-vm host key")
    bootstrap = workloads.render_cloud_init(parse(stack_estate("prod")).nodes["inference"], (), workloads=False)
    text = hk.install_in_cloud_init(bootstrap, pair["private_key"], pair["public_key"])
    doc = __import__("yaml").safe_load(text)
    files = {f["path"]: f for f in doc["write_files"]}
    assert files[hk.STAGED]["permissions"] == "0600" and files[hk.STAGED]["content"] == pair["private_key"]
    assert doc["runcmd"][0] == ["sh", "-c", hk.INSTALL]  # before anything else runs
    if shutil.which("cloud-init"):
        path = tmp_path / "user-data.yaml"
        path.write_text(text)
        run = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr
    # The runcmd line, run with /etc under tmp_path and the service manager stubbed.
    etc = tmp_path / "etc"
    (etc / "estate").mkdir(parents=True)
    (etc / "ssh").mkdir()
    (etc / "estate" / "ssh_host_ed25519_key").write_text(pair["private_key"])
    (etc / "estate" / "ssh_host_ed25519_key.pub").write_text(files[f"{hk.STAGED}.pub"]["content"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "restarted"}\n')
    (bin_dir / "systemctl").chmod(0o755)
    subprocess.run(["sh", "-c", hk.INSTALL.replace("/etc/", f"{etc}/")], check=True,
                   env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    installed = etc / "ssh" / "ssh_host_ed25519_key"
    assert installed.read_text() == pair["private_key"] and oct(installed.stat().st_mode & 0o777) == "0o600"
    assert not (etc / "estate" / "ssh_host_ed25519_key").exists()  # the staged copy is gone
    assert (tmp_path / "restarted").read_text().startswith("restart ssh")
    # OpenSSH reads what was installed: the public key it derives is the one the program pins.
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(installed)], capture_output=True, text=True, check=True)
    assert hk.same_key(derived.stdout, pair["public_key"])


def test_refresh_checks_a_key_known_in_advance_too(sshd, capsys, monkeypatch):
    warned = []
    monkeypatch.setattr(hk.pulumi.log, "warn", lambda msg, *a, **k: warned.append(msg))
    known = " ".join(sshd.host_public_key.split()[:2])
    outs = hk.HostKeyProvider().create(props(sshd, expected=known)).outs
    assert hk.HostKeyProvider().read("id", outs).outs["host_key"] == known and warned == []
    sshd.rekey()
    assert hk.HostKeyProvider().read("id", outs).outs["host_key"] == known
    assert len(warned) == 1 and "its SSH host key changed" in warned[0]
