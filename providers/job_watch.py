"""A GPU job's watch entry on the gateway host: ``pulumi-python:dynamic/job:Watch``.

The spend watcher's job agent (``agents/jobs.py``) releases a job's machine when its command ends or a cap is
reached; this resource gives it the job. It is written before the job's machine is rented (the job's
resource depends on it and on nothing of the rest of the stack), so a job is never launched unwatched,
whatever else in the same `up` fails: Pulumi starts no new step after a failed one, so an entry written
after the launch could be left out by a failure elsewhere while the machine already bills.

The entry is one 0600 file, ``<dir>/jobs/<file>.json`` beside the watcher's document (``core.jobs.WATCH_DIR``,
``watch_file``): what ``core.jobs.watch_entry`` says, the job's bucket key (``key``) and ``created_at``, when
the entry was first written, from which the caps are counted (before the machine is rented: a cap errs
early by the launch's minutes, never late).

- ``deploy: local``: written in the local gateway's state directory (``directory``), atomically.
- ``deploy: ssh``: written over SSH on the gateway host (``ssh``: its address, pinned host key, user) into
  ``directory`` there (0700, beside the watcher's document), the content on the SSH command's stdin.

A new run (a new ``label``) replaces the entry, so the new run's caps count from its own start; anything else
rewrites it in place, keeping ``created_at``. Delete removes the file (the job's resource, which depends on
it, is deleted first); a gateway host that cannot be reached gets a warning naming the file left there, and
the destroy goes on. Refresh reports an entry whose file is gone as changed, and the next `up` writes it
again with its ``created_at``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

import pulumi
from pulumi.dynamic import ConfigureRequest, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from providers.http import CloudError
from providers.resource import DynamicResource
from providers.ssh_forward import ForwardError, run_remote

PROVIDER_VERSION = "1"


def write_script(path: str) -> str:
    """The shell that writes stdin to ``path`` (a fixed directory and a file name made safe by
    ``core.jobs.watch_file``, quoted besides) 0600, replaced atomically."""
    d, f = shlex.quote(os.path.dirname(path)), shlex.quote(path)
    return f"set -eu; umask 077; install -d -m 0700 {d}; cat > {f}.tmp; mv {f}.tmp {f}"


def remove_script(path: str) -> str:
    return f"rm -f {shlex.quote(path)}"


def present_script(path: str) -> str:
    return f"if [ -f {shlex.quote(path)} ]; then echo present; else echo absent; fi"


class JobWatchProvider(ResourceProvider):
    def __init__(self) -> None:
        super().__init__()
        self._private_key: Optional[str] = None

    def configure(self, req: ConfigureRequest) -> None:
        self._private_key = req.config.get("gpu-estate:sshPrivateKey") or None

    # -- where the file is --------------------------------------------------------------------------
    @staticmethod
    def _path(props: Dict[str, Any]) -> str:
        return f"{props['directory'].rstrip('/')}/{props['file']}"

    def _remote(self, props: Dict[str, Any], script: str, stdin: str = "") -> str:
        ssh = props["ssh"]
        key = self._private_key or os.environ.get(ssh.get("key_env") or "ESTATE_SSH_PRIVATE_KEY")
        if not key:
            raise CloudError(f"{props['name']}: no SSH private key (config secret gpu-estate:sshPrivateKey or "
                             f"{ssh.get('key_env')}) to reach the gateway host with")
        try:
            return run_remote(ssh["host"], int(ssh["port"]), ssh["user"], key, script, stdin=stdin,
                              host_key=ssh.get("host_key"))
        except ForwardError as err:
            raise CloudError(f"{props['name']}: the gateway host {ssh['user']}@{ssh['host']}:{ssh['port']}: "
                             f"{err}") from err

    def _write(self, props: Dict[str, Any], created_at: float) -> Dict[str, Any]:
        text = json.dumps({**props["entry"], "created_at": created_at}, sort_keys=True)
        path = self._path(props)
        if not props.get("ssh"):
            Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".entry-")  # 0600
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        else:
            self._remote(props, write_script(path), stdin=text)
        pulumi.log.info(f"{props['name']}: watched by the spend watcher from {path}")
        return {**props, "created_at": created_at, "path": path, "present": True, "version": PROVIDER_VERSION}

    def _present(self, props: Dict[str, Any]) -> Optional[bool]:
        """Whether the file is there; None when the gateway host cannot be asked."""
        path = self._path(props)
        if not props.get("ssh"):
            return os.path.isfile(path)
        try:
            return self._remote(props, present_script(path)).strip() == "present"
        except CloudError:
            return None

    # -- the resource -------------------------------------------------------------------------------
    def create(self, props: Dict[str, Any]) -> CreateResult:
        outs = self._write(props, time.time())
        return CreateResult(f"job-watch-{props['name']}", outs)

    def diff(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> DiffResult:
        label_changed = (olds.get("entry") or {}).get("label") != (news.get("entry") or {}).get("label")
        changed = [k for k in ("name", "file", "directory", "ssh", "entry") if olds.get(k) != news.get(k)]
        missing = olds.get("present") is False
        return DiffResult(changes=bool(changed) or missing, replaces=["entry"] if label_changed else [],
                          delete_before_replace=True)

    def update(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> UpdateResult:
        if olds.get("path") and olds.get("path") != self._path(news):
            self._remove(olds)
        return UpdateResult(self._write(news, float(olds.get("created_at") or time.time())))

    def read(self, id_: str, props: Dict[str, Any]) -> ReadResult:
        present = self._present(props)
        if present is False:
            pulumi.log.warn(f"{props.get('name')}: its watch entry {props.get('path')} is gone; the next `up` "
                            "writes it again")
        return ReadResult(id_, {**props, "present": present is not False})

    def _remove(self, props: Dict[str, Any]) -> None:
        path = props.get("path") or self._path(props)
        if not props.get("ssh"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        else:
            self._remote(props, remove_script(path))

    def delete(self, _id: str, props: Dict[str, Any]) -> None:
        """The entry removed. A gateway host that cannot be reached (or fails the removal) is warned about,
        naming what is left there and how to remove it, and the destroy goes on (``providers.host_cleanup``'s
        rule): the entry bills nothing, and failing here would keep every GPU node whose delete had not
        started yet rented. The bucket key it holds is the job's own, deleted with the job's bucket user."""
        try:
            self._remove(props)
        except CloudError as err:
            ssh = props["ssh"]
            path = props.get("path") or self._path(props)
            pulumi.log.warn(
                f"{props['name']}: its watch entry could not be removed ({err}). Left on the gateway host: {path} "
                "(the job's label, caps and its bucket key, which the destroy deletes with the job's bucket user); "
                "nothing there bills. Once the host answers, remove it with:\n"
                f"ssh -p {int(ssh['port'])} {shlex.quote(ssh['user'] + '@' + ssh['host'])} "
                f"{shlex.quote(remove_script(path))}\nThe destroy goes on.")


@dataclasses.dataclass(frozen=True)
class JobWatchArgs:
    """The inputs of ``pulumi-python:dynamic/job:Watch``."""

    name: str
    """The job's name."""
    file: str
    """The entry's file name (``core.jobs.watch_file``)."""
    entry: pulumi.Input[Dict[str, Any]]
    """``core.jobs.watch_entry`` with the job's bucket key (``key``): a secret."""
    directory: str
    """The directory the entry is written in, beside the watcher's document (``core.jobs.WATCH_DIR``): the
    local gateway's ``<state dir>/jobs``, or the gateway host's ``/etc/estate/gateway/spend/jobs``."""
    ssh: Optional[pulumi.Input[Dict[str, Any]]] = None
    """``deploy: ssh``: ``host``, ``port``, ``user``, ``host_key`` (pinned) and ``key_env`` of the gateway host."""


class JobWatch(DynamicResource, module="job", name="Watch"):
    """A job's watch entry beside the spend watcher: ``pulumi-python:dynamic/job:Watch``."""

    created_at: pulumi.Output[float]
    path: pulumi.Output[str]
    SECRET_OUTPUTS = ("entry",)

    def __init__(self, name: str, args: JobWatchArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(JobWatchProvider(), name, {
            "created_at": None, "path": None, "present": None, "version": PROVIDER_VERSION,
            **{f.name: getattr(args, f.name) for f in dataclasses.fields(args)}}, opts)
