"""The record every service builder returns, and what each is given."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

import pulumi

from core.services import BaseService, ServiceEstimate


@dataclasses.dataclass(frozen=True)
class ServiceRequest:
    name: str
    """The service's name in the stack (``services.<name>``); its resources are named after it."""
    label: str
    """``<project>-<stack>-<name>``: the name it carries at its vendor where the stack gives none."""
    spec: BaseService
    estimate: ServiceEstimate
    stamp: Dict[str, Any]
    """What the policy pack and the cost diff read, stamped on the billing resource."""
    opts: pulumi.ResourceOptions
    buckets: Dict[str, Any] = dataclasses.field(default_factory=dict)
    """Bucket name in the stack -> its ``ModelBucket`` component."""


@dataclasses.dataclass(frozen=True)
class Service:
    resource: pulumi.Resource
    """The billing resource."""
    url: pulumi.Output
    """Where the gateway reaches it (``/v1`` follows)."""
    api_key: Optional[pulumi.Output] = None
    """The bearer its model server checks (a secret output), where the program makes one."""
    identity: Optional[pulumi.Output] = None
    """The key file (JSON, a secret output) of the service account the gateway invokes it as, for a service
    that checks a Google ID token (the gateway host's identity proxy mints one with it)."""
