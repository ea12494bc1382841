"""Model servers started from the Hugging Face model the stack names (vLLM, TGI, llama.cpp): they speak
the OpenAI API under /v1 and answer to ``served_name`` (default ``model``)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional

from pydantic import Field, model_validator

from core.demand import KV_HEADROOM, VRAM_USABLE_FRACTION
from core.fields import Arg, HfRepo, ModelName
from core.workloads.base import BaseWorkload

if TYPE_CHECKING:
    from core.spec import NodeSpec


class ModelServer(BaseWorkload):
    """What every model-server preset has: the model, the name it answers to, its size, extra arguments."""

    model: Optional[HfRepo] = None
    """The Hugging Face repository served. ``HF_TOKEN`` in ``secret_env`` reaches a gated repository."""
    served_name: Optional[ModelName] = None
    """The model name the server answers to and gateway aliases name; default ``model``."""
    model_size_gb: Optional[float] = Field(None, gt=0, le=2048)
    """The model's weights in GB (the GGUF file's size for llama.cpp), checked against VRAM and counted
    on disk."""
    args: List[Arg] = Field(default_factory=list)
    """Arguments after the preset's own."""

    @model_validator(mode="after")
    def _serves_a_model(self) -> "ModelServer":
        if not self.model:
            raise ValueError(f"{self.kind.value} serves one model: set model (a Hugging Face repository id, "
                             "e.g. Qwen/Qwen2.5-7B-Instruct)")
        return self

    @property
    def model_name(self) -> Optional[str]:
        return self.served_name or self.model

    def probe(self, routed: List[str]) -> Dict[str, object]:
        # Its health route, then its OpenAI model list naming the model it serves.
        return {"type": "openai", "path": self.facts().health_path, "models": [self.model_name]}

    def preset_args(self, node: "NodeSpec", name: str) -> List[str]:
        """The arguments the preset itself gives its server (before the stack's ``args``)."""
        return []

    def command(self, node: "NodeSpec", name: str) -> List[str]:
        return self.preset_args(node, name) + list(self.args)

    def disk_gb(self) -> float:
        return super().disk_gb() + (self.model_size_gb or 0.0)

    def problems(self, spec, node_name: str, name: str, path: str):
        """Its model fits the VRAM its server takes."""
        node = spec.nodes[node_name]
        if node.gpu is None or not self.uses_gpu():
            return []
        missing = self.size_problem(path)
        if missing:
            return missing
        share = self.vram(node)
        if self.model_size_gb and self.model_size_gb * KV_HEADROOM > share:
            return [(f"{path}.model_size_gb", f"{name}'s weights ({self.model_size_gb:g} GB) leave no room for its KV "
                                              f"cache in the {share:.1f} GB it takes on {node.gpu.count}x "
                                              f"{node.gpu.model} (got model_size_gb {self.model_size_gb:g})")]
        if self.vram_gb and self.vram_gb > node.gpu.vram_gb * VRAM_USABLE_FRACTION:
            return [(f"{path}.vram_gb", f"more than the {node.gpu.vram_gb * VRAM_USABLE_FRACTION:.1f} GB usable on "
                                        f"node {node_name!r} (got {self.vram_gb:g})")]
        return []

    def size_problem(self, path: str):
        """Where the server's VRAM cannot be known without the model's size."""
        return []
