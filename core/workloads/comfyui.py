"""ComfyUI: image generation, with checkpoints downloaded into its models/ directory."""
from __future__ import annotations

from typing import ClassVar, List, Literal

from pydantic import Field

from core.fields import HF_TOKEN, Checkpoint
from core.kinds import WorkloadKind
from core.workloads.base import BaseWorkload


class ComfyUi(BaseWorkload):
    kind: Literal[WorkloadKind.COMFYUI] = WorkloadKind.COMFYUI
    checkpoints: List[Checkpoint] = Field(default_factory=list)
    """Files downloaded into models/ with their sha256 checked, Hugging Face's with the workload's
    ``HF_TOKEN`` when its ``secret_env`` names one."""

    downloads_dir: ClassVar[str] = "ComfyUI/models"
    """ComfyUI's models/ directory inside its data mount (yanwk/comfyui-boot keeps ComfyUI under /root)."""

    def downloads(self) -> List[Checkpoint]:
        return list(self.checkpoints)

    @property
    def download_token(self) -> bool:
        """Whether its downloads from Hugging Face carry its ``HF_TOKEN``."""
        return HF_TOKEN in self.secret_env

    def disk_gb(self) -> float:
        return super().disk_gb() + sum(c.size_gb for c in self.checkpoints)

    def vram_hint(self) -> str:
        # ComfyUI loads what each workflow asks for: a checkpoint (or a diffusion model with its text
        # encoders and VAE) at a time, and nothing in the stack says which workflows run.
        files = sorted((c.size_gb for c in self.checkpoints), reverse=True)
        seen = f"; its files here are {sum(files):g} GB, the largest {files[0]:g} GB" if files else ""
        return ("give vram_gb, the GB its largest workflow holds (a checkpoint, or a diffusion model with its text "
                f"encoders and VAE){seen}")

    def problems(self, spec, node_name: str, name: str, path: str):
        out = []
        for i, c in enumerate(self.checkpoints):
            if c.gated and not c.on_hugging_face:
                out.append((f"{path}.checkpoints[{i}].gated", f"the token is sent to Hugging Face only, and {c.name} "
                                                              f"comes from elsewhere (got url {c.url!r})"))
            elif c.gated and not self.download_token:
                out.append((f"{path}.checkpoints[{i}].gated",
                            f"{c.name} is gated on Hugging Face: add {HF_TOKEN} to {path.partition(':')[2]}.secret_env "
                            f"and set it with `pulumi config set --secret gpu-estate:{HF_TOKEN} hf_...` (got "
                            f"secret_env {self.secret_env})"))
        return out
