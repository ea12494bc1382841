"""llama.cpp's server: one GGUF file from a Hugging Face repository, every option from its env (LLAMA_ARG_*)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Literal, Optional

from pydantic import model_validator

from core.demand import KV_HEADROOM
from core.fields import GgufFile
from core.kinds import WorkloadKind
from core.workloads.base import listen_host
from core.workloads.presets import ModelServer

if TYPE_CHECKING:
    from core.spec import NodeSpec

CONTEXT_GB = 1.0
"""llama.cpp's KV cache and compute buffers at its default context, on top of the GGUF file."""


class LlamaCpp(ModelServer):
    kind: Literal[WorkloadKind.LLAMA_CPP] = WorkloadKind.LLAMA_CPP
    gguf: Optional[GgufFile] = None
    """The GGUF file in ``model``'s repository."""

    @model_validator(mode="after")
    def _one_file(self) -> "LlamaCpp":
        if not self.gguf:
            raise ValueError("llama-cpp serves one GGUF file: set gguf (the file in model's repository)")
        return self

    def own_env(self, node: "NodeSpec", name: str) -> Dict[str, str]:
        info = node.info(name)
        env = {"LLAMA_ARG_HF_REPO": self.model, "LLAMA_ARG_HF_FILE": self.gguf, "LLAMA_ARG_ALIAS": self.model_name,
               "LLAMA_ARG_HOST": listen_host(node), "LLAMA_ARG_PORT": str(info.container_port),
               "LLAMA_CACHE": info.data_path}
        if self.uses_gpu():
            env["LLAMA_ARG_N_GPU_LAYERS"] = "999"  # every layer on the GPU
        return env

    def default_vram(self, node: "NodeSpec") -> float:
        return self.model_size_gb * KV_HEADROOM + CONTEXT_GB if self.model_size_gb else 0.0

    def size_problem(self, path: str):
        if self.model_size_gb or self.vram_gb:
            return []
        return [(f"{path}.model_size_gb", f"llama-cpp's VRAM is its GGUF file plus its context: give the size of "
                                          f"{self.gguf!r} in GB (got none)")]
