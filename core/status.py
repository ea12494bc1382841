"""The estate's status view: one document from the health agent's checks, the spend ledger and the gateway's
usage, and the same figures as an HTML page, Prometheus's text format and terminal lines.

- **nodes**: power, state (from their checks), $/h, this month's cost (the spend watcher's ledger where it
  runs, else the hours since the month began at the node's price for a node kept running or idle);
- **services**: each check's state, since when, its last run, latency and what it saw;
- **aliases**: where each would route now (its nodes whose service is up, else the first fallback that
  is), with its fallbacks;
- **spend** against the budget, and the month's **savings** (``core.savings``).

Every value comes from the check document, the agent's state or the usage lines: none is a secret.
"""
from __future__ import annotations

import datetime as dt
import html
from typing import Any, Dict, Iterable, List, Mapping, Optional

from core import health, savings
from core.spend import month_of

LIVE = (health.UP, health.UNKNOWN)


def month_start(now: float) -> float:
    d = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    return dt.datetime(d.year, d.month, 1, tzinfo=dt.timezone.utc).timestamp()


def _node_state(states: List[str]) -> str:
    if not states:
        return health.UNKNOWN
    if all(s == health.STOPPED for s in states):
        return health.STOPPED
    if all(s == health.DOWN for s in states):
        return health.DOWN
    if any(s == health.DOWN for s in states):
        return "degraded"
    return health.UP if all(s in (health.UP, health.STOPPED) for s in states) else health.UNKNOWN


def _routes(alias: str, document: Mapping[str, Any], services: List[Dict[str, Any]], depth: int = 0) -> List[str]:
    """Where ``alias`` would be sent now: its nodes whose serving check is up (or not yet run), its serverless
    endpoints and hosted services; else what its first answering fallback would send it to."""
    aliases, external = document.get("aliases") or {}, document.get("external") or {}
    a = aliases.get(alias) or {}
    if depth > len(aliases):
        return []
    live = [s["node"] for s in services if s["what"] == "service" and a.get("model") in (s.get("models") or [])
            and s["node"] in (a.get("nodes") or []) and s["state"] in LIVE]
    now = [*dict.fromkeys(live), *(f"serverless/{e}" for e in a.get("serverless") or []),
           *(f"service/{s}" for s in a.get("services") or [])]
    if now:
        return now
    for name in a.get("fallbacks") or []:
        if name in external:
            return [f"external/{name}"]
        if name in aliases:
            found = _routes(name, document, services, depth + 1)
            if found:
                return found
    return []


def node_costs(document: Mapping[str, Any], ledger: Optional[Mapping[str, Any]], now: float) -> Dict[str, Any]:
    """Node -> this month's cost so far, and where the figures come from (``ledger`` or ``estimate``)."""
    month = month_of(now)
    if ledger and ledger.get("month") == month:
        seen = ledger.get("nodes") or {}
        return {"basis": "spend ledger", "nodes": {n["node"]: round(float((seen.get(n["node"]) or {}).get("usd") or 0.0), 4)
                                                   for n in document.get("nodes") or []}}
    # Without the spend watcher: the node's expected share of the hours since the month began, at its $/h.
    hours = max(0.0, now - month_start(now)) / 3600.0
    return {"basis": "estimate: expected hours this month at $/h", "nodes": {
        n["node"]: round(hours * float(n.get("share", 1.0)) * float(n.get("hourly_usd") or 0.0)
                         if n.get("power") != "stopped" else 0.0, 4)
        for n in document.get("nodes") or []}}


def status_document(document: Mapping[str, Any], state: Mapping[str, Any], now: float,
                    ledger: Optional[Mapping[str, Any]] = None,
                    usage: Iterable[Mapping[str, Any]] = ()) -> Dict[str, Any]:
    checked = (state or {}).get("checks") or {}
    services = []
    for c in document.get("checks") or []:
        s = checked.get(c["id"]) or {}
        services.append({"id": c["id"], "what": c["what"], "node": c.get("node"), "workload": c.get("workload"),
                         "models": c.get("models") or [], "url": c.get("url"), "probe": (c.get("probe") or {}).get("type"),
                         "state": s.get("state", health.UNKNOWN), "since": s.get("since"), "last": s.get("last"),
                         "latency_ms": s.get("latency_ms"), "failures": int(s.get("fails") or 0),
                         "detail": s.get("detail", "")})
    costs = node_costs(document, ledger, now)
    nodes = []
    for n in document.get("nodes") or []:
        states = [s["state"] for s in services if s["node"] == n["node"]]
        nodes.append({"node": n["node"], "provider": n.get("provider"), "power": n.get("power"),
                      "state": _node_state(states), "hourly_usd": n.get("hourly_usd"),
                      "month_usd": costs["nodes"].get(n["node"], 0.0), "models": n.get("models") or []})
    aliases = {alias: {"model": a.get("model"), "routes_now": _routes(alias, document, services),
                       "nodes": a.get("nodes") or [], "fallbacks": a.get("fallbacks") or []}
               for alias, a in (document.get("aliases") or {}).items()}
    budget = float(document.get("budget_usd") or 0.0)
    spent = float(ledger["spent_usd"]) if ledger and ledger.get("month") == month_of(now) else sum(costs["nodes"].values())
    month = month_of(now)
    report = savings.month_report(usage, document, month, sum(costs["nodes"].values()), costs["basis"])
    return {"version": health.VERSION, "stack": document.get("stack"), "at": now, "nodes": nodes,
            "services": services, "aliases": aliases,
            "spend": {"month": month, "spent_usd": round(spent, 4), "budget_usd": budget, "basis": costs["basis"],
                      "percent": round(100.0 * spent / budget, 2) if budget else None},
            "savings": report}


# -- Prometheus's text format --------------------------------------------------------------------------------

def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample(name: str, labels: Mapping[str, Any], value: float) -> str:
    inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {float(value)!r}" if inner else f"{name} {float(value)!r}"


METRICS = {
    "estate_check_up": ("gauge", "1 when the check passes, 0 when it fails or has not run; absent while its node is stopped"),
    "estate_check_down": ("gauge", "1 once the check is reported down (its failures reached health.down_after)"),
    "estate_check_latency_seconds": ("gauge", "How long the check's last probe took"),
    "estate_check_consecutive_failures": ("gauge", "Failures in a row of the check"),
    "estate_node_up": ("gauge", "1 when every check of the node passes; 0 when one fails; absent while it is stopped"),
    "estate_node_hourly_usd": ("gauge", "The node's price in $/h"),
    "estate_node_month_usd": ("gauge", "What the node has cost this month so far"),
    "estate_alias_route": ("gauge", "1 for each place the alias would be sent now"),
    "estate_spend_month_usd": ("gauge", "What the estate has cost this month so far"),
    "estate_budget_month_usd": ("gauge", "The monthly budget"),
    "estate_alias_month_requests": ("gauge", "Requests this month per alias, by who served them"),
    "estate_alias_month_tokens": ("gauge", "Tokens this month per alias, by who served them and direction"),
    "estate_alias_month_images": ("gauge", "Images this month per alias, by who served them"),
    "estate_external_equivalent_month_usd": ("gauge", "What the estate's traffic this month would have cost at the external APIs"),
    "estate_external_month_usd": ("gauge", "What the external fallbacks' traffic this month cost at the price table"),
    "estate_savings_month_usd": ("gauge", "The external equivalent less what the nodes and serverless endpoints cost"),
}


def metrics_text(doc: Mapping[str, Any]) -> str:
    """The status document in Prometheus's text exposition format (0.0.4)."""
    out: Dict[str, List[str]] = {name: [] for name in METRICS}
    for s in doc.get("services") or []:
        labels = {"check": s["id"], "what": s["what"], "node": s.get("node") or ""}
        if s["state"] == health.STOPPED:
            continue
        out["estate_check_up"].append(_sample("estate_check_up", labels, 1 if s["state"] == health.UP else 0))
        out["estate_check_down"].append(_sample("estate_check_down", labels, 1 if s["state"] == health.DOWN else 0))
        out["estate_check_consecutive_failures"].append(_sample("estate_check_consecutive_failures", labels, s["failures"]))
        if s.get("latency_ms") is not None:
            out["estate_check_latency_seconds"].append(_sample("estate_check_latency_seconds", labels, s["latency_ms"] / 1000.0))
    for n in doc.get("nodes") or []:
        labels = {"node": n["node"], "provider": n.get("provider") or "", "power": n.get("power") or ""}
        if n["state"] != health.STOPPED:
            out["estate_node_up"].append(_sample("estate_node_up", labels, 1 if n["state"] == health.UP else 0))
        out["estate_node_hourly_usd"].append(_sample("estate_node_hourly_usd", labels, n.get("hourly_usd") or 0))
        out["estate_node_month_usd"].append(_sample("estate_node_month_usd", labels, n.get("month_usd") or 0))
    for alias, a in (doc.get("aliases") or {}).items():
        for target in a.get("routes_now") or []:
            out["estate_alias_route"].append(_sample("estate_alias_route", {"alias": alias, "target": target}, 1))
    spend = doc.get("spend") or {}
    out["estate_spend_month_usd"].append(_sample("estate_spend_month_usd", {}, spend.get("spent_usd") or 0))
    out["estate_budget_month_usd"].append(_sample("estate_budget_month_usd", {}, spend.get("budget_usd") or 0))
    report = doc.get("savings") or {}
    for alias, a in (report.get("aliases") or {}).items():
        for by in ("estate", "external"):
            b = a[by]
            out["estate_alias_month_requests"].append(_sample("estate_alias_month_requests", {"alias": alias, "served_by": by}, b["requests"]))
            out["estate_alias_month_images"].append(_sample("estate_alias_month_images", {"alias": alias, "served_by": by}, b["images"]))
            for direction in ("input", "output"):
                out["estate_alias_month_tokens"].append(_sample(
                    "estate_alias_month_tokens", {"alias": alias, "served_by": by, "direction": direction}, b[f"{direction}_tokens"]))
    t = report.get("totals") or {}
    out["estate_external_equivalent_month_usd"].append(_sample("estate_external_equivalent_month_usd", {}, t.get("external_equivalent_usd") or 0))
    out["estate_external_month_usd"].append(_sample("estate_external_month_usd", {}, t.get("external_usd") or 0))
    out["estate_savings_month_usd"].append(_sample("estate_savings_month_usd", {}, t.get("saving_usd") or 0))
    lines = []
    for name, (kind, text) in METRICS.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", *out[name]]
    return "\n".join(lines) + "\n"


# -- what people read ----------------------------------------------------------------------------------------

def _ago(t: Optional[float], now: float) -> str:
    if t is None:
        return "never"
    s = max(0, int(now - float(t)))
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def status_lines(doc: Mapping[str, Any], now: Optional[float] = None) -> List[str]:
    """The status document as a terminal shows it."""
    now = float(doc.get("at") or 0.0) if now is None else now
    spend = doc.get("spend") or {}
    lines = [f"{doc.get('stack')}: ${float(spend.get('spent_usd') or 0):.2f} of ${float(spend.get('budget_usd') or 0):.2f} "
             f"in {spend.get('month')} ({spend.get('basis')})", "", "NODES"]
    for n in doc.get("nodes") or []:
        lines.append(f"  {n['node']:<14} {n['state']:<9} {n.get('power') or '':<8} ${float(n.get('hourly_usd') or 0):.3f}/h  "
                     f"${float(n.get('month_usd') or 0):8.2f} this month  {', '.join(n.get('models') or [])}")
    lines += ["", "SERVICES"]
    for s in doc.get("services") or []:
        latency = f"{s['latency_ms']:.0f} ms" if s.get("latency_ms") is not None else "-"
        since = f"for {_ago(s.get('since'), now)}" if s.get("last") is not None else ""
        last = f"checked {_ago(s.get('last'), now)} ago" if s.get("last") is not None else "not checked yet"
        lines.append(f"  {s['id']:<34} {s['state']:<8} {since:<9} {last:<17} {latency:>8}  {s.get('detail') or ''}")
    lines += ["", "ALIASES"]
    for alias, a in (doc.get("aliases") or {}).items():
        lines.append(f"  {alias:<20} -> {', '.join(a.get('routes_now') or ['nowhere'])}"
                     f"{'  (fallbacks ' + ', '.join(a['fallbacks']) + ')' if a.get('fallbacks') else ''}")
    lines += ["", "SAVINGS", "  " + savings.savings_line(doc.get("savings") or {})]
    return lines


def status_html(doc: Mapping[str, Any]) -> str:
    """The status document as one HTML page (every value escaped)."""
    e = lambda v: html.escape("" if v is None else str(v))  # noqa: E731
    now = float(doc.get("at") or 0.0)

    def table(head: List[str], rows: List[List[Any]]) -> str:
        return ("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>")

    spend = doc.get("spend") or {}
    parts = [
        f"<h1>{e(doc.get('stack'))}</h1>",
        f"<p>${float(spend.get('spent_usd') or 0):.2f} of ${float(spend.get('budget_usd') or 0):.2f} in {e(spend.get('month'))} "
        f"({e(spend.get('basis'))}). Checked {e(_ago(doc.get('at'), now))} ago.</p>",
        "<h2>Nodes</h2>", table(["node", "state", "power", "$/h", "this month", "models"], [
            [n["node"], n["state"], n.get("power"), f"{float(n.get('hourly_usd') or 0):.3f}",
             f"{float(n.get('month_usd') or 0):.2f}", ", ".join(n.get("models") or [])] for n in doc.get("nodes") or []]),
        "<h2>Services</h2>", table(["check", "state", "since", "last check", "latency", "detail"], [
            [s["id"], s["state"], _ago(s.get("since"), now) + " ago", _ago(s.get("last"), now) + " ago",
             "-" if s.get("latency_ms") is None else f"{s['latency_ms']:.0f} ms", s.get("detail")]
            for s in doc.get("services") or []]),
        "<h2>Aliases</h2>", table(["alias", "model", "routes now", "fallbacks"], [
            [alias, a.get("model"), ", ".join(a.get("routes_now") or ["nowhere"]), ", ".join(a.get("fallbacks") or [])]
            for alias, a in (doc.get("aliases") or {}).items()]),
        "<h2>Savings</h2>", f"<p>{e(savings.savings_line(doc.get('savings') or {}))}</p>",
    ]
    style = "body{font-family:sans-serif;margin:2em}td,th{padding:.2em .8em;text-align:left}tr:nth-child(even){background:#f4f4f4}"
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"30\">"
            f"<title>{e(doc.get('stack'))} status</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
