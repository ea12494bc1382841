"""What the estate's commands leave on a host it does not rent, removed over SSH when they go, and never a
reason to keep what bills: ``pulumi-python:dynamic/ssh:Cleanup``.

pulumi-command's ``remote.Command`` deletes over SSH. On a rented machine its commands are
``deleted_with`` the machine, so a destroy never connects. On an owned host (``provider: host``: the
gateway host deployed over SSH, a tunnelled homelab node) nothing is deleted with a machine, and the
gateway's commands take the nodes' addresses as inputs, so the engine deletes them before the nodes: with
the host unreachable their delete failed and the destroy stopped there, every GPU node still rented.

Those commands are ``deleted_with`` one of these instead: whenever it goes too the engine skips their
deletes, and this runs the same delete scripts over SSH (OpenSSH, the host's pinned key alone). A host that
does not answer, answers with another key or fails the script gets a warning naming the host, what is
left there and the command that removes it, and the destroy goes on: what is left bills nothing. Create,
update and refresh never connect; the resource only holds what its delete will run.
"""
from __future__ import annotations

import dataclasses
import os
import secrets
import shlex
import shutil
import subprocess
from typing import Any, Dict, List, Optional

import pulumi
from pulumi.dynamic import ConfigureRequest, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from providers import ssh_forward
from providers.resource import DynamicResource

CONNECT_TIMEOUT_SECONDS = 20
RUN_TIMEOUT_SECONDS = 120
SSH_FAILED = 255
"""OpenSSH's exit status when it could not connect, authenticate or verify the host (never the script's)."""


@dataclasses.dataclass(frozen=True)
class HostCleanupArgs:
    """The inputs of ``pulumi-python:dynamic/ssh:Cleanup``."""

    node: str
    """The owned host's node name, for the warning."""
    host: pulumi.Input[str]
    port: pulumi.Input[int]
    user: str
    host_key: pulumi.Input[str]
    """The host's pinned key (``ssh.host_key``): OpenSSH accepts it alone."""
    script: pulumi.Input[str]
    """The delete scripts of the commands deleted with this, in order; run with ``sh -s``."""
    left: pulumi.Input[str]
    """What stays on the host if the script cannot run there (units, directories, files), for the warning."""


def ssh_argv(host: str, port: int, user: str, known_hosts: str, key_file: Optional[str],
             remote: str = "sh -s") -> List[str]:
    """OpenSSH running ``remote`` (a script from stdin by default; else fixed text of the estate's): no
    prompt, the pinned host key only, and the operator's key file when there is one (else the SSH agent, as
    pulumi-command uses). A connection that stops answering ends within a minute."""
    return [shutil.which("ssh") or "ssh", "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT_SECONDS}", "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4", *(["-i", key_file] if key_file else []),
            "-p", str(int(port)), f"{user}@{host}", remote]


def manual_command(props: Dict[str, Any]) -> str:
    """What the operator runs to remove what was left, once the host answers: the script quoted as one
    argument, so a copy indented by the CLI's output still runs as it is."""
    return f"ssh -p {int(props['port'])} {props['user']}@{props['host']} {shlex.quote(props['script'].strip())}"


class HostCleanupProvider(ResourceProvider):
    def __init__(self) -> None:
        super().__init__()
        self._private_key: Optional[str] = None

    def configure(self, req: ConfigureRequest) -> None:
        self._private_key = req.config.get("gpu-estate:sshPrivateKey") or None

    def create(self, props: Dict[str, Any]) -> CreateResult:
        return CreateResult(f"cleanup-{props['node']}-{secrets.token_hex(4)}", dict(props))

    def diff(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> DiffResult:
        changed = [f.name for f in dataclasses.fields(HostCleanupArgs) if olds.get(f.name) != news.get(f.name)]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: Dict[str, Any], news: Dict[str, Any]) -> UpdateResult:
        return UpdateResult(dict(news))

    def read(self, id_: str, props: Dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)  # nothing to read: it holds what its delete runs

    def run(self, props: Dict[str, Any]) -> subprocess.CompletedProcess:
        key = self._private_key or os.environ.get("ESTATE_SSH_PRIVATE_KEY")
        with ssh_forward.credentials(props["host"], int(props["port"]), key, props["host_key"]) as (key_file, known_hosts):
            argv = ssh_argv(props["host"], int(props["port"]), props["user"], known_hosts, key_file)
            return subprocess.run(argv, input=props["script"], capture_output=True, text=True,
                                  timeout=CONNECT_TIMEOUT_SECONDS + RUN_TIMEOUT_SECONDS)

    def delete(self, _id: str, props: Dict[str, Any]) -> None:
        where = f"{props['user']}@{props['host']}:{int(props['port'])}"
        try:
            done = self.run(props)
        except (subprocess.TimeoutExpired, OSError) as err:
            why = f"no answer in {CONNECT_TIMEOUT_SECONDS + RUN_TIMEOUT_SECONDS} s" \
                if isinstance(err, subprocess.TimeoutExpired) else str(err)
            done = subprocess.CompletedProcess([], SSH_FAILED, "", why)
        if done.returncode == 0:
            return
        err = (done.stderr or "").strip().splitlines()[-3:]
        why = "; ".join(err) or f"exit {done.returncode}"
        happened = (f"could not be reached over SSH ({why})" if done.returncode == SSH_FAILED
                    else f"ran its cleanup, which failed ({why}), so some of it may remain")
        # It bills nothing: named with where it is and how to remove it, never a reason to keep the nodes.
        pulumi.log.warn(f"{props['node']}: {where} {happened}. Left on that host: {props['left']}. Nothing "
                        f"there bills. Once it answers, remove it with:\n{manual_command(props)}\n"
                        "The destroy goes on.")


class HostCleanup(DynamicResource, module="ssh", name="Cleanup"):
    """``pulumi-python:dynamic/ssh:Cleanup``: the delete scripts of an owned host's commands, run over SSH
    when they go, warning instead of failing when the host cannot be reached."""

    def __init__(self, name: str, args: HostCleanupArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(HostCleanupProvider(), name,
                         {f.name: getattr(args, f.name) for f in dataclasses.fields(args)}, opts)
