"""ComfyUI: image generation, with checkpoints downloaded into its models/ directory."""
from __future__ import annotations

from typing import ClassVar, List, Literal

from pydantic import Field

from core.fields import Checkpoint
from core.kinds import WorkloadKind
from core.workloads.base import BaseWorkload


class ComfyUi(BaseWorkload):
    kind: Literal[WorkloadKind.COMFYUI] = WorkloadKind.COMFYUI
    checkpoints: List[Checkpoint] = Field(default_factory=list)
    """Files downloaded into models/ with their sha256 checked."""

    downloads_dir: ClassVar[str] = "ComfyUI/models"
    """ComfyUI's models/ directory inside its data mount (yanwk/comfyui-boot keeps ComfyUI under /root)."""

    def downloads(self) -> List[Checkpoint]:
        return list(self.checkpoints)

    def disk_gb(self) -> float:
        return super().disk_gb() + sum(c.size_gb for c in self.checkpoints)
