"""The SSH forwards a local gateway keeps to a node reached over SSH (``gateway.deploy: local``).

What the gateway host's autossh units are to a deployed gateway: one ``ssh -N`` process on this machine
for each tunnelled node, forwarding a free port of 127.0.0.1 to each service port on the node's loopback
that the gateway routes to. It signs in with the operator's key (``gpu-estate:sshPrivateKey`` or
``ESTATE_SSH_PRIVATE_KEY``, as the model library does) and accepts the node's pinned host key alone. The
key and the ``known_hosts`` are written to a private temporary directory only until the forward is up.

The local ports are picked here (a workstation's own Ollama may hold 11434) and are outputs the gateway's
config reads; a restarted tunnel keeps them where they are still free. The process runs in a session of
its own, so it outlives an `up` that ends, not a killed one (``providers.local.follow_engine``); a tunnel
that died (the node rebooted, the connection dropped) is started again in place by the next `up`, and
delete stops it.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import pulumi
from pulumi.dynamic import ConfigureRequest, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from providers.local import alive, delete_process, spawn, stop_process
from providers import ssh_forward
from providers.ssh_forward import port_free
from providers.http import CloudError
from providers.resource import DynamicResource

KEY_ENV = "ESTATE_SSH_PRIVATE_KEY"


class LocalTunnelProvider(ResourceProvider):
    def __init__(self) -> None:
        super().__init__()
        self._private_key: Optional[str] = None

    def configure(self, req: ConfigureRequest) -> None:
        self._private_key = req.config.get("gpu-estate:sshPrivateKey") or None

    def _start(self, props: Dict[str, Any], keep: Optional[Dict[str, int]] = None) -> Dict[str, Any]:
        node, host, port, user = props["node"], props["host"], int(props["port"]), props["user"]
        key = self._private_key or os.environ.get(KEY_ENV)
        if not key:
            raise CloudError(f"{node}: the local gateway's tunnel needs an SSH private key: set {KEY_ENV} or the "
                             "config secret gpu-estate:sshPrivateKey")
        if not host:
            raise CloudError(f"{node}: no SSH address yet for the local gateway's tunnel")
        keep = keep or {}
        ports = {str(int(r)): (keep[str(int(r))] if keep.get(str(int(r))) and port_free(keep[str(int(r))])
                               else ssh_forward.free_port()) for r in props["remote_ports"]}
        forwards = [(local, int(remote)) for remote, local in ports.items()]
        state = Path(props["state_dir"])
        state.mkdir(parents=True, exist_ok=True)
        log = state / f"tunnel-{node}.log"
        start = log.stat().st_size if log.exists() else 0
        host_key = props.get("host_key")
        with ssh_forward.credentials(host, port, key, host_key) as (key_file, known_hosts):
            (local, remote), more = forwards[0], forwards[1:]
            cmd = ssh_forward.ssh_command(host, port, user, key_file, local, remote, known_hosts,
                                          pinned=bool(host_key), more=more)
            proc = spawn(cmd, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, log, state)
            try:
                ssh_forward.wait_listening(proc, [lo for lo, _ in forwards],
                                           lambda: log.read_text(errors="replace")[start:], host, port, user, host_key)
            except ssh_forward.ForwardError as err:
                stop_process(proc.pid)
                raise CloudError(f"{node}: the local gateway's tunnel did not come up: {err}") from err
        pulumi.log.info(f"{node}: local gateway tunnel {', '.join(f'127.0.0.1:{lo} -> {remote}' for lo, remote in forwards)}")
        return {**props, "pid": proc.pid, "ports": ports}

    def create(self, props: Dict[str, Any]) -> CreateResult:
        outs = self._start(props)
        return CreateResult(f"local-tunnel-{props['node']}-{outs['pid']}", outs)

    def diff(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> DiffResult:
        changed = [f.name for f in dataclasses.fields(LocalTunnelArgs) if olds.get(f.name) != news.get(f.name)]
        # A tunnel that died is started again in place by the next `up`, with or without a refresh.
        return DiffResult(changes=bool(changed) or not alive(olds.get("pid")), replaces=[],
                          delete_before_replace=True)

    def update(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> UpdateResult:
        stop_process(olds.get("pid"))
        return UpdateResult(self._start(news, keep={k: int(v) for k, v in (olds.get("ports") or {}).items()}))

    def read(self, id_: str, props: Dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)

    def delete(self, _id: str, props: Dict[str, Any]) -> None:
        delete_process(props.get("pid"), f"{props.get('node')}: the local gateway's SSH tunnel",
                       f"to {props.get('user')}@{props.get('host')}:{props.get('port')}", pulumi.log.warn)


@dataclasses.dataclass(frozen=True)
class LocalTunnelArgs:
    """The inputs of ``pulumi-python:dynamic/gateway:LocalTunnel``."""

    node: str
    host: pulumi.Input[Optional[str]]
    """The node's SSH address."""
    port: pulumi.Input[int]
    """Its SSH port."""
    user: str
    host_key: pulumi.Input[Optional[str]]
    """The node's pinned host key: OpenSSH accepts that key alone."""
    remote_ports: List[int]
    """The service ports on the node's loopback the gateway routes to."""
    state_dir: str
    """Where the tunnel's log is kept (beside the gateway's)."""

    def to_props(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class LocalTunnel(DynamicResource, module="gateway", name="LocalTunnel"):
    """``pulumi-python:dynamic/gateway:LocalTunnel``: a local gateway's forwards to one node."""

    ports: pulumi.Output[Dict[str, int]]
    """The node's service port -> the port on 127.0.0.1 that reaches it."""
    pid: pulumi.Output[int]

    def __init__(self, name: str, args: LocalTunnelArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(LocalTunnelProvider(), name, {"ports": None, "pid": None, **args.to_props()}, opts)
