"""Read what the program stamped on billing resources (encoding in components/stamps.py).

GPU instances carry a ``stamps`` map; AWS launch templates and GCP VMs carry ``estate-*`` tags/labels.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from components.stamps import from_tags

GPU_INSTANCE = "pulumi-python:dynamic/gpu:Instance"
AWS_LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
GCP_INSTANCE = "gcp:compute/instance:Instance"


def node_stamps(resource_type: str, props: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The node's stamps, typed, or None when the resource is not a node's billing resource."""
    if resource_type == GPU_INSTANCE:
        return dict(props.get("stamps") or {}) or None
    if resource_type == AWS_LAUNCH_TEMPLATE:
        return from_tags(props.get("tags") or {}) or None
    if resource_type == GCP_INSTANCE:
        return from_tags(props.get("labels") or {}) or None
    return None
