"""Read what the program stamped on billing resources (components/node.py STAMP_KEYS).

GPU instances carry a ``stamps`` map; AWS/GCP VMs carry ``estate-*`` tags or labels as strings.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

GPU_INSTANCE = "pulumi-python:dynamic/gpu:Instance"
AWS_LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
GCP_INSTANCE = "gcp:compute/instance:Instance"
NUMBERS = ("hourly_usd", "hours_per_month", "idle_shutdown_minutes", "vram_gb", "vram_demand_gb")


def node_stamps(resource_type: str, props: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The node's stamps, typed, or None when the resource is not a node's billing resource."""
    if resource_type == GPU_INSTANCE:
        return dict(props.get("stamps") or {}) or None
    if resource_type in (AWS_LAUNCH_TEMPLATE, GCP_INSTANCE):
        tags = props.get("tags" if resource_type == AWS_LAUNCH_TEMPLATE else "labels") or {}
        raw = {k.removeprefix("estate-").replace("-", "_"): v for k, v in tags.items() if k.startswith("estate-")}
        if not raw:
            return None
        out: Dict[str, Any] = dict(raw)
        for k in NUMBERS:
            if k in out:
                out[k] = float(str(out[k]).replace("_", "."))
        out["pay_per_use"] = str(out.get("pay_per_use", "true")) == "true"
        return out
    return None
