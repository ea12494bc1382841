"""The identity proxy as a process on the machine that runs `pulumi up`, beside a local gateway.

``pulumi-python:dynamic/identity:LocalProxy`` runs ``python -m agents.identity --port <free port>`` (what a
gateway host's unit runs) with its document (the services' URLs) in the gateway's state directory. The
service accounts' keys (``ESTATE_IDENTITY_KEYS``) and the bearer LiteLLM's route presents
(``ESTATE_IDENTITY_BEARER``) reach it as secret inputs in its environment, never a file or a command line.
It is run, updated in place, restarted and stopped as the spend watcher is (``providers.local_spend``): a
changed URL is the document rewritten in place, which the proxy reads again; new keys restart it, on a new
free port, which is a change of the local LiteLLM's config (a rotation restarts the local LiteLLM too; on a
gateway host the proxy keeps its ``identity_port``).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import pulumi

from providers.local import alive, stop_process
from core import identity
from providers.http import CloudError
from providers.local_spend import LocalSpendWatcherProvider
from providers.resource import DynamicResource
from providers.ssh_forward import free_port, listening
from providers.wait import WaitTimeout, wait_for, within

START_SECONDS = 30.0
"""How long the proxy is given to listen."""


class LocalIdentityProxyProvider(LocalSpendWatcherProvider):
    DOCUMENT = identity.DOCUMENT_FILE
    NAME = "identity"
    WHAT, KEEPS = "identity: the proxy", "its document"
    INPUTS = ("document", "every_seconds", "state_dir", "keys", "bearer", "port")
    RESTARTS = ("every_seconds", "state_dir", "keys", "bearer", "port")
    OUTPUTS = ("url",)

    def _command(self, props: Dict[str, Any], doc: Path) -> Tuple[List[str], Dict[str, str], Dict[str, Any]]:
        port = int(props.get("port") or 0) or free_port()
        env = {identity.KEYS_ENV: json.dumps(props.get("keys") or {}, sort_keys=True),
               identity.BEARER_ENV: props.get("bearer") or ""}
        return (["agents.identity", "--document", str(doc), "--port", str(port)], env,
                {"url": f"http://127.0.0.1:{port}"})

    def _start(self, props: Dict[str, Any]) -> Dict[str, Any]:
        """Started, and listening before LiteLLM is given its address (a request meanwhile would fall back)."""
        outs = super()._start(props)
        port = int(outs["url"].rsplit(":", 1)[1])
        try:
            wait_for(lambda: listening(port) or not alive(outs["pid"]), bool, within(START_SECONDS), 0.2,
                     f"the identity proxy listening on 127.0.0.1:{port}")
        except WaitTimeout:
            pass
        if not listening(port):
            stop_process(outs["pid"])
            log = Path(props["state_dir"]) / f"{self.NAME}.log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise CloudError(f"identity: the proxy did not listen on 127.0.0.1:{port}:\n{tail}")
        return outs




@dataclasses.dataclass(frozen=True)
class LocalIdentityProxyArgs:
    """The inputs of ``pulumi-python:dynamic/identity:LocalProxy``."""

    document: pulumi.Input[str]
    """The services' URLs (``core.identity.document``), as JSON."""
    state_dir: str
    """The local gateway's state directory: the document, and the proxy's log."""
    keys: pulumi.Input[Mapping[str, str]]
    """Service name -> the key file (JSON) of the account the gateway invokes it as (a secret)."""
    bearer: pulumi.Input[str]
    """What LiteLLM's route presents, and the proxy alone accepts (a secret)."""
    every_seconds: float = 0.0
    """Unused by the proxy (it reads its document again when the file changes); the local agents' common input."""
    port: int = 0
    """Where it listens on 127.0.0.1 (0: a free port)."""


class LocalIdentityProxy(DynamicResource, module="identity", name="LocalProxy"):
    pid: pulumi.Output[int]
    url: pulumi.Output[str]
    SECRET_OUTPUTS = ("keys", "bearer")

    def __init__(self, name: str, args: LocalIdentityProxyArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(LocalIdentityProxyProvider(), name,
                         {"pid": None, "url": None,
                          **{f.name: getattr(args, f.name) for f in dataclasses.fields(args)}}, opts)
