"""An AWS node's EC2 vCPU quota, checked before its VM is launched: ``pulumi-python:dynamic/aws:Quota``.

EC2 counts GPU VMs against per-family vCPU quotas per region ("All G and VT Spot Instance Requests",
"Running On-Demand P instances", ...), and a new account's GPU quotas are 0. A launch past the quota fails
at the vendor after the rest of the node was made, with ``MaxSpotInstanceCountExceeded`` or
``VcpuLimitExceeded``. This resource reads the quota through Service Quotas (the AWS SDK's own client,
credentials and endpoint, in the node's region) when the node is first made or its need changes, and
stops the launch with an error naming the node, the quota and the figures.

A role that may not read quotas (``servicequotas:ListServiceQuotas``) is warned about, not stopped: the
launch itself is then the check.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from providers.resource import DynamicResource


class QuotaError(RuntimeError):
    pass


def ec2_quotas(region: Optional[str]) -> Dict[str, Dict[str, Any]]:
    """The account's EC2 quotas in ``region`` by name: ``{QuotaName: {QuotaCode, Value}}``."""
    import boto3

    client = boto3.client("service-quotas", region_name=region or None)
    quotas: Dict[str, Dict[str, Any]] = {}
    for page in client.get_paginator("list_service_quotas").paginate(ServiceCode="ec2"):
        for quota in page.get("Quotas", []):
            quotas[quota["QuotaName"]] = quota
    return quotas


def check(props: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The quota that governs the node (``{name, code, value}``), after refusing a need beyond it; None
    when it could not be read."""
    import botocore.exceptions

    where = f"node {props['node']!r}: {props['instance_type']} ({props['market']})"
    try:
        quotas = ec2_quotas(props.get("region"))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        pulumi.log.warn(f"{where}: its EC2 quota could not be read ({exc}); the launch itself will tell")
        return None
    names: List[str] = list(props["quota_names"])
    found = next((quotas[n] for n in names if n in quotas), None)
    if found is None:
        pulumi.log.warn(f"{where}: none of the EC2 quotas {names} is listed in {props.get('region')}; "
                        "the launch itself will tell")
        return None
    value = float(found.get("Value") or 0)
    needed = float(props["vcpus"])
    if value < needed:
        raise QuotaError(
            f"{where} needs {needed:g} vCPUs of the EC2 quota {found['QuotaName']!r} ({found.get('QuotaCode')}) "
            f"in {props.get('region')}, which allows {value:g}: nothing was launched. Ask AWS for more "
            f"(Service Quotas, {found.get('QuotaCode')}), or change the node's market or region")
    return {"name": found["QuotaName"], "code": found.get("QuotaCode"), "value": value}


class QuotaProvider(ResourceProvider):
    def create(self, props: Dict[str, Any]) -> CreateResult:
        return CreateResult(f"quota-{props['node']}", {**props, "quota": check(props)})

    def diff(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> DiffResult:
        keys = ("region", "instance_type", "market", "vcpus", "quota_names")
        return DiffResult(changes=any(olds.get(k) != news.get(k) for k in keys), replaces=[],
                          delete_before_replace=False)

    def update(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> UpdateResult:
        return UpdateResult({**news, "quota": check(news)})

    def read(self, id_: str, props: Dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)


class Quota(DynamicResource, module="aws", name="Quota"):
    """``pulumi-python:dynamic/aws:Quota``: the EC2 vCPU quota a node's launch needs, checked first."""

    quota: pulumi.Output[Optional[Dict[str, Any]]]

    def __init__(self, name: str, node: str, region: Optional[str], instance_type: str, market: str,
                 vcpus: float, quota_names: List[str], opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(QuotaProvider(), name, {
            "node": node, "region": region, "instance_type": instance_type, "market": market, "vcpus": vcpus,
            "quota_names": quota_names, "quota": None,
        }, opts)
