"""Where a hosted model service's resources come from: one builder per provider, each returning one
``Service`` (the billing resource and the URL the gateway reaches it at). Adding a provider is adding a
module here with a ``build(request) -> Service`` and its row in ``BUILDERS``."""
from __future__ import annotations

from typing import Callable, Dict

from components.services import cloudrun, fly
from components.services.base import Service, ServiceRequest

BUILDERS: Dict[str, Callable[[ServiceRequest], Service]] = {
    "fly": fly.build,
    "cloudrun": cloudrun.build,
}

__all__ = ["BUILDERS", "Service", "ServiceRequest", "build"]


def build(request: ServiceRequest) -> Service:
    return BUILDERS[request.spec.provider](request)
