"""The spend watcher as a process on the machine that runs `pulumi up`, beside a local gateway.

``pulumi-python:dynamic/spend:LocalWatcher`` runs ``python -m agents.spend --every <seconds>`` (the same
look a gateway host's timer runs) with its watch document and ledger in the gateway's state directory.
The process reads the marketplaces' keys from its environment, as the program's providers do, and the
webhook from ``ESTATE_SPEND_WEBHOOK``, given it here as a secret input (never a file or a command line).

- A changed document is rewritten in place: the running watcher reads it again before each look.
- A changed interval or webhook restarts the process; the ledger stays.
- ``read`` reports the process gone when it died, so the next `up` starts it again.
- ``delete`` stops it and keeps the ledger (the month's spend outlives the watcher); one that will not stop
  is named in a warning and left, never a reason to keep the nodes that bill.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from core.spend import LEDGER_FILE, LOCAL_DOCUMENT_FILE, WEBHOOK_ENV
from providers.local import alive, delete_process, spawn, stop_process
from providers.resource import DynamicResource
from providers.local import replace_text

ROOT = Path(__file__).resolve().parent.parent
RESTARTS = ("every_seconds", "webhook", "state_dir")
"""Inputs the running process holds: changing one restarts it."""


class LocalSpendWatcherProvider(ResourceProvider):
    """The spend watcher's process; the health agent's (``providers.local_health``) is run the same way."""

    DOCUMENT = LOCAL_DOCUMENT_FILE
    """The document's name in the state directory."""
    RESTARTS = RESTARTS
    NAME = "spend"
    WHAT, KEEPS = "spend: the watcher", "ledger"
    INPUTS: Tuple[str, ...] = ("document", "every_seconds", "state_dir", "webhook")
    """The resource's inputs (its args' fields): a changed one is an update."""
    OUTPUTS: Tuple[str, ...] = ("ledger",)
    """Outputs besides the pid, kept by an update in place."""

    def _write(self, props: Dict[str, Any]) -> Path:
        doc = Path(props["state_dir"]) / self.DOCUMENT
        replace_text(doc, props["document"])
        return doc

    def _command(self, props: Dict[str, Any], doc: Path) -> Tuple[List[str], Dict[str, str], Dict[str, Any]]:
        """The agent's arguments, the environment it adds, and the outputs it adds."""
        ledger = str(doc.parent / LEDGER_FILE)
        return ["agents.spend", "--document", str(doc), "--ledger", ledger], {}, {"ledger": ledger}

    def _start(self, props: Dict[str, Any]) -> Dict[str, Any]:
        doc = self._write(props)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        env.pop(WEBHOOK_ENV, None)
        if props.get("webhook"):
            env[WEBHOOK_ENV] = props["webhook"]
        argv, more_env, outs = self._command(props, doc)
        proc = spawn([sys.executable, "-m", *argv, "--every", str(float(props["every_seconds"]))],
                     {**env, **more_env}, doc.parent / f"{self.NAME}.log", ROOT)
        pulumi.log.info(f"{self.NAME}: looking every {float(props['every_seconds']):g} s (pid {proc.pid})")
        return {**props, "pid": proc.pid, **outs}

    def create(self, props: Dict[str, Any]) -> CreateResult:
        outs = self._start(props)
        return CreateResult(f"local-{self.NAME}-{outs['pid']}", outs)

    def diff(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> DiffResult:
        changed = [k for k in self.INPUTS if olds.get(k) != news.get(k)]
        # A watcher that died (a killed `up`'s provider host stopped it) is started again by the next `up`.
        return DiffResult(changes=bool(changed) or not alive(olds.get("pid")), replaces=[])

    def update(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> UpdateResult:
        if alive(olds.get("pid")) and all(olds.get(k) == news.get(k) for k in self.RESTARTS):
            self._write(news)
            return UpdateResult({**news, "pid": olds["pid"], **{k: olds.get(k) for k in self.OUTPUTS}})
        stop_process(olds.get("pid"))
        return UpdateResult(self._start(news))

    def read(self, id_: str, props: Dict[str, Any]) -> ReadResult:
        if not alive(props.get("pid")):
            return ReadResult("", {})
        return ReadResult(id_, props)

    def delete(self, _id: str, props: Dict[str, Any]) -> None:
        # It bills nothing: one that will not stop is named and left, never a reason to keep the nodes.
        delete_process(props.get("pid"), self.WHAT, f"{self.KEEPS} in {props.get('state_dir')}", pulumi.log.warn)


@dataclasses.dataclass(frozen=True)
class LocalSpendWatcherArgs:
    """The inputs of ``pulumi-python:dynamic/spend:LocalWatcher``."""

    document: pulumi.Input[str]
    """The watch document (``core.spend.watch_document``), as JSON."""
    every_seconds: float
    """How often it looks."""
    state_dir: str
    """Where the document, the ledger and the log live (the local gateway's)."""
    webhook: Optional[pulumi.Input[str]] = None
    """The alert webhook (a secret), if the stack has one."""


class LocalSpendWatcher(DynamicResource, module="spend", name="LocalWatcher"):
    pid: pulumi.Output[int]
    ledger: pulumi.Output[str]
    SECRET_OUTPUTS = ("webhook",)

    def __init__(self, name: str, args: LocalSpendWatcherArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(LocalSpendWatcherProvider(), name,
                         {"pid": None, "ledger": None,
                          **{f.name: getattr(args, f.name) for f in dataclasses.fields(args)}}, opts)
