"""What every hosted model service has: a model server the estate does not reach over SSH, answering
OpenAI's API at an HTTPS address with a bearer the gateway holds, priced by its own vendor's rates.

A service kind (``fly``, ``cloudrun``) is one class in this package with its fields and these hooks: what
the gateway sends it (``model_name``), what it costs (``estimate``), what its billing resource carries
for the policy pack and the cost diff (``stamp``) and how the drawing shows it (``describe``). Its
resources are built by the module of the same name in ``components/services``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, Optional

from core.catalog import HOURS_IN_MONTH
from core.fields import ModelName, StackModel
from core.identity import route_base


@dataclasses.dataclass(frozen=True)
class ServiceEstimate:
    """What a hosted model service is planned to cost, in the node-shaped figures the cost table, the cost
    diff and the policy pack read: one instance's $/h and the hours of it that cost what the month does."""

    service: str
    provider: str
    size: str
    """What one instance is (``shared-cpu-2x 2048 MB``, ``nvidia-l4 4 vCPU 16 GiB``)."""
    instance_hourly_usd: float
    always_on_monthly_usd: float
    """What bills whatever the traffic: running instances kept up, volumes."""
    busy_monthly_usd: float
    """What the expected busy hours of instances started on demand cost."""
    max_instances: int
    basis: str

    @property
    def monthly_usd(self) -> float:
        return round(self.always_on_monthly_usd + self.busy_monthly_usd, 2)

    @property
    def equivalent_hours(self) -> float:
        """Hours a month of one instance that cost what the service plans to."""
        return round(self.monthly_usd / self.instance_hourly_usd, 2) if self.instance_hourly_usd else 0.0

    @property
    def burst_hourly_usd(self) -> float:
        """Every instance busy at once: the most an hour can cost."""
        return round(self.max_instances * self.instance_hourly_usd, 4)

    @property
    def always_on_daily_usd(self) -> float:
        return round(self.always_on_monthly_usd / HOURS_IN_MONTH * 24, 2)


class BaseService(StackModel):
    """A hosted model service (``services.<name>``)."""

    TITLE: ClassVar[str] = ""
    """The vendor and product as the drawing and the cost table name them."""

    provider: str
    served_name: ModelName
    """The model name it answers to, and that gateway aliases name."""
    region: str
    """Where it runs (every kind narrows what a region looks like)."""

    @property
    def model_name(self) -> str:
        return self.served_name

    def estimate(self, name: str) -> ServiceEstimate:  # pragma: no cover - every kind has its own
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - every kind has its own
        raise NotImplementedError

    def stamp(self, name: str, estimate: ServiceEstimate) -> Dict[str, Any]:
        """What its billing resource carries for the policy pack and the cost diff, shaped as a node's."""
        return {
            "node": name,
            "provider": self.provider,
            "gpu": self.gpu_name or "",
            "regions": [self.region],
            "hourly_usd": estimate.instance_hourly_usd,
            "hours_per_month": estimate.equivalent_hours,
            "monthly_usd": estimate.monthly_usd,
            "idle_shutdown_minutes": self.idle_minutes,
            "pay_per_use": True,
            "market": "service",
            "max_workers": estimate.max_instances,
            "burst_hourly_usd": estimate.burst_hourly_usd,
            # What bills every day, busy or not: the part the daily cap reads.
            "always_on_daily_usd": estimate.always_on_daily_usd,
        }

    gpu_name: ClassVar[Optional[str]] = None
    """The GPU an instance has, for the pack's allowed GPUs (None: CPU only)."""
    idle_minutes: ClassVar[float] = 0.0
    """How long an idle instance bills before its vendor stops it (0: it is kept running)."""

    id_token: ClassVar[bool] = False
    """Whether it checks a Google ID token for its URL instead of a bearer of its own: the gateway's route
    then goes through the gateway host's identity proxy (``core.identity``), which mints and refreshes it."""

    def gateway_key_env(self, name: str) -> str:
        """The gateway host's environment variable holding the bearer its route to the service sends."""
        raise NotImplementedError  # pragma: no cover - every kind has its own

    def gateway_base(self, name: str, url: str, proxy: str) -> str:
        """The OpenAI base URL the gateway's route calls: the service's own (``url``), or its route through
        the identity proxy at ``proxy`` for a service checking an ID token."""
        return route_base(proxy, name) if self.id_token else f"{url}/v1"
