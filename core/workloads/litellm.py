"""LiteLLM: the gateway, run by the gateway host itself (components/gateway_host.py), not by compose. Its
settings are the gateway's (``gpu-estate:gateway``): the workload only says which node runs it and, for a
gateway deployed over SSH, the image."""
from __future__ import annotations

from typing import ClassVar, Dict, Literal

from core.fields import NAMESPACE
from core.kinds import WorkloadKind
from core.workloads.base import BaseWorkload

_KEYS = f"its keys reach it through {NAMESPACE}:gateway.external.<provider>.api_key_env"


class Litellm(BaseWorkload):
    kind: Literal[WorkloadKind.LITELLM] = WorkloadKind.LITELLM

    on_gateway_host: ClassVar[bool] = True
    belongs_elsewhere: ClassVar[Dict[str, str]] = {
        "port": f"LiteLLM listens on {NAMESPACE}:gateway.port",
        "env": f"the gateway host starts LiteLLM from {NAMESPACE}:gateway alone; {_KEYS}",
        "secret_env": _KEYS,
        "vram_gb": "LiteLLM runs on the gateway host without a GPU",
        "gpu": "LiteLLM runs on the gateway host without a GPU",
    }

    def problems(self, spec, node_name: str, name: str, path: str):
        g = spec.gateway
        if g is None:
            return [(path, f"LiteLLM runs on the node {NAMESPACE}:gateway.node names, and the stack has no gateway: "
                           f"set gateway.node: {node_name} (got no gateway)")]
        if g.node != node_name:
            return [(path, f"LiteLLM runs only on the node {NAMESPACE}:gateway.node names, {g.node!r} "
                           f"(got it on {node_name!r})")]
        if g.deploy == "local" and self.image:
            return [(f"{path}.image", "a local gateway runs LiteLLM from .venv-gateway (requirements-gateway.txt), "
                                      f"not from an image (got image {self.image!r})")]
        return []
