"""The spend watcher: one look at what the estate's nodes cost this month, run by a timer beside the gateway.

``python -m agents.spend --document watch.json --ledger ledger.json [--every SECONDS]`` reads the
watch document the program rendered (``core.spend.watch_document``), asks each node's marketplace for its
instance (the same clients and credentials as the program: ``providers.gpu_cloud``, keys from the
environment), adds what each node cost since the last look to the ledger (``core.spend.accrue``), posts the
alerts that came due to the webhook in ``ESTATE_SPEND_WEBHOOK``, and once the month's spend reaches the stop
threshold stops every pay-per-use node it finds running, until the operator resumes the month.

- A node whose vendor cannot be asked is counted as running at its launch price and is not stopped
  (an operation that cannot see a machine leaves it as it is); the next look asks again.
- An alert whose post fails is not recorded, so the next look posts it again.
- The ledger is replaced atomically (written beside it, then renamed), so a reader never sees half of it.
- Each look prints one line per node and per action to stdout (the journal, on a gateway host).
- Each GPU job is read from its own watch entry in ``jobs/`` beside the document (``core.jobs.WATCH_DIR``),
  read again at every look: a job is watched from the moment its entry is written, before its machine is
  rented, whatever else its `up` does. An entry that cannot be read is said and skipped for that look.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any, Callable, Dict, List, Mapping, Optional

import requests

from agents import rounds
from agents.jobs import JobAgent
from core import spend
from core.spec import MONTH_PATTERN
from core.jobs import WATCH_DIR
from core.spend import WEBHOOK_ENV, Seen
from core.vendors import machine_id
from providers import gpu_cloud
from providers.local import replace_text
from providers.gpu_cloud import Status
from providers.http import CloudError

BILLED = (Status.RUNNING, Status.PENDING, Status.STOPPING)


def read_ledger(path: Path) -> Optional[Dict[str, Any]]:
    """The ledger at ``path``, or None when the watcher has not written one yet."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def read_resume(ledger_path: Path) -> Optional[str]:
    """The month the operator resumed, from the file `up` writes beside the ledger (None: none)."""
    try:
        text = (Path(ledger_path).parent / spend.RESUME_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text if re.fullmatch(MONTH_PATTERN, text) else None




def write_ledger(path: Path, ledger: Mapping[str, Any]) -> None:
    replace_text(path, json.dumps(ledger, indent=2, sort_keys=True) + "\n")


def post_failure(url: str, err: BaseException) -> str:
    """What to say of a failed webhook post: the error's type and the webhook's host, nothing more. A Slack,
    Discord or ntfy webhook's path is its secret, and a connection error's text carries the whole URL."""
    return f"{type(err).__name__} posting to {urlsplit(url).hostname or 'the webhook'}"


def post_webhook(url: str, alert: spend.Alert, ledger: Mapping[str, Any], document: Mapping[str, Any]) -> None:
    """A JSON post with ``text`` (what Slack and Mattermost incoming webhooks show) and the figures."""
    body = {"text": alert.text, "estate": {
        "stack": document.get("stack"), "kind": alert.kind, "key": alert.key, "month": ledger.get("month"),
        "spent_usd": round(float(ledger.get("spent_usd") or 0.0), 2), "budget_usd": document.get("budget_usd"),
        "stopped": list(ledger.get("stopped") or [])}}
    resp = requests.post(url, json=body, timeout=10)
    if resp.status_code >= 300:
        raise CloudError(f"webhook answered HTTP {resp.status_code}")


def read_job_entries(directory: Optional[Path], say: Callable[[str], None] = print) -> List[Dict[str, Any]]:
    """The jobs' watch entries in ``directory`` (``*.json``), by file name; an unreadable one is said and left
    out of this look."""
    if directory is None or not Path(directory).is_dir():
        return []
    entries = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(entry, dict) or not entry.get("job") or not entry.get("label"):
                raise ValueError("not a job's watch entry")
        except (OSError, ValueError) as err:
            say(f"jobs: {path.name}: cannot read this watch entry ({type(err).__name__}); skipped this look")
            continue
        entries.append(entry)
    return entries


class Watcher:
    def __init__(self, document: Mapping[str, Any], ledger_path: Path,
                 client: Callable[[str], gpu_cloud.GpuCloud] = gpu_cloud.client,
                 post: Callable[..., None] = post_webhook, webhook: Optional[str] = None,
                 clock: Callable[[], float] = time.time, say: Callable[[str], None] = print,
                 jobs_dir: Optional[Path] = None):
        self.document, self.ledger_path, self.jobs_dir = document, Path(ledger_path), jobs_dir
        self._client, self._post, self._clock, self._say = client, post, clock, say
        self.webhook = webhook if webhook is not None else os.environ.get(WEBHOOK_ENV) or ""
        self.jobs = JobAgent(client, clock=clock, say=say)

    def _look(self, node: Mapping[str, Any]) -> Seen:
        launch, instance = float(node.get("hourly_usd") or 0.0), str(node["instance"])
        parsed = machine_id(instance)
        if parsed is None:
            if instance.startswith(spend.UNRENTED):
                return Seen(False, launch, instance=instance)  # not rented when the document was written
            # AWS/GCP: its expected share of the month at its launch price; never stopped from here.
            return Seen(True, launch * float(node.get("share", 1.0)), seen=False, instance=instance)
        cloud, iid = parsed
        try:
            with self._client(cloud) as c:
                inst = c.get(iid)
        except CloudError as err:
            self._say(f"spend: {node['node']}: cannot ask {cloud}: {err}; counted as running at ${launch:.3f}/h")
            return Seen(True, launch, seen=False, instance=instance)
        if inst is None or inst.status is Status.GONE:
            return Seen(False, launch, instance=instance)
        return Seen(inst.status in BILLED, float(inst.price_per_hour or launch), instance=instance)

    def _stop(self, node: Mapping[str, Any]) -> bool:
        cloud, iid = machine_id(str(node["instance"]))  # _look saw it running at its vendor
        try:
            with self._client(cloud) as c:
                c.stop(iid)
            return True
        except CloudError as err:
            self._say(f"spend: {node['node']}: stop refused by {cloud}: {err}; trying again next look")
            return False

    def run_once(self) -> Dict[str, Any]:
        """One look: accrue, alert, stop; returns the ledger as written."""
        now = self._clock()
        nodes = list(self.document.get("nodes") or [])
        looks = {n["node"]: self._look(n) for n in nodes}
        jobs = read_job_entries(self.jobs_dir, self._say)
        looks.update(self.jobs.look(jobs))  # jobs ended or capped are released
        ledger = spend.accrue(read_ledger(self.ledger_path), looks, now)
        for name, look in looks.items():
            entry = ledger["nodes"][name]
            self._say(f"spend: {name}: {'running' if look.running else 'stopped'} at ${look.rate:.3f}/h"
                      f"{'' if look.seen else ' (not seen)'}, ${entry['usd']:.2f} this month")
        stop = spend.over_budget(ledger, self.document, now, read_resume(self.ledger_path))
        running = [j for j in jobs if f"job:{j['job']}" in looks and looks[f"job:{j['job']}"].running]
        if stop and running:
            # A job still running is deleted too (a job is never resumed by a start: its outputs are in the
            # bucket); one the look above released or did not find is not asked about again.
            looks.update(self.jobs.look(running, over_budget=True))
        if stop:
            # Only machines the watcher saw running at their marketplace (never AWS/GCP, which it cannot ask).
            stopped = [n for n in nodes if looks[n["node"]].running and looks[n["node"]].seen and self._stop(n)]
            if stopped:
                names = [n["node"] for n in stopped]
                ledger["stopped"] = sorted(set(ledger.get("stopped") or []) | set(names))
                for n in stopped:
                    ledger["nodes"][n["node"]]["running"] = False
                self._alert(ledger, spend.Alert("stop", ",".join(names), (
                    f"{self.document.get('stack', '')}: ${ledger['spent_usd']:.2f} spent in {ledger['month']} reached "
                    f"{self.document.get('stop_percent', 100)}% of the ${float(self.document['budget_usd']):.2f} budget: "
                    f"stopped {', '.join(names)}")), record=False)
        for alert in spend.due_alerts(ledger, self.document, now):
            if self._alert(ledger, alert):
                field = "alerted" if alert.kind == "threshold" else "daily_alerted"
                passed = [str(p) for p in self.document.get("alerts_percent") or []
                          if alert.kind == "threshold" and int(p) <= int(alert.key)]
                ledger[field] = sorted(set(ledger.get(field) or []) | {alert.key, *passed})
        write_ledger(self.ledger_path, ledger)
        self._say(f"spend: ${ledger['spent_usd']:.2f} of ${float(self.document['budget_usd']):.2f} in {ledger['month']}"
                  f"{' (over: nodes are kept stopped)' if stop else ''}")
        return ledger

    def _alert(self, ledger: Mapping[str, Any], alert: spend.Alert, record: bool = True) -> bool:
        self._say(f"spend: alert: {alert.text}")
        if not self.webhook:
            return record  # no webhook set: the journal line is the alert
        try:
            self._post(self.webhook, alert, ledger, self.document)
            return True
        except (CloudError, requests.RequestException) as err:
            self._say(f"spend: webhook post failed ({post_failure(self.webhook, err)}); posting again next look")
            return False


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--document", required=True, type=Path)
    p.add_argument("--ledger", required=True, type=Path)
    p.add_argument("--every", type=float, default=0.0, help="look again every SECONDS (0: once)")
    args = p.parse_args(argv)
    watcher = Watcher(json.loads(args.document.read_text(encoding="utf-8")), args.ledger,
                      say=lambda line: print(line, flush=True), jobs_dir=args.document.parent / WATCH_DIR)
    if args.every <= 0:
        watcher.run_once()
        return 0
    # The program rewrites the document on each `up` (a new budget, a resumed month, new machines).
    rounds.forever(watcher.run_once, args.every, args.document, lambda doc: setattr(watcher, "document", doc),
                   "spend", "look")


if __name__ == "__main__":
    sys.exit(main())
