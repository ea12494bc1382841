"""Text Generation Inference: its launcher reads every option from its environment (MODEL_ID, PORT, ...)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Literal, Optional

from core.demand import VRAM_USABLE_FRACTION
from core.kinds import WorkloadKind
from core.workloads.base import listen_host, share_of
from core.workloads.presets import ModelServer

if TYPE_CHECKING:
    from core.spec import NodeSpec


class Tgi(ModelServer):
    kind: Literal[WorkloadKind.TGI] = WorkloadKind.TGI

    def own_env(self, node: "NodeSpec", name: str) -> Dict[str, str]:
        info = node.info(name)
        env = {"MODEL_ID": self.model, "HOSTNAME": listen_host(node), "PORT": str(info.container_port),
               "HF_HUB_CACHE": info.data_path}
        fraction = self.gpu_share(node)
        if fraction is not None:
            env["CUDA_MEMORY_FRACTION"] = f"{fraction:.2f}"
        if self.served_name:
            env["SERVED_MODEL_NAME"] = self.served_name
        return env

    def default_vram(self, node: "NodeSpec") -> float:
        # TGI's --cuda-memory-fraction defaults to all of it: whatever is free when it starts.
        return VRAM_USABLE_FRACTION * node.gpu.vram_gb

    def gpu_share(self, node: "NodeSpec") -> Optional[float]:
        return share_of(node, self.vram_gb)
