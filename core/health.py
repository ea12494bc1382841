"""What the health agent checks and how its results become alerts: the check document, the alert state
machine and the alerts' shapes.

Plain data and pure functions, shared by the program (which renders the check document from the stack),
the agent on the gateway host (``agents.health``, which runs the probes) and the tests.

- The **check document** (``check_document``) lists every check: the gateway itself, each service the
  gateway routes to (an alias's model server, a route's upstream) at the address the gateway reaches it at,
  with the probe its workload's kind describes (``BaseWorkload.probe``), each tunnel's local port, and each
  node with its power, marketplace instance and $/h. It holds no secret.
- The **state machine** (``advance``): a check is reported down after ``down_after`` failures in a row and
  up again at its first success after that; a check that fails less often than that in a row never alerts,
  so a flapping service does not storm. A check not run because its node is stopped (``power: stopped``, or
  an idle node its idle watcher stopped) is neither up nor down, and never alerts.
- The **alert shapes** (``alert_post``): Slack's (and Mattermost's) ``text``, Discord's ``content``,
  ntfy's plain body with its title, priority and tags headers, or the plain JSON event.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Dict, List, Mapping, Optional, Tuple

from core import catalog
from core.spec import HOURS_IN_MONTH
from core.spend import UNRENTED
from core.topology import Endpoint, EstatePlan

VERSION = 1
DOCUMENT_FILE = "health-checks.json"
"""The check document's name beside a local gateway's files; ``health/checks.json`` on a gateway host."""
STATE_FILE = "health-state.json"
"""The state machine's state, kept on disk between runs (and restarts) of the agent."""
STATUS_FILE = "status.json"
"""The last status document the agent wrote (what `scripts/status.py` reads from the host)."""
USAGE_HOOK = "estate_usage.py"
"""The gateway's usage callback (``assets/gateway/estate_usage.py``): one JSON line per answered request."""
USAGE_DIR_ENV = "ESTATE_USAGE_DIR"
EVERY_ENV = "ESTATE_HEALTH_EVERY_SECONDS"
"""Overrides ``health.every_seconds`` where the agent runs (tests and the sandbox look every few seconds)."""
FORMATS = ("slack", "discord", "ntfy", "json")

UP, DOWN, UNKNOWN, STOPPED = "up", "down", "unknown", "stopped"


def usage_file(now: float) -> str:
    """The month's usage file the callback appends to."""
    return f"usage-{dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime('%Y-%m')}.jsonl"


def _gateway_url(plan: EstatePlan, port: Optional[int]) -> str:
    return f"http://127.0.0.1:{port or plan.spec.gateway.port}"


def deployments(config: Mapping[str, Any]) -> Dict[str, Dict[str, str]]:
    """The gateway config's deployment ids -> where each sends a request: an estate ``node``, a
    ``serverless`` endpoint, a hosted ``service`` of the stack (Fly.io, Cloud Run) or an ``external`` API
    (with its LiteLLM model string), as the savings report counts them."""
    out: Dict[str, Dict[str, str]] = {}
    for entry in config.get("model_list") or []:
        info, params = entry.get("model_info") or {}, entry.get("litellm_params") or {}
        if info.get("node"):
            where = ("node", info["node"])
        elif info.get("endpoint"):
            where = ("serverless", info["endpoint"])
        elif info.get("service"):
            where = ("service", info["service"])
        else:
            where = ("external", str(info.get("id", "")).partition("@")[2])
        out[str(info.get("id"))] = {"alias": str(entry.get("model_name")), "where": where[0], "name": where[1],
                                    "model": str(params.get("model", ""))}
    return out


def check_document(plan: EstatePlan, stack: str, endpoints: Optional[Mapping[str, Endpoint]] = None,
                   machines: Optional[Mapping[str, Optional[str]]] = None,
                   hourly: Optional[Mapping[str, float]] = None, config: Optional[Mapping[str, Any]] = None,
                   gateway_port: Optional[int] = None) -> Dict[str, Any]:
    """What the agent checks, from the stack: ``endpoints`` as the gateway's config reads them (directly
    reached nodes, a local gateway's own forwards), ``machines`` node -> ``<cloud>:<id>``, ``hourly`` each
    node's $/h, ``config`` the gateway's LiteLLM config (its deployments and fallbacks)."""
    spec = plan.spec
    g, h = spec.gateway, spec.health
    if g is None or h is None:
        raise ValueError("the stack has no gateway or no health key")
    hourly = {**{n: e.hourly_usd for n, e in plan.estimates.items()}, **(hourly or {})}
    routed: Dict[Tuple[str, str], List[str]] = {}
    for model, served in plan.serving.items():
        for s in served:
            routed.setdefault((s.node, s.workload), []).append(model)
    for route in spec.routes.values():
        routed.setdefault((route.node, route.workload), [])
    for node, forwards in plan.tunnels.items():  # a port the stack tunnels (``tunnels``) to one of the node's workloads
        for f in forwards:
            for workload in spec.nodes[node].workloads:
                if spec.nodes[node].port(workload) == f.remote:
                    routed.setdefault((node, workload), [])
    checks: List[Dict[str, Any]] = [{"id": "gateway", "what": "gateway", "node": g.node,
                                     "url": _gateway_url(plan, gateway_port),
                                     "probe": {"type": "http", "path": "/health/liveliness"}}]
    for (node, workload), models in sorted(routed.items(), key=lambda kv: (list(spec.nodes).index(kv[0][0]), kv[0][1])):
        n = spec.nodes[node]
        w = n.workloads[workload]
        if w.on_gateway_host:
            continue  # the gateway itself, checked above
        url = plan.service_url(node, n.port(workload), endpoints)
        models = sorted(dict.fromkeys(models))
        checks.append({"id": f"service/{node}/{workload}", "what": "service", "node": node, "workload": workload,
                       "url": url, "models": models, "probe": w.probe(models),
                       # a node its idle watcher may stop is probed without waking work (no generation)
                       **({"quiet": True} if n.power.value == "idle" else {})})
    forwarded = {n for n in (endpoints or {}) if n in plan.tunnels}
    for node, forwards in plan.tunnels.items():
        if not spec.nodes[node].power.serves:
            continue
        for f in forwards:
            url = plan.service_url(node, f.remote, endpoints) if node in forwarded else f"http://127.0.0.1:{f.local}"
            checks.append({"id": f"tunnel/{node}/{f.remote}", "what": "tunnel", "node": node, "url": url,
                           "probe": {"type": "tcp"}})
    nodes = []
    for name, node in spec.nodes.items():
        instance = (machines or {}).get(name)
        nodes.append({"node": name, "provider": node.provider.value, "power": node.power.value,
                      "instance": instance if instance and not instance.startswith(UNRENTED) else None,
                      "hourly_usd": round(float(hourly.get(name) or 0.0), 6),
                      "share": round(node.hours_per_month / HOURS_IN_MONTH, 4),
                      "models": sorted({m for w in node.workloads.values() for m in w.served_models()})})
    aliases = {alias: {"model": model, "fallbacks": list(g.fallbacks.get(alias, [])),
                       "nodes": [s.node for s in plan.serving.get(model, ()) if spec.nodes[s.node].power.serves],
                       "serverless": list(plan.endpoints.get(model, ())),
                       "services": list(plan.services.get(model, ()))}
               for alias, model in g.aliases.items()}
    external = {name: model for ext in g.external.values() for name, model in ext.models.items()}
    return {"version": VERSION, "stack": stack, "every_seconds": h.every_seconds, "down_after": h.down_after,
            "timeout_seconds": h.timeout_seconds, "format": h.alert_format, "port": h.port,
            "budget_usd": spec.budget.monthly_usd, "checks": checks, "nodes": nodes, "aliases": aliases,
            "external": external, "deployments": deployments(config or {}), "prices": catalog.api_prices()}


# -- the state machine ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Result:
    """One run of one check."""

    id: str
    ok: Optional[bool]
    """True: it answered as its probe expects; False: it did not; None: not run (its node is stopped)."""
    latency_ms: Optional[float] = None
    detail: str = ""
    """What failed, or why it was not run (never a secret: the probes hold none)."""


@dataclasses.dataclass(frozen=True)
class Alert:
    check: str
    state: str
    """``down`` or ``up``."""
    at: float
    detail: str
    failures: int
    since: Optional[float] = None
    """When the check went down (for an ``up``: how long it was down)."""


def advance(state: Optional[Mapping[str, Any]], results: List[Result], now: float,
            down_after: int) -> Tuple[Dict[str, Any], List[Alert]]:
    """The checks' state after ``results`` at ``now``, and the alerts they make due. ``state`` maps each
    check to ``{state, fails, since, last, latency_ms, detail}``; a check no longer listed is dropped."""
    before = dict((state or {}).get("checks") or {})
    out: Dict[str, Any] = {}
    alerts: List[Alert] = []
    for r in results:
        prev = dict(before.get(r.id) or {"state": UNKNOWN, "fails": 0, "since": now})
        reported, fails = prev.get("state", UNKNOWN), int(prev.get("fails") or 0)
        entry = {**prev, "last": now, "latency_ms": r.latency_ms, "detail": r.detail}
        if r.ok is None:
            entry.update(fails=0)
            if reported != STOPPED:
                entry.update(state=STOPPED, since=now)
        elif r.ok:
            entry.update(fails=0)
            if reported == DOWN:
                alerts.append(Alert(r.id, UP, now, r.detail, fails, since=prev.get("since")))
            if reported != UP:
                entry.update(state=UP, since=now)
        else:
            fails += 1
            entry.update(fails=fails)
            if fails >= down_after and reported != DOWN:
                alerts.append(Alert(r.id, DOWN, now, r.detail, fails))
                entry.update(state=DOWN, since=now)
        out[r.id] = entry
    return {"version": VERSION, "updated": now, "checks": out}, alerts


# -- the alerts' shapes --------------------------------------------------------------------------------------

def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def alert_text(stack: str, alert: Alert) -> str:
    if alert.state == DOWN:
        return (f"{stack}: {alert.check} is DOWN after {alert.failures} failed checks "
                f"(since {_when(alert.at)}): {alert.detail}")
    gone = f" after {alert.at - alert.since:.0f} s down" if alert.since is not None else ""
    return f"{stack}: {alert.check} is UP again{gone} ({_when(alert.at)})"


@dataclasses.dataclass(frozen=True)
class Post:
    """One HTTP POST to the webhook: a JSON body, or plain text with headers (ntfy)."""

    json: Optional[Dict[str, Any]] = None
    text: Optional[str] = None
    headers: Dict[str, str] = dataclasses.field(default_factory=dict)


def alert_post(fmt: str, stack: str, alert: Alert) -> Post:
    """The alert as the webhook of ``fmt`` takes it: Slack's incoming webhooks (``text``, also Mattermost's),
    Discord's webhooks (``content``, at most 2000 characters), ntfy's publish (the message as the body; Title,
    Priority and Tags headers) or the plain event as JSON."""
    text = alert_text(stack, alert)
    event = {"stack": stack, "kind": f"health-{alert.state}", "check": alert.check, "state": alert.state,
             "at": alert.at, "failures": alert.failures, "since": alert.since, "detail": alert.detail}
    if fmt == "slack":
        return Post(json={"text": text, "estate": event})
    if fmt == "discord":
        return Post(json={"content": text[:2000], "username": "gpu-estate"})
    if fmt == "ntfy":
        down = alert.state == DOWN
        return Post(text=text, headers={"Title": f"{stack}: {alert.check} {alert.state}",
                                        "Priority": "high" if down else "default",
                                        "Tags": "rotating_light" if down else "white_check_mark"})
    if fmt == "json":
        return Post(json={**event, "text": text})
    raise ValueError(f"unknown alert format {fmt!r}: one of {', '.join(FORMATS)}")
