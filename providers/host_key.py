"""A node's SSH host key, pinned: ``pulumi-python:dynamic/ssh:HostKey``.

Every SSH connection the estate makes to a node (the ``command`` provider's, the model library's
OpenSSH forward, the gateway host's autossh units) verifies the node's host key against this one, so a
machine that answers at the node's address with another key gets no command and no secret.

Where the key is known before first contact, that is the key: an owned host's from the stack
(``ssh.host_key``), or the one the program generated for a TensorDock or GCP VM it launched and installed
through the VM's cloud-init (``install_in_cloud_init``). An AWS VM's key is read from what the VM printed
to its own console, through the EC2 API (``providers.aws_console``), and checked against what answers at
its address. Otherwise (Vast.ai and RunPod containers, whose host keys their vendors set; a VM launched
before its key was generated; an AWS VM whose console cannot be read) the key is recorded on first
contact with the machine (``ssh-keyscan``, waiting while it boots) and kept in state: a later contact that
finds another key at the same machine fails with a message naming both. Only a new machine (its id
changes) records a new key.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Any, Dict, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from core.text import bare_key
from providers import aws_console
from providers.aws_console import ConsoleError
from providers.resource import DynamicResource
from providers.wait import WaitTimeout, wait_for

WAIT_SECONDS_ENV = "GPU_ESTATE_HOST_KEY_WAIT_SECONDS"
WAIT_SECONDS = 900.0
"""How long first contact waits for a booting machine's SSH (a GPU VM takes minutes)."""
CONSOLE_GRACE_ENV = "GPU_ESTATE_HOST_KEY_CONSOLE_GRACE_SECONDS"
CONSOLE_GRACE_SECONDS = 300.0
"""How long, once SSH answers, first contact waits for a VM's console to print its host keys (cloud-init
prints them at the end of its first boot) before recording the key SSH offers instead."""
PREFERRED = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-512",
             "ssh-rsa")


STAGED = "/etc/estate/ssh_host_ed25519_key"
"""Where cloud-init writes the generated host key; ``runcmd`` installs it as sshd's (cloud-init's own
ssh module, which runs after ``write_files``, would replace a key written straight into /etc/ssh)."""
INSTALL = (f"install -m 0600 {STAGED} /etc/ssh/ssh_host_ed25519_key && "
           f"install -m 0644 {STAGED}.pub /etc/ssh/ssh_host_ed25519_key.pub && rm -f {STAGED} && "
           "(systemctl restart ssh || systemctl restart sshd || service ssh restart)")


def install_in_cloud_init(cloud_init: str, private_key: str, public_key: str) -> str:
    """The VM's cloud-init with the generated host key staged by ``write_files`` and made sshd's first
    thing in ``runcmd``. Only what TensorDock's API passes on is used (``write_files``, ``runcmd``)."""
    import yaml

    doc = yaml.safe_load(cloud_init) or {}
    public = bare_key(public_key)
    doc["write_files"] = [*(doc.get("write_files") or []),
                          {"path": STAGED, "content": private_key, "permissions": "0600", "owner": "root:root"},
                          {"path": f"{STAGED}.pub", "content": public + "\n", "permissions": "0644",
                           "owner": "root:root"}]
    doc["runcmd"] = [["sh", "-c", INSTALL], *(doc.get("runcmd") or [])]
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False)


class HostKeyError(RuntimeError):
    pass


def scan_all(host: str, port: int, timeout: float = 5.0) -> Dict[str, str]:
    """Every SSH host key the host offers, ``{type: "<type> <base64>"}`` (empty when nothing answers)."""
    keyscan = shutil.which("ssh-keyscan")
    if keyscan is None:
        raise HostKeyError("ssh-keyscan is not installed (apt-get install openssh-client)")
    run = subprocess.run([keyscan, "-T", str(int(timeout)), "-p", str(int(port)), "-t", "ed25519,ecdsa,rsa", "--", host],
                         capture_output=True, text=True, timeout=timeout * 4 + 5)
    keys = {}
    for line in run.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            keys[parts[1]] = f"{parts[1]} {parts[2]}"
    return keys


def preferred(keys: Dict[str, str]) -> Optional[str]:
    """The key a pin uses among several of one host: Ed25519 first."""
    for kind in PREFERRED:
        if kind in keys:
            return keys[kind]
    return next(iter(keys.values()), None)


def scan(host: str, port: int, timeout: float = 5.0) -> Optional[str]:
    """The host's preferred SSH host key as ``<type> <base64>``, or None when nothing answers."""
    return preferred(scan_all(host, port, timeout))


def launched_with(launched_at: Optional[str], key_created_at: Optional[str]) -> bool:
    """Whether a machine launched at ``launched_at`` (RFC 3339, as GCP reports ``creationTimestamp``) was
    launched with a key made at ``key_created_at``: its user-data held the key from the key's creation
    on, so only a machine launched after it has the key; one launched before keeps its own."""
    import datetime

    if not launched_at or not key_created_at:
        return False
    return datetime.datetime.fromisoformat(launched_at) > datetime.datetime.fromisoformat(key_created_at)


def same_key(a: Optional[str], b: Optional[str]) -> bool:
    """Whether two OpenSSH public keys are one key (comments aside)."""
    return bool(a and b) and bare_key(a) == bare_key(b)


def _where(props: Dict[str, Any]) -> str:
    return f"node {props.get('node')!r} ({props.get('host')}:{props.get('port')})"


class HostKeyProvider(ResourceProvider):
    def _first_contact(self, props: Dict[str, Any]) -> str:
        if props.get("expected"):
            return props["expected"].strip()
        if not props.get("host"):
            raise HostKeyError(f"{_where(props)}: no SSH address yet, so no host key to record")
        console = props.get("console") or None
        wait = float(os.environ.get(WAIT_SECONDS_ENV) or WAIT_SECONDS)
        grace = float(os.environ.get(CONSOLE_GRACE_ENV) or CONSOLE_GRACE_SECONDS)
        started = time.monotonic()
        said = started
        answered_at: Optional[float] = None

        def look() -> Optional[str]:
            """The key, once the console printed it or SSH answers (after the console's grace); else None."""
            nonlocal console, answered_at
            now = time.monotonic()
            if console is not None:
                try:
                    key = self._from_console(props, console)
                except ConsoleError as exc:
                    pulumi.log.warn(f"{_where(props)}: {exc}; its host key is recorded on first contact instead")
                    console, key = None, None
                if key:
                    return key
            found = scan(props["host"], int(props["port"]))
            if found and answered_at is None:
                answered_at = now
            if found and (console is None or now - answered_at > grace):
                if console is not None:
                    pulumi.log.warn(f"{_where(props)}: SSH answers but its console printed no host key within "
                                    f"{grace:.0f}s ({CONSOLE_GRACE_ENV} sets the wait); recorded on first contact")
                pulumi.log.info(f"{_where(props)}: recorded its SSH host key {found[:40]}...")
                return found
            return None

        def progress(_none: None) -> None:
            nonlocal said
            now = time.monotonic()
            if now - said > 30:
                waiting = "its console to print the host key" if console is not None else "SSH"
                pulumi.log.info(f"{_where(props)}: waiting for {waiting} ({now - started:.0f}s of {wait:.0f}s)")
                said = now

        try:
            return wait_for(look, bool, started + wait, min(5.0, max(0.2, wait / 100)),
                            f"{_where(props)}: its host key", on_retry=progress)
        except WaitTimeout as late:
            raise HostKeyError(f"{_where(props)}: SSH did not answer within {wait:.0f}s, so its host key "
                               f"could not be recorded ({WAIT_SECONDS_ENV} sets the wait)") from late

    def _from_console(self, props: Dict[str, Any], console: Dict[str, Any]) -> Optional[str]:
        """The key the VM printed to its EC2 console, once it has; a machine at the node's address that
        offers another key of a type the console lists is refused, naming both."""
        keys = aws_console.host_keys(aws_console.console_output(console["instance_id"], console.get("region")))
        key = preferred(keys)
        if key is None:
            return None
        offered = scan_all(props["host"], int(props["port"]))
        for kind, printed in keys.items():
            if kind in offered and not same_key(printed, offered[kind]):
                raise HostKeyError(f"{_where(props)}: the machine answering offers {offered[kind][:60]}..., but "
                                   f"the VM's console printed {printed[:60]}...: nothing is sent to it")
        pulumi.log.info(f"{_where(props)}: pinned the SSH host key its EC2 console printed {key[:40]}...")
        return key

    def create(self, props: Dict[str, Any]) -> CreateResult:
        key = self._first_contact(props)
        return CreateResult(f"host-key-{props.get('node')}-{key.split()[1][-12:]}", {**props, "host_key": key})

    def diff(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> DiffResult:
        replaces = [k for k in ("machine", "expected") if olds.get(k) != news.get(k)]
        changed = replaces or [k for k in ("host", "port", "node") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> UpdateResult:
        """Same machine, new address (a marketplace re-mapped its SSH port): the key found there must be
        the recorded one."""
        recorded = olds.get("host_key")
        found = scan(news["host"], int(news["port"])) if news.get("host") else None
        if found is not None and not same_key(found, recorded):
            raise HostKeyError(self.changed_message(news, recorded, found))
        return UpdateResult({**news, "host_key": recorded})

    def read(self, id_: str, props: Dict[str, Any]) -> ReadResult:
        """Refresh keeps the recorded key; one that changed is reported, never adopted."""
        recorded = props.get("host_key")
        if props.get("host") and recorded:
            try:
                found = scan(props["host"], int(props["port"]))
            except (HostKeyError, subprocess.TimeoutExpired):
                found = None
            if found is not None and not same_key(found, recorded):
                pulumi.log.warn(self.changed_message(props, recorded, found))
        return ReadResult(id_, props)

    @staticmethod
    def changed_message(props: Dict[str, Any], recorded: Optional[str], found: str) -> str:
        return (f"{_where(props)}: its SSH host key changed (recorded {str(recorded)[:60]}..., found "
                f"{found[:60]}...): nothing is sent to it. If the machine was rebuilt on purpose, record the "
                f"new key with `pulumi up --replace` on this host key resource")


class HostKey(DynamicResource, module="ssh", name="HostKey"):
    """``pulumi-python:dynamic/ssh:HostKey``: the key every SSH connection to a node verifies."""

    host_key: pulumi.Output[str]

    def __init__(self, name: str, node: str, host: pulumi.Input[Optional[str]], port: pulumi.Input[int],
                 machine: pulumi.Input[str], expected: pulumi.Input[Optional[str]] = None,
                 console: Optional[pulumi.Input[Dict[str, Any]]] = None,
                 opts: Optional[pulumi.ResourceOptions] = None):
        """``console``: ``{instance_id, region}`` of an EC2 VM whose console prints its host keys
        (``providers.aws_console``); the key is read there rather than trusted on first contact."""
        super().__init__(HostKeyProvider(), name, {
            "node": node, "host": host, "port": port, "machine": machine, "expected": expected,
            "console": console, "host_key": None,
        }, opts)
