"""An AWS VM's host key pinned from its own console: what cloud-init's real ``write-ssh-key-fingerprints``
prints, read through the AWS SDK (boto3) from a loopback EC2, checked against OpenSSH's sshd."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from providers import aws_console
from providers import host_key as hk
from core.text import bare_key
import sandbox

SCRIPT = Path("/usr/lib/cloud-init/write-ssh-key-fingerprints")
KERNEL = "[   41.702113] br-3f2a: port 1(veth9c1) entered forwarding state"


def printed_by_cloud_init(keys: Path) -> str:
    """What cloud-init's own script prints to the console for the host keys in ``keys`` (run with that
    directory mounted over /etc/ssh in a private mount namespace, the script's fixed path)."""
    why = None
    if not SCRIPT.exists():
        why = "cloud-init is not installed (apt-get install cloud-init)"
    elif os.geteuid() != 0 or not shutil.which("unshare"):
        why = "mounting the keys over /etc/ssh needs root and unshare"
    if why:
        if sandbox.vm_required():
            pytest.fail(why)
        pytest.skip(why)
    run = subprocess.run(["unshare", "--mount", "sh", "-c", 'mount --bind "$1" /etc/ssh && exec "$2" "" ""', "-",
                          str(keys), str(SCRIPT)], capture_output=True, text=True, timeout=60, check=True)
    assert "-----BEGIN SSH HOST KEY KEYS-----" in run.stdout
    return run.stdout


@pytest.fixture
def keys(sshd, tmp_path):
    """The sshd's own Ed25519 key, as sshd_config would keep it, beside an ECDSA key of the same VM."""
    folder = tmp_path / "etc-ssh"
    folder.mkdir()
    (folder / "ssh_host_ed25519_key.pub").write_text(bare_key(sshd.host_public_key) + " root@vm\n")
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(folder / "ssh_host_ecdsa_key")], check=True)
    return folder


def props(sshd, **extra):
    return {"node": "burst", "host": "127.0.0.1", "port": sshd.port, "machine": "i-0abc", "expected": None,
            "console": {"instance_id": "i-0abc", "region": "ca-central-1"}, "host_key": None, **extra}


def test_the_keys_cloud_init_prints_are_read_between_kernel_lines_and_carriage_returns(keys, sshd):
    printed = printed_by_cloud_init(keys)
    console = "\r\n".join([KERNEL, *printed.splitlines()[:2], KERNEL, *printed.splitlines()[2:], KERNEL])
    found = aws_console.host_keys(console)
    ecdsa = (keys / "ssh_host_ecdsa_key.pub").read_text()
    assert found == {"ssh-ed25519": bare_key(sshd.host_public_key), "ecdsa-sha2-nistp256": bare_key(ecdsa)}
    # A block the console cut off before its end counts for nothing.
    assert aws_console.host_keys(printed.split("-----END")[0]) == {}


def test_an_aws_vm_is_pinned_to_the_key_its_console_printed_read_through_boto3(keys, sshd, aws):
    aws.consoles["i-0abc"] = "Ubuntu 22.04 LTS\r\n" + printed_by_cloud_init(keys).replace("\n", "\r\n")
    outs = hk.HostKeyProvider().create(props(sshd)).outs
    assert outs["host_key"] == bare_key(sshd.host_public_key)  # Ed25519 first, as sshd offers it
    assert aws.regions[-1] == "ca-central-1"  # the node's region, not the SDK's default


def test_a_machine_answering_with_another_key_than_the_console_printed_gets_nothing(keys, sshd, aws):
    aws.consoles["i-0abc"] = printed_by_cloud_init(keys)
    printed = bare_key(sshd.host_public_key)
    sshd.rekey()  # someone else answers at the VM's address
    with pytest.raises(hk.HostKeyError) as err:
        hk.HostKeyProvider().create(props(sshd))
    offered, console = str(err.value).split("offers ")[1].split(", but the VM's console printed ")
    assert offered.startswith(bare_key(sshd.host_public_key)[:60]) and console.startswith(printed[:60])
    assert "nothing is sent to it" in str(err.value)


def test_a_console_without_keys_yet_is_waited_for_then_ssh_records_the_key_after_the_grace(sshd, aws, monkeypatch):
    aws.consoles["i-0abc"] = KERNEL
    monkeypatch.setenv(hk.CONSOLE_GRACE_ENV, "1")
    outs = hk.HostKeyProvider().create(props(sshd)).outs
    assert hk.same_key(outs["host_key"], sshd.host_public_key)
    assert len([m for m, _p in aws.log]) >= 2  # the console was asked again while the grace ran


def test_a_role_that_may_not_read_the_console_falls_back_to_first_contact(sshd, aws):
    aws.denied = "UnauthorizedOperation"
    outs = hk.HostKeyProvider().create(props(sshd)).outs
    assert hk.same_key(outs["host_key"], sshd.host_public_key)
    with pytest.raises(aws_console.ConsoleError, match="UnauthorizedOperation"):
        aws_console.console_output("i-0abc", "ca-central-1")
