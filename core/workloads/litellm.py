"""LiteLLM: the gateway, run by the gateway host itself (components/gateway_host.py), not by compose."""
from __future__ import annotations

from typing import ClassVar, Literal

from core.kinds import WorkloadKind
from core.workloads.base import BaseWorkload


class Litellm(BaseWorkload):
    kind: Literal[WorkloadKind.LITELLM] = WorkloadKind.LITELLM

    on_gateway_host: ClassVar[bool] = True
