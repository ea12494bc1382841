"""The month's spend as the spend watcher keeps it: the watch document, the ledger and its arithmetic.

Plain data and pure functions, shared by the program (which renders the document and, before any node
starts, reads the ledger's verdict), the watcher on the gateway host (``agents.spend``) and the tests.

- The **watch document** (``watch_document``) is what the program tells the watcher: the budget, the
  thresholds, the month the operator resumed, and each pay-per-use node with its marketplace instance
  (``<cloud>:<id>``) and launch price, then what bills without a machine the watcher can ask (hosted
  services, serverless endpoints, buckets) at its estimate. It holds no secret.
- The **ledger** is a JSON document the watcher rewrites each run: this month's dollars per node and per
  day, the last observation of each node, the alerts already posted and the nodes it stopped.
- **Accrual**: between two runs a node is charged the elapsed time at its billed rate when it was seen
  running at either end on the same machine, so a node started and stopped between two looks is charged
  the whole gap, and a watcher that missed runs charges the gap on its return: a budget watcher errs
  toward the higher sum. A node on a new machine (re-rented, or a new `up` after a destroy) starts afresh.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Dict, List, Mapping, Optional

from core.spec import HOURS_IN_MONTH, NAMESPACE, EstateSpec, PowerState

LEDGER_VERSION = 1
LEDGER_FILE = "spend-ledger.json"
"""The ledger's name beside a local gateway's files; on a gateway host it is ``/var/lib/estate/spend/``."""
RESUME_FILE = "spend-resume"
"""Beside the ledger: the month ``resume_month`` names, written by `up` before any resource, so the watcher
stops stopping nodes before that `up` starts them (the watch document only reaches it after the nodes)."""
LOCAL_DOCUMENT_FILE = "spend-watch.json"
"""The watch document's name beside a local gateway's files."""
UNRENTED = "unknown:"
"""How the watch and wake documents name a node not rented when they were written: ``unknown:<node>``."""
RESUME_KEY = f"{NAMESPACE}:spend.resume_month"
WEBHOOK_KEY = "spendWebhook"
"""The config secret holding the webhook the watcher posts alerts to (a Slack-style incoming webhook)."""
WEBHOOK_ENV = "ESTATE_SPEND_WEBHOOK"
"""Where the watcher reads the webhook: the gateway host's 0600 env file, or the local watcher's environment."""
WEBHOOK_PATTERN = r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/+=&?:@,-]*)?"


def month_of(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%Y-%m")


def day_of(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%Y-%m-%d")


def watch_document(spec: EstateSpec, stack: str, machines: Mapping[str, Optional[str]],
                   hourly: Mapping[str, float]) -> Dict[str, Any]:
    """What the watcher reads: ``machines`` is node -> ``<cloud>:<id>`` of its machine where it has one
    (a marketplace node), ``hourly`` node -> the launch price in $/h. Nodes on a machine the operator owns
    cost nothing by the hour and are left out. Jobs are not in it: each has a watch entry of its own beside it
    (``core.jobs.WATCH_DIR``), written before its machine is rented."""
    s = spec.spend
    nodes = []
    for name, node in spec.nodes.items():
        if not node.is_pay_per_use:
            continue
        entry = {"node": name, "instance": machines.get(name) or f"{UNRENTED}{name}",
                 "hourly_usd": round(float(hourly.get(name) or 0.0), 6)}
        if not node.provider.is_marketplace:
            # An AWS or GCP machine the watcher cannot ask: its expected hours spread over the month.
            entry["share"] = round(node.hours_per_month / HOURS_IN_MONTH, 4)
        nodes.append(entry)
    nodes += estimated_entries(spec)
    return {
        "version": LEDGER_VERSION, "stack": stack,
        "budget_usd": spec.budget.monthly_usd, "daily_usd": spec.budget.daily_usd,
        "alerts_percent": list(s.alerts_percent), "stop_percent": s.stop_percent,
        "resume_month": s.resume_month, "nodes": nodes,
    }


ESTIMATED = "estimate:"
"""How the watch document names what bills without a machine the watcher can ask: ``estimate:<what>``."""


def estimated_entries(spec: EstateSpec) -> List[Dict[str, Any]]:
    """What the budget counts but no marketplace shows the watcher: each hosted service (Fly.io, Cloud Run),
    serverless endpoint and bucket at its estimate, spread over the month as an AWS/GCP node's share is, so
    the month's spend the watcher compares with the budget is the same sum the budget was checked against.
    It is never stopped from here."""
    from core import pricing

    monthly = [(f"service:{name}", s.estimate(name).monthly_usd) for name, s in spec.services.items()]
    monthly += [(f"serverless:{name}", pricing.estimate_endpoint(name, e).monthly_usd)
                for name, e in spec.serverless.items()]
    monthly += [(f"storage:{name}", b.monthly_usd) for name, b in spec.storage.items()]
    return [{"node": what, "instance": f"{ESTIMATED}{what}", "hourly_usd": round(usd / HOURS_IN_MONTH, 6)}
            for what, usd in monthly if usd > 0]


def new_ledger(month: str) -> Dict[str, Any]:
    return {"version": LEDGER_VERSION, "month": month, "spent_usd": 0.0, "nodes": {}, "days": {},
            "alerted": [], "daily_alerted": [], "stopped": [], "updated": None}


@dataclasses.dataclass(frozen=True)
class Seen:
    """One look at a node."""

    running: bool
    """Billed as running (the vendor says running, starting or stopping)."""
    rate: float
    """$/h while running: the vendor's billed rate where it reports one, else the launch price."""
    seen: bool = True
    """False when the vendor could not be asked: the node is then counted as running at its launch price."""
    instance: str = ""
    """The machine looked at (``<cloud>:<id>``): a node on a new machine is not charged the gap before it."""


def accrue(ledger: Optional[Dict[str, Any]], looks: Mapping[str, Seen], now: float) -> Dict[str, Any]:
    """The ledger after a look at ``now``: a new month starts a new ledger (the last looks carried over, so
    the gap across midnight is charged to the new month), and each node is charged since its last look."""
    month = month_of(now)
    previous = ledger or new_ledger(month)
    out = previous if previous.get("month") == month else {**new_ledger(month), "nodes": {
        n: {**v, "usd": 0.0} for n, v in (previous.get("nodes") or {}).items()}}
    out = {**out, "nodes": {n: dict(v) for n, v in out["nodes"].items()}, "days": dict(out["days"])}
    day = day_of(now)
    for name, look in looks.items():
        last = out["nodes"].get(name)
        charge = 0.0
        before = (last or {}).get("instance")
        same = not look.instance or not before or before == look.instance
        if last and same and last.get("at") is not None and (last.get("running") or look.running):
            hours = max(0.0, now - float(last["at"])) / 3600.0
            rate = look.rate if look.running else float(last.get("rate") or look.rate)
            charge = hours * rate
        entry = last or {"usd": 0.0}
        entry.update({"usd": round(float(entry.get("usd") or 0.0) + charge, 6), "at": now, "running": look.running,
                      "rate": look.rate, "seen": look.seen, "instance": look.instance})
        out["nodes"][name] = entry
        out["days"][day] = round(float(out["days"].get(day) or 0.0) + charge, 6)
    out["spent_usd"] = round(sum(float(v.get("usd") or 0.0) for v in out["nodes"].values()), 6)
    out["updated"] = now
    return out


@dataclasses.dataclass(frozen=True)
class Alert:
    kind: str
    """``threshold`` (a percentage of the month passed), ``daily`` (the day's budget passed) or ``stop``."""
    key: str
    """What it is remembered by in the ledger: the percentage, or the day."""
    text: str


def percent(ledger: Mapping[str, Any], budget_usd: float) -> float:
    return 100.0 * float(ledger.get("spent_usd") or 0.0) / budget_usd if budget_usd else 0.0


def due_alerts(ledger: Mapping[str, Any], document: Mapping[str, Any], now: float) -> List[Alert]:
    """The alerts this look passes and the ledger has not recorded as posted: each threshold once a month
    (only the highest when several are passed at once), the daily budget once a day."""
    stack, budget = document.get("stack", ""), float(document["budget_usd"])
    spent, pct = float(ledger.get("spent_usd") or 0.0), percent(ledger, budget)
    alerts = []
    passed = [p for p in document.get("alerts_percent") or [] if pct >= p]
    fresh = [p for p in passed if str(p) not in ledger.get("alerted", [])]
    if fresh:
        top = max(fresh)
        alerts.append(Alert("threshold", str(top), (
            f"{stack}: ${spent:.2f} spent in {ledger['month']}, {pct:.0f}% of the ${budget:.2f} monthly budget "
            f"(alert at {top}%)")))
    daily = document.get("daily_usd")
    day = day_of(now)
    today = float((ledger.get("days") or {}).get(day) or 0.0)
    if daily and today >= float(daily) and day not in ledger.get("daily_alerted", []):
        alerts.append(Alert("daily", day, f"{stack}: ${today:.2f} spent on {day}, over the ${float(daily):.2f} daily budget"))
    return alerts


def over_budget(ledger: Mapping[str, Any], document: Mapping[str, Any], now: float,
                resumed: Optional[str] = None) -> bool:
    """Whether this month's spend has reached the stop threshold and the operator has not resumed the month
    (in the watch document, or in ``resumed``: the resume file `up` wrote)."""
    month = ledger.get("month")
    if month != month_of(now) or month in (document.get("resume_month"), resumed):
        return False
    return percent(ledger, float(document["budget_usd"])) >= float(document.get("stop_percent") or 100)


def refusal(spec: EstateSpec, ledger: Optional[Mapping[str, Any]], now: float) -> Optional[str]:
    """Why `up` must not run, or None: this month's spend has reached the stop threshold, the month is not
    resumed, and the stack would start a pay-per-use node (one kept running, or one not rented yet)."""
    if spec.spend is None or not ledger:
        return None
    document = {"budget_usd": spec.budget.monthly_usd, "stop_percent": spec.spend.stop_percent,
                "resume_month": spec.spend.resume_month}
    if not over_budget(ledger, document, now):
        return None
    # The watcher stops marketplace nodes: `up` would start again those kept running. Any pay-per-use node
    # it has never seen is one `up` would rent.
    watched = set(ledger.get("nodes") or {})
    starts = [name for name, node in spec.nodes.items() if node.is_pay_per_use and (
        (node.provider.is_marketplace and node.power is PowerState.RUNNING)
        or (name not in watched and node.power is not PowerState.STOPPED))]
    # A job the watcher has never seen is one `up` would rent.
    starts += [f"job {name}" for name in spec.jobs if f"job:{name}" not in watched]
    if not starts:
        return None
    month, spent = ledger["month"], float(ledger.get("spent_usd") or 0.0)
    return (f"${spent:.2f} spent in {month} has reached {spec.spend.stop_percent}% of {NAMESPACE}:budget.monthly_usd "
            f"${spec.budget.monthly_usd:.2f}; the spend watcher stops pay-per-use nodes and `up` would start "
            f"{', '.join(starts)}. Set {RESUME_KEY} to {month!r} (then `pulumi up --refresh` starts them), raise the "
            f"budget, or set their power to idle or stopped (got {spec.spend.resume_month!r})")
