"""ComfyUI: image generation, with checkpoints downloaded into its models/ directory, and OpenAI's images
API in front of it: the estate's images bridge (``assets/comfyui/images_bridge.py``) runs beside it and
answers for each of its ``workflows``, which the gateway's image aliases name."""
from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING, ClassVar, Dict, List, Literal, Optional

from pydantic import Field, field_validator

from core.catalog import ASSETS
from core.fields import HF_TOKEN, Checkpoint, StackModel
from core.kinds import WorkloadKind
from core.templates import asset
from core.workloads.base import BaseWorkload, image_usd, listen_host

if TYPE_CHECKING:
    from core.spec import NodeSpec

WORKFLOWS_DIR = ASSETS / "comfyui" / "workflows"
BRIDGE_DIR = "estate-images"
"""The bridge's directory in ComfyUI's data directory: its script, workflows and config."""


RESPAWN_MAX_SECONDS = 60


def respawned(command: str, what: str) -> str:
    """Shell that runs ``command`` (fixed words of the estate's, already quoted) again whenever it exits: after
    1 s, then twice as long each time up to a minute, and after 1 s again once a run lasted a minute. Each
    exit is said on stderr with its status, naming ``what``."""
    cap = RESPAWN_MAX_SECONDS
    return (f"d=1; while :; do s=$(date +%s); {command}; c=$?; "
            f"if [ $(($(date +%s) - s)) -ge {cap} ]; then d=1; fi; "
            f'echo "gpu-estate: {what} exited ($c); starting it again in ${{d}}s" >&2; '
            f"sleep $d; if [ $d -lt {cap} ]; then d=$((d * 2)); fi; done")


def workflow_templates() -> List[str]:
    """The workflow templates the estate has (``assets/comfyui/workflows/<name>.json``)."""
    return sorted(p.stem for p in WORKFLOWS_DIR.glob("*.json"))


def workflow_vram_gb(name: str) -> float:
    """The GB of weights a workflow's model files hold on the GPU once loaded (its template's ``vram_gb``)."""
    return float(json.loads((WORKFLOWS_DIR / f"{name}.json").read_text(encoding="utf-8"))["vram_gb"])


class Workflow(StackModel):
    """One of ComfyUI's workflows served as an OpenAI image model, named after its template."""

    seconds_per_image: Optional[float] = Field(None, gt=0, le=3600)
    """How long one image takes on this node's GPU (required): what an image costs, the node's $/h x
    seconds / 3600, in the estimate and LiteLLM's spend."""
    steps: Optional[int] = Field(None, ge=1, le=200)
    """Sampling steps; default the template's (FLUX.1-dev 20, SD 3.5 Large 28, SDXL-Lightning 4)."""


class ComfyUi(BaseWorkload):
    kind: Literal[WorkloadKind.COMFYUI] = WorkloadKind.COMFYUI
    checkpoints: List[Checkpoint] = Field(default_factory=list)
    """Files downloaded into models/ with their sha256 checked, Hugging Face's with the workload's
    ``HF_TOKEN`` when its ``secret_env`` names one: each a resource of its own, added, changed and deleted
    over SSH without touching the machine (``providers/model_files.py``)."""
    workflows: Dict[str, Workflow] = Field(default_factory=dict)
    """Workflow template name (``flux.1-dev``, ``sd3.5-large``, ``sdxl-lightning``) -> its figures: each is an
    image model gateway aliases may name, answered by the images bridge beside ComfyUI."""
    images_port: int = Field(8189, ge=1, le=65535)
    """Where the images bridge listens on the node (loopback unless ``access: direct``)."""
    keep_outputs_seconds: int = Field(0, ge=0, le=86400)
    """How long an image stays in ComfyUI's output and history after it is answered (0: deleted at once)."""

    @field_validator("workflows")
    @classmethod
    def _known_templates(cls, v: Dict[str, Workflow]) -> Dict[str, Workflow]:
        known = workflow_templates()
        for name in v:
            if name not in known:
                raise ValueError(f"no workflow template {name!r}: the estate has {', '.join(known)} "
                                 f"(assets/comfyui/workflows) (got workflows.{name})")
        return v

    downloads_dir: ClassVar[str] = "ComfyUI/models"
    """ComfyUI's models/ directory inside its data mount (yanwk/comfyui-boot keeps ComfyUI under /root)."""

    # -- the images API ----------------------------------------------------------------------------------

    def served_models(self) -> List[str]:
        return list(self.workflows)

    def image_seconds(self, model: str) -> Optional[float]:
        return (self.workflows[model].seconds_per_image or 0.0) if model in self.workflows else None

    def serving_port(self, port: int) -> int:
        return self.images_port if self.workflows else port

    def gateway_prices(self, model: str, hourly_usd: float) -> Dict[str, object]:
        """An image costs the node's time making it; LiteLLM counts ``output_cost_per_image`` x n
        (``cost_calculator.default_image_cost_calculator``)."""
        return {"output_cost_per_image": self.image_usd(model, hourly_usd)}

    def image_usd(self, model: str, hourly_usd: float) -> float:
        return image_usd(hourly_usd, self.image_seconds(model) or 0.0)

    def gateway_headers(self, timeout: float) -> Dict[str, str]:
        # The bridge stops waiting for ComfyUI (and takes the prompt off its queue) when LiteLLM gives up.
        return {"X-Estate-Timeout": f"{timeout:g}"}

    def bridge_config(self, node: "NodeSpec", name: str) -> str:
        """The bridge's ``config.json``: where ComfyUI is, its output directory, and each workflow."""
        doc = {"comfyui": f"http://127.0.0.1:{self.facts().container_port}",
               "output_dir": f"{self.facts().data_path}/ComfyUI/output",
               "keep_outputs_seconds": self.keep_outputs_seconds,
               "workflows": {n: {"template": n, **({"steps": w.steps} if w.steps else {})}
                             for n, w in sorted(self.workflows.items())}}
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"

    def data_files(self, node: "NodeSpec", name: str) -> Dict[str, str]:
        """The bridge, the templates of its workflows and its config, under ``estate-images/``."""
        if not self.workflows:
            return {}
        files = {f"{BRIDGE_DIR}/images_bridge.py": asset("comfyui/images_bridge.py"),
                 f"{BRIDGE_DIR}/config.json": self.bridge_config(node, name)}
        files.update({f"{BRIDGE_DIR}/workflows/{w}.json": asset(f"comfyui/workflows/{w}.json")
                      for w in sorted(self.workflows)})
        return files

    def side_command(self, node: "NodeSpec", name: str) -> Optional[str]:
        """The bridge, on the Python of ComfyUI's image (it needs nothing else)."""
        if not self.workflows:
            return None
        where = f"{self.facts().data_path}/{BRIDGE_DIR}"
        return " ".join(shlex.quote(w) for w in (
            "python3", f"{where}/images_bridge.py", "--config", f"{where}/config.json",
            "--host", listen_host(node), "--port", str(self.images_port)))

    def compose_service(self, node, name, service, secrets):
        """With workflows, the container also publishes the bridge's port and starts it before ComfyUI's
        own entrypoint (the image's, run as it would be), started again whenever it exits (with a backoff):
        ComfyUI is the container's main process, so nothing else would notice a dead bridge."""
        side = self.side_command(node, name)
        if side is None:
            return service, {}
        bind = str(service["ports"][0]).rsplit(":", 2)[0]
        start = self.facts().start_command
        return {**service, "ports": [*service["ports"], f"{bind}:{self.images_port}:{self.images_port}"],
                "entrypoint": ["sh", "-c", f"({respawned(side, 'the images bridge')}) & exec {start}"]}, {}

    def downloads(self) -> List[Checkpoint]:
        return list(self.checkpoints)

    @property
    def download_token(self) -> bool:
        """Whether its downloads from Hugging Face carry its ``HF_TOKEN``."""
        return HF_TOKEN in self.secret_env

    def disk_gb(self) -> float:
        return super().disk_gb() + sum(c.size_gb for c in self.checkpoints)

    def default_vram(self, node: "NodeSpec") -> Optional[float]:
        """With workflows, what the largest of them holds (its template's ``vram_gb``)."""
        return max((workflow_vram_gb(w) for w in self.workflows), default=None)

    def vram_hint(self) -> str:
        # ComfyUI loads what each workflow asks for: a checkpoint (or a diffusion model with its text
        # encoders and VAE) at a time, and nothing in the stack says which workflows run.
        files = sorted((c.size_gb for c in self.checkpoints), reverse=True)
        seen = f"; its files here are {sum(files):g} GB, the largest {files[0]:g} GB" if files else ""
        return ("give vram_gb, the GB its largest workflow holds (a checkpoint, or a diffusion model with its text "
                f"encoders and VAE){seen}")

    def problems(self, spec, node_name: str, name: str, path: str):
        out = [(f"{path}.workflows.{w}.seconds_per_image",
                f"give the seconds one {w} image takes on {node_name}'s GPU: an image costs the node's $/h x "
                f"seconds / 3600, in the estimate and the gateway's spend (got none)")
               for w, flow in self.workflows.items() if flow.seconds_per_image is None]
        node = spec.nodes[node_name]
        if self.vram_gb and node.gpu is not None and self.uses_gpu():
            out += [(f"{path}.vram_gb", f"the {w} workflow's model files hold about {workflow_vram_gb(w):g} GB on the "
                                        f"GPU (assets/comfyui/workflows/{w}.json): give vram_gb at least that, or drop "
                                        f"the workflow (got vram_gb: {self.vram_gb:g})")
                    for w in self.workflows if workflow_vram_gb(w) > self.vram_gb]
        first: Dict[tuple, int] = {}
        for i, c in enumerate(self.checkpoints):
            j = first.setdefault((c.kind, c.name), i)
            if j != i:
                out.append((f"{path}.checkpoints[{i}].name", f"{c.kind}/{c.name} is checkpoints[{j}] already: one file "
                                                             f"of a name per models/ subfolder (got {c.name!r} twice)"))
            if c.gated and not c.on_hugging_face:
                out.append((f"{path}.checkpoints[{i}].gated", f"the token is sent to Hugging Face only, and {c.name} "
                                                              f"comes from elsewhere (got url {c.url!r})"))
            elif c.gated and not self.download_token:
                out.append((f"{path}.checkpoints[{i}].gated",
                            f"{c.name} is gated on Hugging Face: add {HF_TOKEN} to {path.partition(':')[2]}.secret_env "
                            f"and set it with `pulumi config set --secret gpu-estate:{HF_TOKEN} hf_...` (got "
                            f"secret_env {self.secret_env})"))
        return out
