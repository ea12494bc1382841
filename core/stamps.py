"""What the program stamps on a node's billing resource for the policy pack, and how it reads back.

GPU instances carry the stamps as a map; AWS/GCP resources as ``estate-*`` tags or labels, which must
be lower-case strings without dots (GCP label rules), so numbers and booleans are encoded here and
decoded by ``from_tags`` in the same place.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping

from core.pricing import EndpointEstimate, EstateEstimate, NodeEstimate
from core.spec import NodeSpec, ServerlessSpec
from core.vendors import SERVERLESS_PROVIDER

PREFIX = "estate-"
NUMBERS = ("hourly_usd", "hours_per_month", "idle_shutdown_minutes", "vram_gb", "model_vram_gb", "max_loaded",
           "monthly_usd", "ssh_port", "always_on_daily_usd", "burst_hourly_usd", "max_workers")


def to_tags(stamp: Mapping[str, Any]) -> Dict[str, str]:
    return {f"{PREFIX}{k.replace('_', '-')}": str(v).lower().replace(".", "_").replace(" ", "-")
            for k, v in stamp.items()}


def from_tags(tags: Mapping[str, str]) -> Dict[str, Any]:
    """The stamps encoded by ``to_tags``, numbers and ``pay_per_use`` typed again; empty if none."""
    out: Dict[str, Any] = {k.removeprefix(PREFIX).replace("-", "_"): v for k, v in tags.items()
                           if k.startswith(PREFIX)}
    if not out:
        return {}
    for k in NUMBERS:
        if k in out:
            out[k] = float(str(out[k]).replace("_", "."))
    out["pay_per_use"] = str(out.get("pay_per_use", "true")) == "true"
    return out


def node_stamp(name: str, node: NodeSpec, estimate: NodeEstimate) -> Dict[str, Any]:
    """What a node's billing resource carries for the policy pack."""
    return {
        "node": name,
        "provider": node.provider.value,
        "gpu": node.gpu.model if node.gpu else "",
        "hourly_usd": estimate.hourly_usd,
        "hours_per_month": node.hours_per_month,
        "idle_shutdown_minutes": node.idle_shutdown_minutes or 0,
        "pay_per_use": node.is_pay_per_use,
        "market": node.market.value,
        "vram_gb": node.gpu.vram_gb if node.gpu else 0,
        "region": node.regions[0] if node.regions else "",
        "access": node.access.value,
        # Where this node's model servers listen, whatever ports the stack gave them ("-"-joined: a
        # GCP label value has no commas).
        # (ComfyUI's images bridge included, on its own port).
        "model_ports": "-".join(str(p) for n in node.workloads if node.info(n).model_server
                                for p in dict.fromkeys((node.port(n), node.serving_port(n)))),
        "ssh_port": node.ssh.port,
    }


def image_stamps(estimate: EstateEstimate) -> Dict[str, Any]:
    """What the estate's own resource carries of its image aliases for the cost diff: ``alias@node`` ->
    workflow, seconds and $ per image (nothing when it has none)."""
    if not estimate.images:
        return {}
    return {"images": {f"{i.alias}@{i.node}": {"workflow": i.workflow, "seconds_per_image": i.seconds_per_image,
                                                "usd_per_image": i.usd_per_image} for i in estimate.images}}


def endpoint_stamp(name: str, endpoint: ServerlessSpec, estimate: EndpointEstimate) -> Dict[str, Any]:
    """What a serverless endpoint carries for the policy pack and the cost diff: the node-shaped figures
    (one flex worker's $/h, and the hours of it that cost what the endpoint plans to), so the budget
    policies count it like a node, and what it is beside them."""
    return {
        "node": name,
        "provider": SERVERLESS_PROVIDER,
        # Every pool a worker may start on, each checked against the pack's allowed GPUs.
        "gpu": endpoint.gpu_ids,
        "regions": list(endpoint.regions),
        "hourly_usd": estimate.worker_hourly_usd,
        "hours_per_month": estimate.equivalent_hours,
        "monthly_usd": estimate.monthly_usd,
        # Workers stop after their idle timeout: pay-per-use that stops itself when idle.
        "idle_shutdown_minutes": round(endpoint.idle_timeout_seconds / 60, 2),
        "pay_per_use": True,
        "market": "serverless",
        "min_workers": endpoint.workers.min,
        "max_workers": endpoint.workers.max,
        "burst_hourly_usd": estimate.burst_hourly_usd,
        # What its active workers cost every day, busy or not: the part the daily cap reads.
        "always_on_daily_usd": round(estimate.min_workers * estimate.active_hourly_usd * 24, 2),
    }
