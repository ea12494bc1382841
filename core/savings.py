"""What self-hosting saved: the month's gateway traffic per alias, served by the estate's nodes or by external
fallbacks, priced at the external APIs' dated prices (``assets/prices/apis.json``) against what the nodes
cost (seed 002's comparison: $1,300-2,100 a month of APIs against $400-500 of GPUs).

Pure arithmetic over the gateway's usage lines (one per answered request, written by its usage callback,
``assets/gateway/estate_usage.py``) and the check document's deployments and fallbacks:

- a request answered by a node's deployment (``alias@node``), a serverless endpoint or one of the stack's
  hosted services (Fly.io, Cloud Run) is served by the estate; one answered by an external model is served
  externally, and its tokens cost what the table says;
- the estate's tokens of an alias are priced at the first external model its fallback chain reaches (an
  alias naming another alias follows it): what the same traffic would have cost without the estate. An
  alias with no external fallback, or one the table does not price, is counted but not priced, and says so;
- the saving is that figure less what the nodes cost this month so far and what the serverless endpoints
  were billed for the requests they answered (LiteLLM's own per-second figure). A hosted service's bill is
  not subtracted: like a node it bills by the hour whether or not it answers, the spend ledger the nodes'
  figure comes from does not carry it, and a per-request figure would understate an always-on Machine.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional

TOKENS_PER_M = 1_000_000.0


def reference_model(alias: str, document: Mapping[str, Any], depth: int = 0) -> Optional[str]:
    """The LiteLLM model string of the first external model ``alias``'s fallback chain reaches."""
    external = document.get("external") or {}
    aliases = document.get("aliases") or {}
    if depth > len(aliases):
        return None
    for name in (aliases.get(alias) or {}).get("fallbacks") or []:
        if name in external:
            return str(external[name])
        if name in aliases:
            found = reference_model(name, document, depth + 1)
            if found:
                return found
    return None


def price_of(model: Optional[str], prices: Mapping[str, Any], input_tokens: int, output_tokens: int,
             images: int) -> Optional[float]:
    """What ``model`` charges for that traffic at the table's prices (None: the table does not price it)."""
    row = (prices.get("models") or {}).get(model or "")
    if row is None:
        return None
    return (input_tokens * float(row.get("input_per_mtok") or 0.0) / TOKENS_PER_M
            + output_tokens * float(row.get("output_per_mtok") or 0.0) / TOKENS_PER_M
            + images * float(row.get("per_image") or 0.0))


def _bucket() -> Dict[str, int]:
    return {"requests": 0, "input_tokens": 0, "output_tokens": 0, "images": 0}


def month_report(usage: Iterable[Mapping[str, Any]], document: Mapping[str, Any], month: str,
                 nodes_usd: float, nodes_basis: str) -> Dict[str, Any]:
    """The month's report: per alias, the traffic the estate and external APIs served, what the estate's
    share would have cost at its reference model, and the totals with the saving."""
    deployments = document.get("deployments") or {}
    prices = document.get("prices") or {}
    aliases: Dict[str, Dict[str, Any]] = {}
    serverless_usd = 0.0
    external_usd = 0.0
    unpriced_external: List[str] = []
    for line in usage:
        if str(line.get("month") or "") != month:
            continue
        dep = deployments.get(str(line.get("id"))) or {}
        alias = str(line.get("alias") or dep.get("alias") or "")
        entry = aliases.setdefault(alias, {"estate": _bucket(), "external": _bucket()})
        served = "external" if dep.get("where") == "external" else "estate"
        b = entry[served]
        tin, tout, img = int(line.get("input_tokens") or 0), int(line.get("output_tokens") or 0), int(line.get("images") or 0)
        b["requests"] += 1
        b["input_tokens"] += tin
        b["output_tokens"] += tout
        b["images"] += img
        if dep.get("where") == "serverless":
            serverless_usd += float(line.get("cost_usd") or 0.0)
        elif served == "external":
            cost = price_of(dep.get("model"), prices, tin, tout, img)
            if cost is None:
                unpriced_external.append(str(dep.get("model")))
            external_usd += cost or 0.0
    equivalent = 0.0
    for alias, entry in aliases.items():
        ref = reference_model(alias, document)
        e = entry["estate"]
        cost = price_of(ref, prices, e["input_tokens"], e["output_tokens"], e["images"])
        entry["priced_at"] = ref if cost is not None else None
        entry["external_equivalent_usd"] = round(cost, 8) if cost is not None else None
        if cost is None and e["requests"]:
            entry["unpriced"] = (f"{alias} falls back to no external model the price table lists"
                                 + (f" ({ref})" if ref else ""))
        equivalent += cost or 0.0
    saving = equivalent - nodes_usd - serverless_usd
    return {"month": month, "prices_as_of": prices.get("as_of"), "aliases": dict(sorted(aliases.items())),
            "totals": {"external_equivalent_usd": round(equivalent, 8), "nodes_usd": round(nodes_usd, 8),
                       "nodes_basis": nodes_basis, "serverless_usd": round(serverless_usd, 8),
                       "external_usd": round(external_usd, 8), "saving_usd": round(saving, 8)},
            **({"unpriced_external": sorted(set(unpriced_external))} if unpriced_external else {})}


def savings_line(report: Mapping[str, Any]) -> str:
    """One line an operator reads: what the estate's traffic would have cost at the APIs, what it cost."""
    t = report.get("totals") or {}
    served = sum(a["estate"]["requests"] for a in (report.get("aliases") or {}).values())
    outside = sum(a["external"]["requests"] for a in (report.get("aliases") or {}).values())
    serverless = float(t.get("serverless_usd") or 0.0)
    extra = f" and serverless ${serverless:.2f}" if serverless else ""
    return (f"{report.get('month')}: {served} requests served by the estate would have cost "
            f"${float(t.get('external_equivalent_usd') or 0):.2f} at the APIs (prices of {report.get('prices_as_of')}); "
            f"the nodes cost ${float(t.get('nodes_usd') or 0):.2f} ({t.get('nodes_basis')}){extra}: "
            f"saved ${float(t.get('saving_usd') or 0):.2f}; {outside} requests went to external fallbacks "
            f"(${float(t.get('external_usd') or 0):.2f})")
