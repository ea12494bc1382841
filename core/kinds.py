"""The workload kinds the estate deploys, each described once.

One ``KindInfo`` record per kind holds what the spec, the renderers (compose, start scripts, health
checks) and the policy pack all read: the pinned image, the port on the host and inside the container,
where it keeps data, how its health is checked, whether it needs a GPU, whether it is a model server
that must never be published without auth, and how a container node starts it.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Dict, Optional, Tuple

from core.images import default_image, image_version


class WorkloadKind(str, enum.Enum):
    OLLAMA = "ollama"
    OPEN_WEBUI = "open-webui"
    COMFYUI = "comfyui"
    MLFLOW = "mlflow"
    PGVECTOR = "pgvector"
    LITELLM = "litellm"
    VLLM = "vllm"
    TGI = "tgi"
    LLAMA_CPP = "llama-cpp"
    CONTAINER = "container"
    """An image of the stack's own (an API, a dashboard, a proxy): image, command, ports and health from
    the stack."""

    @property
    def info(self) -> "KindInfo":
        return KINDS[self]

    @property
    def is_model_server(self) -> bool:
        """Services that must never be published without auth."""
        return self.info.model_server

    @property
    def needs_gpu(self) -> bool:
        return self.info.needs_gpu

    @property
    def named_after_kind(self) -> bool:
        """A node runs it at most once, under the kind's own name (``ollama``, ``open-webui``, ...); model
        servers started from a model and containers of the stack's own take any name."""
        return not self.info.any_name


@dataclasses.dataclass(frozen=True)
class KindInfo:
    image: Optional[str]
    """Pinned image the kind runs unless the stack names another (None: the stack must name it)."""
    port: int
    """Default port on the node (the stack's ``port`` overrides it)."""
    container_port: int
    """Port the image listens on inside its container."""
    data_path: str
    """Where the image keeps what must survive a container replacement (bind-mounted from the node)."""
    healthcheck: Optional[Tuple[str, ...]] = None
    """The compose healthcheck ``test``; None where the image offers no way to check."""
    health_path: Optional[str] = None
    """HTTP path answering 200 when the service is up."""
    needs_gpu: bool = False
    model_server: bool = False
    """Has no auth of its own: never published without auth in front."""
    start_command: Optional[str] = None
    """How a container node's start script starts the image (Vast.ai replaces the image's entrypoint)."""
    add_on: Optional[Tuple[str, str]] = None
    """(install, start) to run this kind inside another workload's container, for a container node
    (one image) with several workloads; None where it needs its own image (ComfyUI's CUDA and torch).
    ``{version}`` in the install command is the pinned version of the kind's own image."""
    openai: bool = False
    """Speaks the OpenAI API under ``/v1``: the gateway serves its model like an Ollama tag."""
    any_name: bool = False
    """Runs under any name, as many times as a node has room for (model servers started from a model,
    containers of the stack's own); the others run once per node, named after their kind."""

    @property
    def version(self) -> str:
        """The pinned version, from the image tag (``ghcr.io/open-webui/open-webui:v0.6.34`` -> 0.6.34)."""
        return image_version(self.image or "")  # the tag's, also when a digest follows it


def http_check(port: int, path: str) -> Tuple[str, ...]:
    url = f"http://127.0.0.1:{port}{path}"
    return ("CMD-SHELL", f"curl -fsS {url} >/dev/null || "
                         f"python3 -c \"import urllib.request;urllib.request.urlopen('{url}')\"")


KINDS: Dict[WorkloadKind, KindInfo] = {
    WorkloadKind.OLLAMA: KindInfo(
        image=default_image("ollama"), port=11434, container_port=11434, data_path="/root/.ollama",
        healthcheck=("CMD", "ollama", "list"),  # the image has no curl
        health_path="/api/version", needs_gpu=True, model_server=True, start_command="ollama serve",
        add_on=("command -v ollama >/dev/null || (curl -fsSL https://ollama.com/install.sh | OLLAMA_VERSION={version} sh)",
                "ollama serve")),
    WorkloadKind.OPEN_WEBUI: KindInfo(
        image=default_image("open-webui"), port=3000, container_port=8080,
        data_path="/app/backend/data", healthcheck=http_check(8080, "/health"), health_path="/health",
        add_on=("command -v open-webui >/dev/null || pip install --no-cache-dir open-webui=={version}",
                "DATA_DIR=/app/backend/data open-webui serve --host 0.0.0.0 --port 8080")),
    WorkloadKind.COMFYUI: KindInfo(
        image=default_image("comfyui"), port=8188, container_port=8188, data_path="/root",
        healthcheck=http_check(8188, "/system_stats"), health_path="/system_stats", needs_gpu=True,
        model_server=True, start_command="/runner-scripts/entrypoint.sh"),
    WorkloadKind.MLFLOW: KindInfo(
        image=default_image("mlflow"), port=5001, container_port=5000, data_path="/mlflow",
        healthcheck=http_check(5000, "/health"), health_path="/health", model_server=True,
        add_on=("command -v mlflow >/dev/null || pip install --no-cache-dir mlflow=={version}",
                "mlflow server --host 0.0.0.0 --port 5000 --backend-store-uri sqlite:////mlflow/mlflow.db")),
    WorkloadKind.PGVECTOR: KindInfo(
        image=default_image("pgvector"), port=5432, container_port=5432,
        data_path="/var/lib/postgresql/data",
        healthcheck=("CMD-SHELL", "pg_isready -U estate -d vectors"), model_server=True),
    WorkloadKind.LITELLM: KindInfo(
        image=default_image("litellm"), port=4000, container_port=4000,
        data_path="/app/config", healthcheck=http_check(4000, "/health/liveliness"),
        health_path="/health/liveliness"),
    # Model servers started from the model the stack names (their classes in ``core/workloads``).
    # vLLM's image runs ``vllm serve``, which takes the model and its options as arguments.
    WorkloadKind.VLLM: KindInfo(
        image=default_image("vllm"), port=8000, container_port=8000, data_path="/root/.cache/huggingface",
        healthcheck=http_check(8000, "/health"), health_path="/health", needs_gpu=True, model_server=True,
        start_command="vllm serve", openai=True, any_name=True),
    # TGI's launcher reads every option from its environment (MODEL_ID, PORT, ...), as does llama.cpp's
    # server (LLAMA_ARG_*): both start from env alone, on every kind of node.
    WorkloadKind.TGI: KindInfo(
        image=default_image("tgi"), port=8080, container_port=80, data_path="/data",
        healthcheck=http_check(80, "/health"), health_path="/health", needs_gpu=True, model_server=True,
        start_command="/tgi-entrypoint.sh", openai=True, any_name=True),
    WorkloadKind.LLAMA_CPP: KindInfo(
        image=default_image("llama-cpp"), port=8081, container_port=8080,
        data_path="/root/.cache/llama.cpp", healthcheck=("CMD", "curl", "-f", "http://127.0.0.1:8080/health"),
        health_path="/health", needs_gpu=True, model_server=True, start_command="/app/llama-server", openai=True, any_name=True),
    # The stack gives image, ports, health and GPU need; what it serves is unknown, so it is never
    # published without auth.
    WorkloadKind.CONTAINER: KindInfo(image=None, port=0, container_port=0, data_path="", model_server=True,
                                      any_name=True),
}



def model_server_ports() -> Tuple[int, ...]:
    """Every port a model server listens on by default, on the host or inside its container."""
    return tuple(sorted({p for k in WorkloadKind if k.is_model_server
                         for p in (k.info.port, k.info.container_port) if p}))
