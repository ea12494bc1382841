"""The health agent as a process on the machine that runs `pulumi up`, beside a local gateway.

``pulumi-python:dynamic/health:LocalAgent`` runs ``python -m agents.health --every <seconds> --serve <port>``
(what a gateway host's unit runs) with its check document in the gateway's state directory, its alert state
and status document under ``health/`` there, and the usage lines the local gateway's callback writes beside
its config. The webhook (``ESTATE_SPEND_WEBHOOK``) and the gateway's master key (``LITELLM_MASTER_KEY``, which
the status view asks for) reach it as secret inputs in its environment, never a file or a command line.
It is run, updated in place, restarted and stopped as the spend watcher is (``providers.local_spend``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pulumi

from core import health
from core.spend import LEDGER_FILE
from providers.local_spend import LocalSpendWatcherProvider
from providers.ssh_forward import free_port
from providers.resource import DynamicResource

MASTER_KEY_ENV = "LITELLM_MASTER_KEY"


class LocalHealthAgentProvider(LocalSpendWatcherProvider):
    DOCUMENT = health.DOCUMENT_FILE
    NAME = "health"
    WHAT, KEEPS = "health: the agent", "alert state"
    INPUTS = ("document", "every_seconds", "state_dir", "webhook", "master_key", "port")
    RESTARTS = ("every_seconds", "state_dir", "webhook", "master_key", "port")
    OUTPUTS = ("status_url",)

    def _command(self, props: Dict[str, Any], doc: Path) -> Tuple[List[str], Dict[str, str], Dict[str, Any]]:
        state = doc.parent
        port = int(props.get("port") or 0) or free_port()
        # The usage lines the gateway's callback writes beside its config; the spend watcher's ledger, if it runs.
        env = {MASTER_KEY_ENV: props.get("master_key") or "", health.USAGE_DIR_ENV: str(state),
               "ESTATE_SPEND_LEDGER": str(state / LEDGER_FILE)}
        return (["agents.health", "--document", str(doc), "--state-dir", str(state / "health"), "--serve", str(port)],
                env, {"status_url": f"http://127.0.0.1:{port}"})


@dataclasses.dataclass(frozen=True)
class LocalHealthAgentArgs:
    """The inputs of ``pulumi-python:dynamic/health:LocalAgent``."""

    document: pulumi.Input[str]
    """The check document (``core.health.check_document``), as JSON."""
    every_seconds: float
    """How often every check runs."""
    state_dir: str
    """The local gateway's state directory: the document, and ``health/`` with the agent's state and log."""
    master_key: pulumi.Input[str]
    """The gateway's master key (a secret): the status view and metrics answer only a request carrying it."""
    port: int = 0
    """Where the status view answers on 127.0.0.1 (0: a free port)."""
    webhook: Optional[pulumi.Input[str]] = None
    """The alert webhook (a secret), if the stack has one."""


class LocalHealthAgent(DynamicResource, module="health", name="LocalAgent"):
    pid: pulumi.Output[int]
    status_url: pulumi.Output[str]
    SECRET_OUTPUTS = ("webhook", "master_key")

    def __init__(self, name: str, args: LocalHealthAgentArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(LocalHealthAgentProvider(), name,
                         {"pid": None, "status_url": None,
                          **{f.name: getattr(args, f.name) for f in dataclasses.fields(args)}}, opts)
