"""vLLM: its image runs ``vllm serve``, which takes the model and its options as arguments."""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Literal, Optional

from core.kinds import WorkloadKind
from core.workloads.base import share_of, listen_host
from core.workloads.presets import ModelServer

if TYPE_CHECKING:
    from core.spec import NodeSpec

GPU_FRACTION = 0.90
"""vLLM's own default ``--gpu-memory-utilization``: it takes this share of every GPU whatever the model."""


class Vllm(ModelServer):
    kind: Literal[WorkloadKind.VLLM] = WorkloadKind.VLLM

    def preset_args(self, node: "NodeSpec", name: str) -> List[str]:
        args = ["--model", self.model, "--served-model-name", self.model_name, "--host", listen_host(node),
                "--port", str(node.info(name).container_port)]
        fraction = self.gpu_share(node)
        if fraction is not None:
            args += ["--gpu-memory-utilization", f"{fraction:.2f}"]
        if node.gpu is not None and node.gpu.count > 1 and self.uses_gpu():
            args += ["--tensor-parallel-size", str(node.gpu.count)]
        return args

    def compose_service(self, node, name, service, secrets):
        # PyTorch shares tensors between its processes through shared memory. Placed after its command,
        # where compose files written before kept it.
        keys = list(service)
        at = keys.index("command") + 1 if "command" in keys else len(keys)
        items = list(service.items())
        return dict(items[:at] + [("ipc", "host")] + items[at:]), {}

    def default_vram(self, node: "NodeSpec") -> float:
        return GPU_FRACTION * node.gpu.vram_gb

    def gpu_share(self, node: "NodeSpec") -> Optional[float]:
        return share_of(node, self.vram_gb)
