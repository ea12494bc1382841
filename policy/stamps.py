"""Read what the program stamped on billing resources (encoding in core/stamps.py).

GPU instances and serverless endpoints carry a ``stamps`` map; AWS launch templates and GCP VMs carry ``estate-*`` tags/labels.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from core.stamps import from_tags

GPU_INSTANCE = "pulumi-python:dynamic/gpu:Instance"
AWS_LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
GCP_INSTANCE = "gcp:compute/instance:Instance"
SERVERLESS_ENDPOINT = "pulumi-python:dynamic/runpod:Endpoint"
FLY_MACHINE = "pulumi-python:dynamic/fly:Machine"
CLOUD_RUN_SERVICE = "gcp:cloudrunv2/service:Service"
JOB = "pulumi-python:dynamic/job:Job"
"""A GPU job's machine: stamped at its cap (``core.jobs.stamp``), so the budget policies count it."""


def node_stamps(resource_type: str, props: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The node's stamps, typed, or None when the resource is not a node's billing resource."""
    if resource_type in (GPU_INSTANCE, SERVERLESS_ENDPOINT, FLY_MACHINE, JOB):
        return dict(props.get("stamps") or {}) or None
    if resource_type == AWS_LAUNCH_TEMPLATE:
        return from_tags(props.get("tags") or {}) or None
    if resource_type in (GCP_INSTANCE, CLOUD_RUN_SERVICE):
        return from_tags(props.get("labels") or {}) or None
    return None


ESTATE = "gpu-estate:index:Estate"


def image_stamps(resource_type: str, props: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The image aliases the estate's own resource carries (``alias@node`` -> workflow, seconds and $ per
    image), else nothing."""
    if resource_type != ESTATE:
        return {}
    return dict((props.get("stamps") or {}).get("images") or {})


GCS_BUCKET = "gcp:storage/bucket:Bucket"
S3_BUCKET = "aws:s3/bucket:Bucket"


def fixed_monthly(resource_type: str, props: Mapping[str, Any]) -> float:
    """The fixed monthly cost stamped on a non-node resource (model buckets), else 0."""
    if resource_type == GCS_BUCKET:
        return float(from_tags(props.get("labels") or {}).get("monthly_usd") or 0)
    if resource_type == S3_BUCKET:
        return float(from_tags(props.get("tags") or {}).get("monthly_usd") or 0)
    return 0.0
