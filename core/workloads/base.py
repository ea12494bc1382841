"""The base of every workload kind: the fields all kinds share and the behaviour each kind may change.

A kind is one class in this package (``ollama.py``, ``vllm.py``, ...) with a ``kind`` literal, the fields
that apply to it, and the hooks below where it differs from the base: what env and arguments its server
starts with, what its compose service adds, the VRAM, disk and RAM it takes, which models it serves to the
gateway and how the gateway reaches them, which secret files it needs on its node, and what it asks of its
node. The static facts of a kind (image, ports, data path, health check, GPU need) stay in one table,
``core/kinds.py``. Nothing outside this package branches on a kind: the renderers, rules, plan and
components ask the workload.
"""
from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, ClassVar, Dict, List, Optional, Tuple

from pydantic import Field, field_validator, model_validator

from core import catalog
from core.fields import Access, EnvName, EnvValue, ImageRef, StackModel
from core.kinds import KINDS, KindInfo, WorkloadKind
from core.workloads.node_files import SECRETS_DIR, NodeSecrets

if TYPE_CHECKING:
    from core.spec import EstateSpec, NodeSpec

Problem = Tuple[str, str]
"""(key path, message), as ``core.errors`` reports it."""

_CLASSES: Dict[str, type] = {}
"""kind value -> its class, filled as each kind's module defines it."""


def kind_classes() -> Dict[str, type]:
    return dict(_CLASSES)


def all_fields() -> Dict[str, List[str]]:
    """Every field some kind has -> the kinds that have it."""
    out: Dict[str, List[str]] = {}
    for kind, cls in _CLASSES.items():
        for field in cls.model_fields:
            out.setdefault(field, []).append(kind)
    return out


def listen_host(node: "NodeSpec") -> str:
    """Where a server listens inside its container: a container node reached over SSH is forwarded to
    inside its own container, so its servers listen on the container's loopback only (not on the host's
    bridge, where the host and other tenants' containers could reach them). In a compose project the
    container's port is published to the VM's loopback, so it listens on the container's network."""
    return "127.0.0.1" if node.provider.is_container and node.access is Access.SSH else "0.0.0.0"


class BaseWorkload(StackModel):
    """What every workload has. Subclasses set ``kind`` to a literal and add their own fields."""

    kind: WorkloadKind
    """The workload's kind; default the kind its name is, else ``container``."""
    image: Optional[ImageRef] = None
    """The image it runs (``name:tag``, optionally ``@sha256:...``); default its kind's, pinned in
    ``assets/images/compose.yaml``."""
    port: Optional[int] = Field(None, ge=1, le=65535)
    """Port on the node (loopback unless ``access: direct``); default the kind's."""
    env: Dict[EnvName, EnvValue] = Field(default_factory=dict)
    """Env vars its container starts with, over its kind's own; values are passed as written (no secrets:
    see ``secret_env``)."""
    secret_env: List[str] = Field(default_factory=list)
    """Env vars whose values are the config secrets ``gpu-estate:<NAME>`` (``pulumi config set --secret``),
    as HF_TOKEN for gated downloads: they reach the node encrypted, in a 0600 file, never as plain
    resource inputs."""
    vram_gb: Optional[float] = Field(None, ge=0)
    """GB of VRAM it holds while busy: required for a workload given the GPU whose kind has no rule of
    its own (ComfyUI, a container with ``gpu: true``), and a model server's share of the GPU."""
    gpu: Optional[bool] = None
    """Whether the container is given the node's GPUs (compose's device reservation); default: the kind's
    need (Ollama, ComfyUI). ``false`` runs a model server on the CPU, e.g. a small embedding model beside
    a GPU job, or a node whose Docker has no NVIDIA runtime."""

    on_gateway_host: ClassVar[bool] = False
    """The gateway host runs it itself (LiteLLM): not a service of the node's compose project."""
    speaks_ollama_api: ClassVar[bool] = False
    """Answers Ollama's API (what Open WebUI and the idle watcher talk to)."""
    generated_password: ClassVar[bool] = False
    """Needs a password the program generates (a Pulumi secret) delivered to its node."""
    vram_field: ClassVar[Optional[str]] = None
    """The field a node's VRAM problem points at when this workload alone needs the VRAM."""
    vram_advice: ClassVar[str] = "give it a smaller vram_gb"
    """What a node's VRAM problem suggests for this workload."""
    belongs_elsewhere: ClassVar[Dict[str, str]] = {}
    """Fields every workload has that this kind would ignore -> where the value belongs. Given, they are
    refused at preview saying so; the key reference leaves them out of the kind's keys."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        literal = cls.model_fields["kind"].default
        if isinstance(literal, WorkloadKind):
            _CLASSES[literal.value] = cls

    @model_validator(mode="before")
    @classmethod
    def _fields_of_its_kind(cls, data: Any) -> Any:
        """A field of another kind is named as such, rather than as an unknown key."""
        if isinstance(data, dict):
            kind = data.get("kind", "")
            fields = all_fields()
            for field in sorted(data):
                if field not in cls.model_fields and field in fields:
                    raise ValueError(f"{field} does not apply to {kind} (got {field}: {data[field]!r})")
        return data

    @field_validator("secret_env")
    @classmethod
    def _env_names(cls, v: List[str]) -> List[str]:
        for name in v:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                raise ValueError(f"env var names are upper case letters, digits and '_' (got {name!r})")
        return v

    # -- what it is ------------------------------------------------------------------------------------------

    def facts(self) -> KindInfo:
        """Its kind's static facts (a container of the stack's own gives its own)."""
        return KINDS[self.kind]

    @property
    def model_name(self) -> Optional[str]:
        """The model name it answers to over the OpenAI API (None: not an OpenAI model server)."""
        return None

    @property
    def speaks_openai(self) -> bool:
        return self.model_name is not None

    def served_models(self) -> List[str]:
        """The model names the gateway may send it."""
        return [self.model_name] if self.model_name else []

    def pulled_models(self) -> List[str]:
        """Models the estate pulls into it through its API once its node is up (an Ollama's tags)."""
        return []

    def own_models(self) -> Dict[str, Any]:
        """Tag -> ``core.own_models.GgufModel``: models made on the node from a GGUF of the operator's."""
        return {}

    def cache_of(self, model: str) -> Optional[str]:
        """Where a pulled ``model`` is kept for a new machine of its node (``providers.model_cache``), or None."""
        return None

    def insecure_pull(self, model: str) -> bool:
        """Whether ``model`` is pulled over plain HTTP (from a registry on the node's loopback)."""
        return False

    def gateway_params(self, model: str, url: str) -> Dict[str, object]:
        """LiteLLM's parameters for sending ``model`` to this workload at ``url``. Servers speaking the
        OpenAI API under /v1 sit behind SSH forwards and check no key; the client LiteLLM uses still
        sends one."""
        return {"model": f"openai/{model}", "api_base": f"{url}/v1", "api_key": "none"}

    def serves_images(self, model: str) -> bool:
        """Whether ``model`` is an image model (OpenAI's images API) rather than a chat model."""
        return self.image_seconds(model) is not None

    def image_seconds(self, model: str) -> Optional[float]:
        """Seconds one image of ``model`` takes on its node's GPU (None: not an image model)."""
        return None

    def serving_port(self, port: int) -> int:
        """The port the gateway reaches its served models at, given the workload's own ``port``."""
        return port

    def gateway_prices(self, model: str, hourly_usd: float) -> Dict[str, object]:
        """LiteLLM's cost keys for ``model`` on a node costing ``hourly_usd``: a chat model costs the node's
        time while it answers."""
        return {"input_cost_per_second": hourly_usd / 3600, "output_cost_per_second": 0}

    def gateway_headers(self, timeout: float) -> Dict[str, str]:
        """Headers LiteLLM sends it with each request, given the alias's timeout."""
        return {}

    def gateway_id(self, node: str, name: str) -> str:
        """Where the gateway's entry for it says it runs."""
        return f"{node}/{name}"

    @property
    def max_resident(self) -> Optional[int]:
        """How many of its pulled models it keeps in VRAM at once (None: all of them)."""
        return None

    def buckets_used(self) -> List[str]:
        """Storage buckets (from ``storage``) its node needs credentials for."""
        return []

    def downloads(self) -> list:
        """Files downloaded onto its node with their sha256 checked (``core.fields.Checkpoint``)."""
        return []

    downloads_dir: ClassVar[str] = ""
    """Where ``downloads`` go, under its data directory."""

    @property
    def download_token(self) -> bool:
        """Whether its downloads from Hugging Face carry its ``HF_TOKEN`` (its secret env file)."""
        return False

    def probe(self, routed: List[str]) -> Dict[str, object]:
        """How the health agent (``agents/health.py``) checks it, as data: a probe ``type`` and what it asks,
        run against the address the gateway reaches it at. ``routed`` are its models the gateway's aliases
        name. The default: its kind's health route answering 2xx, else a TCP connection."""
        path = self.facts().health_path
        return {"type": "http", "path": path} if path else {"type": "tcp"}

    # -- how it starts -----------------------------------------------------------------------------------------

    def own_env(self, node: "NodeSpec", name: str) -> Dict[str, str]:
        """The env its kind sets; the stack's ``env`` is added over it (``service_env``)."""
        return {}

    def service_env(self, node: "NodeSpec", name: str) -> Dict[str, str]:
        return {**self.own_env(node, name), **self.env}

    def command(self, node: "NodeSpec", name: str) -> List[str]:
        """The arguments its image's entrypoint is given (compose's ``command``, RunPod's ``dockerArgs``)."""
        return []

    def entrypoint_words(self) -> List[str]:
        """What replaces its image's entrypoint (a container of the stack's own may say)."""
        return []

    def compose_service(self, node: "NodeSpec", name: str, service: Dict[str, object],
                        secrets: Optional[NodeSecrets]) -> Tuple[Dict[str, object], Dict[str, object]]:
        """Its compose service with what its kind adds, and the compose top-level ``secrets`` it mounts."""
        return service, {}

    def data_files(self, node: "NodeSpec", name: str) -> Dict[str, str]:
        """Files of the estate's own its kind runs beside its server, by path under its data directory
        (plain data, never secret): written there before it starts."""
        return {}

    def side_command(self, node: "NodeSpec", name: str) -> Optional[str]:
        """A process its kind runs beside its server in the same container (shell words, each quoted)."""
        return None

    def secret_files(self, node: "NodeSpec", name: str, secrets: NodeSecrets) -> List[Tuple[str, str]]:
        """(path, content) of the secret files its kind needs on the node, besides its ``secret_env``."""
        return []

    def bucket_files(self, node: "NodeSpec", name: str, secrets: NodeSecrets) -> List[Tuple[str, str]]:
        """(path, content) of the files it makes from its node's bucket credentials (written after them)."""
        return []

    # -- what it takes -----------------------------------------------------------------------------------------

    def uses_gpu(self) -> bool:
        return self.facts().needs_gpu if self.gpu is None else self.gpu

    def vram(self, node: "NodeSpec") -> float:
        """VRAM it holds while active: what the stack gives (``vram_gb``), else its kind's rule. A workload
        run on the CPU holds none. ``vram_gb: 0`` is no figure, as it always was: the kind's rule applies."""
        if node.gpu is None or not self.uses_gpu():
            return 0.0
        if self.vram_gb:
            return float(self.vram_gb)
        return self.default_vram(node) or 0.0

    def default_vram(self, node: "NodeSpec") -> Optional[float]:
        """The VRAM its kind takes when the stack gives no ``vram_gb`` (None: its kind cannot know, and
        the stack must say)."""
        return None

    def model_vram_gb(self, model: str) -> float:
        """VRAM one of its pulled models takes while loaded (what the policy pack adds up per node)."""
        return 0.0

    def gpu_share(self, node: "NodeSpec") -> Optional[float]:
        """The share of each GPU its server is told to take (None: the server's own default)."""
        return None

    def disk_gb(self) -> float:
        return catalog.workload_disk_gb(self.kind.value)

    def ram_gb(self) -> float:
        return catalog.workload_ram_gb(self.kind.value)

    # -- what it needs from its node -----------------------------------------------------------------------

    def problems(self, spec: "EstateSpec", node_name: str, name: str, path: str) -> List[Problem]:
        """What its node (or the rest of the stack) cannot give it, as (key path, message)."""
        return []

    def ignored_values(self, spec: "EstateSpec", node_name: str, path: str) -> List[Problem]:
        """The values the stack gives it that nothing would read, and the VRAM figure it lacks, as (key path,
        message): a value the program would ignore is refused saying where it belongs."""
        node = spec.nodes[node_name]
        out = [(f"{path}.{field}", f"{self.kind.value} does not read {field}: {where} (got {field}: "
                                   f"{getattr(self, field)!r})")
               for field, where in self.belongs_elsewhere.items() if field in self.model_fields_set]
        on_gpu = node.gpu is not None and self.uses_gpu()
        if self.vram_gb is not None and "vram_gb" not in self.belongs_elsewhere and not on_gpu:
            why = "its node has no GPU" if node.gpu is None else f"it runs without the GPU (gpu: {self.uses_gpu()})"
            out.append((f"{path}.vram_gb", f"vram_gb counts only for a workload given the GPU, and {why}: drop it"
                                           + ("" if node.gpu is None else " or set gpu: true")
                                           + f" (got vram_gb: {self.vram_gb!r})"))
        if on_gpu and self.vram_gb is None and self.default_vram(node) is None:
            out.append((f"{path}.vram_gb", f"{self.kind.value} is given the GPU but the estate cannot know how much "
                                           f"VRAM it takes: {self.vram_hint()} (got none)"))
        return out

    def vram_hint(self) -> str:
        """How to choose ``vram_gb`` where the stack must give it."""
        return "give vram_gb, the GB it holds while busy, or gpu: false to run it on the CPU"


def vm_only(workload: BaseWorkload, node: "NodeSpec", path: str) -> List[Problem]:
    """The problem of a workload that keeps secrets in files on a VM-like node, on a container node."""
    if not node.provider.is_container:
        return []
    vendor = node.provider.value
    return [(path, f"{workload.kind.value} keeps secrets in files on a VM-like node; {vendor} nodes are one container "
                   f"(got provider {vendor!r})")]


def image_usd(hourly_usd: float, seconds_per_image: float) -> float:
    """What one image costs: the node's time making it, at its $/h."""
    return round(hourly_usd * seconds_per_image / 3600, 6)


def share_of(node: "NodeSpec", vram_gb: Optional[float]) -> Optional[float]:
    """``vram_gb`` as the share of each of the node's GPUs a server is told to take, rounded down."""
    if node.gpu is None or not vram_gb:
        return None
    return math.floor(vram_gb / node.gpu.vram_gb * 100) / 100


def secret_path(name: str) -> str:
    return f"{SECRETS_DIR}/{name}"
