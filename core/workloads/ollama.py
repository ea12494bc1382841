"""Ollama: pulls and serves the tags the stack lists, the gateway's default model server."""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Dict, List, Literal, Optional

from pydantic import Field

from core import catalog
from core.demand import resident_vram
from core.fields import ModelName
from core.kinds import WorkloadKind
from core.workloads.base import BaseWorkload, listen_host

if TYPE_CHECKING:
    from core.spec import NodeSpec


class Ollama(BaseWorkload):
    kind: Literal[WorkloadKind.OLLAMA] = WorkloadKind.OLLAMA
    models: List[ModelName] = Field(default_factory=list)
    """Tags to pull and keep."""
    max_loaded: Optional[int] = Field(None, ge=1)
    """Models resident in VRAM at once (OLLAMA_MAX_LOADED_MODELS); default all of them."""

    speaks_ollama_api: ClassVar[bool] = True
    vram_field: ClassVar[Optional[str]] = "models"

    def own_env(self, node: "NodeSpec", name: str) -> Dict[str, str]:
        env = {"OLLAMA_HOST": f"{listen_host(node)}:11434", "OLLAMA_KEEP_ALIVE": "30m"}
        if self.max_loaded:
            env["OLLAMA_MAX_LOADED_MODELS"] = str(self.max_loaded)
        return env

    def served_models(self) -> List[str]:
        return list(self.models)

    def pulled_models(self) -> List[str]:
        return list(self.models)

    @property
    def max_resident(self) -> Optional[int]:
        return self.max_loaded

    def gateway_params(self, model: str, url: str) -> Dict[str, object]:
        return {"model": f"ollama_chat/{model}", "api_base": url}

    def gateway_id(self, node: str, name: str) -> str:
        return node  # an Ollama's entry keeps the node's name alone, as it always had

    def vram(self, node: "NodeSpec") -> float:
        """The VRAM of the models it keeps loaded at once, whatever the node (its models' own figures)."""
        sizes = ((catalog.ollama_model(m) or {"vram_gb": 0})["vram_gb"] for m in self.models)
        return resident_vram(sizes, self.max_loaded) if self.models else 0.0

    def disk_gb(self) -> float:
        return super().disk_gb() + sum((catalog.ollama_model(m) or {"disk_gb": 0})["disk_gb"] for m in self.models)

    def problems(self, spec, node_name: str, name: str, path: str):
        return [(f"{path}.models[{i}]", f"unknown model {tag!r}: add its size to assets/models.json")
                for i, tag in enumerate(self.models) if catalog.ollama_model(tag) is None]
