"""Hosted model services (``services.<name>``): one class per provider, a pydantic union discriminated by
``provider``. Adding one is adding a module here with its class, the class to ``SERVICES_IN_ORDER``, and
its builder in ``components/services``."""
from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from core.services.base import BaseService, ServiceEstimate
from core.services.cloudrun import CloudRunService
from core.services.fly import FlyService

SERVICES_IN_ORDER = (FlyService, CloudRunService)

ServiceSpec = Annotated[Union[SERVICES_IN_ORDER], Field(discriminator="provider")]
"""One hosted model service, parsed into the class of its provider."""

PROVIDERS = tuple(c.model_fields["provider"].annotation.__args__[0] for c in SERVICES_IN_ORDER)

__all__ = ["BaseService", "CloudRunService", "FlyService", "PROVIDERS", "SERVICES_IN_ORDER", "ServiceEstimate",
           "ServiceSpec"]
