"""Wake on request: the gateway starts a stopped node when a request for an alias it alone serves arrives.

Idle shutdown is half of pay-per-use; this is the other half. The gateway's LiteLLM runs a pre-call hook
(``assets/gateway/estate_wake.py``) that asks a ``Waker`` to make an alias servable before the request is
routed. The ``Waker`` reads the wake document the program renders beside the gateway's config
(``components.gateway.wake_document``: alias -> its nodes, their marketplace instance ids and the URLs the
gateway reaches them at, the alias's timeout and whether it falls back), and uses the same marketplace
clients and credentials as the program (``providers.gpu_cloud``; the keys from the gateway's environment).

For an alias none of whose nodes runs, it starts the first stopped one (once, whatever the number of
requests waiting) and:
- without fallbacks, waits within the alias's timeout until the vendor says it runs and its server
  answers, then lets the request through; past the timeout it raises ``Asleep`` (the hook answers 503
  with ``Retry-After``);
- with fallbacks, lets the request through at once (the router falls back while the node boots).
A node the vendor no longer knows, or one it refuses to start, is reported the same way, with the reason.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import requests

from core.spend import RESUME_KEY, over_budget
from core.vendors import machine_id
from providers import gpu_cloud
from providers.gpu_cloud import Status, env_seconds
from providers.http import CloudError
from providers.wait import WaitTimeout, wait_for
from agents.spend import read_ledger, read_resume

log = logging.getLogger("estate.wake")
RETRY_AFTER_SECONDS = 30
STATUS_TTL_SECONDS = 5.0
"""How long a node's observed status is trusted before the vendor is asked again."""


class Asleep(Exception):
    """The alias's nodes are not serving yet: answer 503 and say when to come back."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


def _answers(url: str) -> bool:
    """Whether the node's server answers HTTP at all (Ollama's ``/``, a model server's root)."""
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


class Waker:
    def __init__(self, document: Dict[str, Any], client: Callable[[str], gpu_cloud.GpuCloud] = gpu_cloud.client,
                 answers: Callable[[str], bool] = _answers):
        self.aliases: Dict[str, Dict[str, Any]] = dict(document.get("aliases") or {})
        self.spend: Dict[str, str] = dict(document.get("spend") or {})
        """Where the spend watcher's document and ledger are, when the stack watches its spend."""
        self._client, self._answers = client, answers
        self._lock = threading.Lock()
        self._seen: Dict[str, tuple] = {}
        """instance -> (status, when observed)."""
        self._starting: Dict[str, float] = {}
        """instance -> when this gateway asked the vendor to start it."""

    @classmethod
    def from_file(cls, path: Path) -> "Waker":
        """The waker of a wake document; its spend paths, when relative, are beside the document."""
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if doc.get("spend"):
            doc["spend"] = {k: str(Path(path).parent / v) for k, v in doc["spend"].items()}
        return cls(doc)

    def over_budget(self) -> bool:
        """Whether the spend watcher's ledger says this month's spend has reached its stop threshold (and the
        month is not resumed): then no node is woken. No ledger yet, or no spend watcher, is not over."""
        if not self.spend:
            return False
        try:
            ledger = read_ledger(Path(self.spend["ledger"]))
            document = json.loads(Path(self.spend["document"]).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            log.warning("estate wake: cannot read the spend ledger (%s); waking as usual", err)
            return False
        return bool(ledger) and over_budget(ledger, document, time.time(), read_resume(Path(self.spend["ledger"])))

    def status(self, instance: str, fresh: bool = False) -> Optional[Status]:
        """The instance's status as its vendor reports it (None: the vendor no longer knows it)."""
        seen = self._seen.get(instance)
        if seen and not fresh and time.monotonic() - seen[1] < STATUS_TTL_SECONDS:
            return seen[0]
        parsed = machine_id(instance)
        if parsed is None:
            return None  # not rented yet when the gateway's files were written: nothing to start
        cloud, iid = parsed
        with self._client(cloud) as c:
            inst = c.get(iid)
        status = None if inst is None or inst.status is Status.GONE else inst.status
        self._seen[instance] = (status, time.monotonic())
        return status

    def _start(self, node: Dict[str, Any]) -> None:
        instance = node["instance"]
        with self._lock:
            if instance in self._starting:
                return  # another request asked already: wait for the same start
            self._starting[instance] = time.monotonic()
        cloud, iid = machine_id(instance)  # stopped: status() found it at its vendor
        log.warning("estate wake: starting node %s (%s) for a request", node["node"], instance)
        try:
            with self._client(cloud) as c:
                c.start(iid)
        except CloudError:
            with self._lock:
                self._starting.pop(instance, None)
            raise

    def ensure(self, alias: str) -> str:
        """Make ``alias`` servable: ``"serving"`` (a node runs), ``"woken"`` (this call waited for one to
        start), ``"falling back"`` (one is starting; the alias's fallbacks answer meanwhile), or ``""`` (the
        alias is not one the gateway wakes). Raises ``Asleep`` when no node serves within the timeout."""
        entry = self.aliases.get(alias)
        if not entry:
            return ""
        nodes: List[Dict[str, Any]] = list(entry.get("nodes") or [])
        retry_after = int(entry.get("retry_after") or RETRY_AFTER_SECONDS)
        deadline = time.monotonic() + float(entry.get("timeout") or 60)
        statuses = {}
        for node in nodes:
            try:
                statuses[node["instance"]] = self.status(node["instance"])
            except CloudError as err:
                log.warning("estate wake: cannot read node %s: %s", node["node"], err)
                statuses[node["instance"]] = None
        if any(s is Status.RUNNING for s in statuses.values()):
            return "serving"
        waking = next((n for n in nodes if statuses[n["instance"]] in (Status.PENDING, Status.STOPPING)), None)
        target = waking or next((n for n in nodes if statuses[n["instance"]] is Status.STOPPED), None)
        if target is None:
            raise Asleep(f"alias {alias!r}: no node to wake ({', '.join(n['node'] for n in nodes)} unknown to "
                         "their vendors); run `pulumi up`", retry_after)
        if statuses[target["instance"]] is Status.STOPPED:
            if self.over_budget():
                raise Asleep(f"alias {alias!r}: node {target['node']!r} stays stopped: this month's spend has reached "
                             f"the budget (set {RESUME_KEY} to run it anyway)", retry_after)
            try:
                self._start(target)
            except CloudError as err:
                raise Asleep(f"alias {alias!r}: node {target['node']!r} could not be started: {err}", retry_after)
        if entry.get("fallbacks"):
            return "falling back"
        try:
            wait_for(lambda: self.status(target["instance"], fresh=True) is Status.RUNNING
                     and self._answers(target["url"]), bool, deadline, env_seconds("ESTATE_POLL_SECONDS", 5),
                     f"node {target['node']} serving {alias}")
        except WaitTimeout:
            raise Asleep(f"alias {alias!r}: node {target['node']!r} is starting; it did not answer within the "
                         f"alias's {float(entry.get('timeout') or 60):g} s", retry_after) from None
        with self._lock:
            self._starting.pop(target["instance"], None)
        log.warning("estate wake: node %s serves %s again", target["node"], alias)
        return "woken"
