"""A local gateway's SSH forwards to a node (providers/local_tunnel.py) against OpenSSH's sshd on loopback:
free local ports that reach the node's loopback, the pinned host key or nothing, a dead tunnel started
again in place on its ports, and delete stopping it."""
import os

import pytest
import requests

from providers.local import alive, stop_process
from providers.http import CloudError
from providers.local_tunnel import KEY_ENV, LocalTunnelProvider


@pytest.fixture
def tunnel(sshd, ollama, monkeypatch, tmp_path):
    """The inputs of a tunnel to a loopback Ollama standing for the node's service, and its provider."""
    monkeypatch.setenv(KEY_ENV, sshd.private_key)
    props = {"node": "vm", "host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
             "host_key": " ".join(sshd.host_public_key.split()[:2]),
             "remote_ports": [ollama.httpd.server_address[1]], "state_dir": str(tmp_path / "gateway")}
    provider = LocalTunnelProvider()
    made = []
    yield provider, props, made
    for outs in made:
        stop_process(outs.get("pid"))


def reaches(outs, remote) -> bool:
    local = outs["ports"][str(remote)]
    return requests.get(f"http://127.0.0.1:{local}/api/version", timeout=5).ok


def test_a_tunnel_forwards_free_local_ports_to_the_nodes_loopback(tunnel, ollama):
    provider, props, made = tunnel
    created = provider.create(props)
    made.append(created.outs)
    remote = props["remote_ports"][0]
    assert reaches(created.outs, remote) and created.outs["ports"][str(remote)] != remote
    assert not [f for f in os.listdir(props["state_dir"]) if "key" in f]  # the key was never left on disk
    assert not provider.diff(created.id, created.outs, props).changes
    provider.delete(created.id, created.outs)
    assert not alive(created.outs["pid"])


def test_a_dead_tunnel_is_started_again_in_place_on_its_ports(tunnel):
    provider, props, made = tunnel
    created = provider.create(props)
    made.append(created.outs)
    stop_process(created.outs["pid"])  # the node rebooted, the connection dropped
    assert provider.diff(created.id, created.outs, props).changes
    updated = provider.update(created.id, created.outs, props).outs
    made.append(updated)
    assert updated["ports"] == created.outs["ports"] and updated["pid"] != created.outs["pid"]
    assert reaches(updated, props["remote_ports"][0])


def test_another_host_key_gets_no_tunnel(tunnel, sshd, tmp_path):
    provider, props, made = tunnel
    from loopback.sshd import keygen

    keygen(tmp_path / "other")
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    with pytest.raises(CloudError, match="host key is not the pinned one"):
        provider.create({**props, "host_key": other})


def test_no_key_names_where_to_put_one(tunnel, monkeypatch):
    provider, props, made = tunnel
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(CloudError, match=f"set {KEY_ENV} or the config secret gpu-estate:sshPrivateKey"):
        provider.create(props)
