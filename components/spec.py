"""The estate specification: every stack's configuration, parsed once into typed models and checked.

All keys live in the ``gpu-estate`` config namespace (declared with types in Pulumi.yaml). ``load_spec``
reads them, builds frozen pydantic models and then runs the cross-checks a single field cannot express
(a route to a service no node runs, models that do not fit a node's VRAM or disk, a fallback to an
unknown alias, a budget below the estate's own estimate). Every failure is a ``ConfigError`` whose lines
name the full key path and the bad value, and all of it happens before any resource is registered.
"""
from __future__ import annotations

import enum
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from components import catalog

NAMESPACE = "gpu-estate"
TOP_LEVEL_KEYS = ("nodes", "gateway", "tunnels", "routes", "edge", "storage", "budget")

# Fraction of a GPU's VRAM the resident models may use: the seeds keep ~15% for KV cache and CUDA
# context (seed 000 A201: 20 GB allocated of 24 GB).
VRAM_USABLE_FRACTION = 0.90
# Disk kept free for the OS, images and logs on top of what workloads and models need.
DISK_OS_RESERVE_GB = 20.0
HOURS_IN_MONTH = 730.0


class ConfigError(ValueError):
    """Bad stack configuration. ``problems`` holds ``(key path, message)`` pairs."""

    def __init__(self, problems: List[Tuple[str, str]]):
        self.problems = problems
        super().__init__(
            "invalid stack configuration:\n" + "\n".join(f"  {path}: {msg}" for path, msg in problems)
        )


class Provider(str, enum.Enum):
    TENSORDOCK = "tensordock"
    VASTAI = "vastai"
    RUNPOD = "runpod"
    AWS = "aws"
    GCP = "gcp"
    HOST = "host"

    @property
    def is_marketplace(self) -> bool:
        """Rented through a dynamic provider of ours (as opposed to a pulumi-aws/gcp VM or an owned host)."""
        return self in (Provider.TENSORDOCK, Provider.VASTAI, Provider.RUNPOD)

    @property
    def is_container(self) -> bool:
        """The node is itself one container: its image, env and ports are the workload's."""
        return self in (Provider.VASTAI, Provider.RUNPOD)


class Market(str, enum.Enum):
    ON_DEMAND = "on-demand"
    SPOT = "spot"


class PowerState(str, enum.Enum):
    RUNNING = "running"
    STOPPED = "stopped"


class Access(str, enum.Enum):
    SSH = "ssh"
    """Services listen on the node's loopback and nothing but SSH is open: the gateway's autossh units
    and the model library reach them through SSH port forwards."""
    DIRECT = "direct"
    """Services are published on the provider's mapped ports: only for private networks and the sandbox,
    since Ollama and ComfyUI have no auth of their own."""


class WorkloadKind(str, enum.Enum):
    OLLAMA = "ollama"
    OPEN_WEBUI = "open-webui"
    COMFYUI = "comfyui"
    MLFLOW = "mlflow"
    PGVECTOR = "pgvector"
    LITELLM = "litellm"

    @property
    def is_model_server(self) -> bool:
        """Services that must never be published without auth."""
        return self in (WorkloadKind.OLLAMA, WorkloadKind.COMFYUI, WorkloadKind.MLFLOW, WorkloadKind.PGVECTOR)


DEFAULT_IMAGES = {
    WorkloadKind.OLLAMA: "ollama/ollama:0.12.6",
    WorkloadKind.OPEN_WEBUI: "ghcr.io/open-webui/open-webui:v0.6.34",
    WorkloadKind.COMFYUI: "yanwk/comfyui-boot:cu124-slim",
    WorkloadKind.MLFLOW: "ghcr.io/mlflow/mlflow:v3.5.1",
    WorkloadKind.PGVECTOR: "pgvector/pgvector:0.8.1-pg17",
    WorkloadKind.LITELLM: "ghcr.io/berriai/litellm:main-v1.79.0-stable",
}
DEFAULT_PORTS = {
    WorkloadKind.OLLAMA: 11434,
    WorkloadKind.OPEN_WEBUI: 3000,
    WorkloadKind.COMFYUI: 8188,
    WorkloadKind.MLFLOW: 5001,
    WorkloadKind.PGVECTOR: 5432,
    WorkloadKind.LITELLM: 4000,
}
NEEDS_GPU = {WorkloadKind.OLLAMA, WorkloadKind.COMFYUI}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class GpuSpec(_Model):
    model: str
    """GPU model in any common spelling (``rtx4090``, ``RTX 4090``, ``RTX_4090``); stored canonical."""
    count: int = Field(1, ge=1, le=8)

    @field_validator("model")
    @classmethod
    def _known_gpu(cls, v: str) -> str:
        canon = catalog.canonical_gpu(v)
        if canon is None:
            raise ValueError(f"unknown GPU {v!r}; known: {', '.join(sorted(catalog.gpus()))}")
        return canon

    @property
    def vram_gb(self) -> int:
        return catalog.gpu_vram_gb(self.model) * self.count


class SshSpec(_Model):
    user: str = "root"
    port: int = Field(22, ge=1, le=65535)
    public_key: Optional[str] = None
    """OpenSSH public key put on the node; the matching private key stays with the operator."""
    private_key_env: str = "ESTATE_SSH_PRIVATE_KEY"
    """Environment variable (or config secret ``sshPrivateKey``) holding the private key for remote commands."""

    @field_validator("public_key")
    @classmethod
    def _openssh_key(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not re.match(r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+", v):
            raise ValueError(f"not an OpenSSH public key: {v[:30]!r}")
        return v


class Checkpoint(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+\.(safetensors|ckpt|gguf)$")
    url: str = Field(pattern=r"^https?://")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_gb: float = Field(gt=0)
    kind: str = "checkpoints"
    """Subfolder of ComfyUI's models/ directory: checkpoints, vae, loras, unet, clip."""


class WorkloadSpec(_Model):
    image: Optional[str] = None
    port: Optional[int] = Field(None, ge=1, le=65535)
    env: Dict[str, str] = Field(default_factory=dict)
    models: List[str] = Field(default_factory=list)
    """Ollama only: tags to pull and keep."""
    max_loaded: Optional[int] = Field(None, ge=1)
    """Ollama only: models resident in VRAM at once (OLLAMA_MAX_LOADED_MODELS); default all of them."""
    checkpoints: List[Checkpoint] = Field(default_factory=list)
    """ComfyUI only: files downloaded into models/ with their sha256 checked."""
    vram_gb: Optional[float] = Field(None, ge=0)
    """VRAM the workload holds while active, for workloads whose use the model table cannot give."""
    artifact_bucket: Optional[str] = None
    """MLflow only: name of a storage bucket (from ``storage``) holding the artifact root."""
    secret_env: List[str] = Field(default_factory=list)
    """Env vars whose values are the config secrets ``gpu-estate:<NAME>`` (``pulumi config set --secret``),
    e.g. HF_TOKEN for gated downloads. They reach the node encrypted, never as plain resource inputs."""

    @field_validator("secret_env")
    @classmethod
    def _env_names(cls, v: List[str]) -> List[str]:
        for name in v:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                raise ValueError(f"env var names are upper case letters, digits and '_' (got {name!r})")
        return v


class NodeSpec(_Model):
    provider: Provider
    failover: List[Provider] = Field(default_factory=list)
    """Other marketplace providers tried in order when the first has no capacity."""
    gpu: Optional[GpuSpec] = None
    regions: List[str] = Field(default_factory=list)
    """Locations tried in order: TensorDock city/country, Vast geolocation code, RunPod data center,
    AWS/GCP region. Empty means anywhere."""
    vcpu: int = Field(4, ge=1, le=256)
    ram_gb: int = Field(16, ge=1, le=2048)
    disk_gb: int = Field(100, ge=10, le=16384)
    market: Market = Market.ON_DEMAND
    bid_per_hour: Optional[float] = Field(None, gt=0)
    """Spot only: the $/h bid (Vast) or $/GPU-h bid (RunPod); default the lowest accepted bid."""
    max_price_per_hour: Optional[float] = Field(None, gt=0)
    min_reliability: Optional[float] = Field(None, ge=0, le=1)
    hours_per_month: float = Field(HOURS_IN_MONTH, ge=0, le=744)
    """Expected running hours in a month; the monthly estimate is this times the hourly price."""
    power: PowerState = PowerState.RUNNING
    idle_shutdown_minutes: Optional[int] = Field(None, ge=5, le=1440)
    instance_type: Optional[str] = None
    """AWS/GCP only: pin an instance type from assets/prices; otherwise the cheapest that fits."""
    address: Optional[str] = None
    """host only: address of the machine you own."""
    image: str = "ubuntu2404"
    """VM image (TensorDock image id, AWS/GCP image family) for VM-like nodes."""
    ssh: SshSpec = Field(default_factory=SshSpec)
    access: Access = Access.SSH
    workloads: Dict[WorkloadKind, WorkloadSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shape(self) -> "NodeSpec":
        if self.provider is not Provider.HOST and self.gpu is None:
            raise ValueError(f"provider {self.provider.value!r} rents GPU nodes: set gpu.model")
        if self.provider is Provider.HOST and not self.address:
            raise ValueError("provider 'host' needs address (the machine's IP or DNS name)")
        if self.market is Market.SPOT and self.provider in (Provider.TENSORDOCK, Provider.HOST):
            raise ValueError(f"market 'spot' is not offered by {self.provider.value!r}")
        if self.bid_per_hour is not None and self.market is not Market.SPOT:
            raise ValueError("bid_per_hour is only meaningful with market 'spot'")
        for other in self.failover:
            if not other.is_marketplace or other is self.provider:
                raise ValueError(f"failover to {other.value!r}: only another of tensordock/vastai/runpod")
        if self.instance_type and self.provider not in (Provider.AWS, Provider.GCP):
            raise ValueError("instance_type applies to aws and gcp nodes only")
        return self

    @property
    def is_pay_per_use(self) -> bool:
        return self.provider is not Provider.HOST

    def port(self, kind: WorkloadKind) -> int:
        w = self.workloads[kind]
        return w.port or DEFAULT_PORTS[kind]

    def image_for(self, kind: WorkloadKind) -> str:
        return self.workloads[kind].image or DEFAULT_IMAGES[kind]


class ExternalProvider(_Model):
    """An external API the gateway may fall back to (OpenAI, Anthropic, OpenRouter...)."""

    models: Dict[str, str]
    """Gateway name -> LiteLLM model string, e.g. ``openai-gpt-4o: openai/gpt-4o``."""
    api_key_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    """Environment variable holding the key on the gateway host; the value comes from a config secret."""
    api_base: Optional[str] = None


class GatewaySpec(_Model):
    node: str
    """Node (from ``nodes``) that runs the LiteLLM proxy."""
    aliases: Dict[str, str] = Field(default_factory=dict)
    """Client-facing name -> Ollama tag served by the estate, e.g. ``gpt-4: qwen3:32b``."""
    external: Dict[str, ExternalProvider] = Field(default_factory=dict)
    fallbacks: Dict[str, List[str]] = Field(default_factory=dict)
    """Alias -> names (aliases or external models) tried in order when it fails."""
    timeouts: Dict[str, float] = Field(default_factory=dict)
    """Alias -> request timeout in seconds; ``default`` applies to the rest."""
    routing_strategy: str = Field(
        "simple-shuffle",
        pattern=r"^(simple-shuffle|least-busy|usage-based-routing|usage-based-routing-v2|"
        r"latency-based-routing|cost-based-routing)$",
    )
    num_retries: int = Field(2, ge=0, le=10)
    port: int = Field(4000, ge=0, le=65535)
    """Where LiteLLM listens on the gateway host's loopback; 0 (local deploy only) takes a free port."""
    deploy: str = Field("ssh", pattern=r"^(ssh|local)$")
    """``ssh``: units on the gateway node over SSH. ``local``: a LiteLLM process on the machine running
    `pulumi up` (a workstation, the sandbox), reaching nodes directly; the node must be an owned host at
    127.0.0.1."""


class TunnelSpec(_Model):
    node: str
    """Remote node the gateway host reaches through autossh."""
    ports: List[int] = Field(default_factory=list)
    """Remote ports to forward; default the ports of the node's workloads the gateway needs."""


class AuthMode(str, enum.Enum):
    ACCESS = "access"
    """Cloudflare Access application in front of the hostname."""
    BASIC = "basic"
    """HTTP basic auth in the reverse proxy."""
    NONE = "none"


class RouteSpec(_Model):
    service: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*/[a-z-]+$")
    """``<node>/<workload>``, e.g. ``inference/open-webui``."""
    auth: AuthMode = AuthMode.ACCESS
    path: str = "/"


class EdgeMode(str, enum.Enum):
    CLOUDFLARE_TUNNEL = "cloudflare-tunnel"
    CADDY = "caddy"


class EdgeSpec(_Model):
    mode: EdgeMode = EdgeMode.CLOUDFLARE_TUNNEL
    zone_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    account_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    domain: str
    allowed_emails: List[str] = Field(default_factory=list)
    proxy_node: Optional[str] = None
    """caddy mode: the node running Caddy (default the gateway node)."""


class BucketSpec(_Model):
    provider: str = Field(pattern=r"^(gcs|s3)$")
    location: str
    versioning: bool = True
    noncurrent_days: int = Field(30, ge=1)
    """Old object versions are deleted after this many days."""
    readers: List[str] = Field(default_factory=list)
    """Nodes given read/write credentials scoped to this bucket."""
    monthly_usd: float = Field(0.0, ge=0)
    """Expected storage bill, counted in the monthly estimate."""


class BudgetSpec(_Model):
    monthly_usd: float = Field(gt=0)
    daily_usd: Optional[float] = Field(None, gt=0)
    max_hourly_per_node: Optional[float] = Field(None, gt=0)


class EstateSpec(_Model):
    nodes: Dict[str, NodeSpec]
    gateway: Optional[GatewaySpec] = None
    tunnels: List[TunnelSpec] = Field(default_factory=list)
    routes: Dict[str, RouteSpec] = Field(default_factory=dict)
    edge: Optional[EdgeSpec] = None
    storage: Dict[str, BucketSpec] = Field(default_factory=dict)
    budget: BudgetSpec

    @field_validator("nodes")
    @classmethod
    def _node_names(cls, v: Dict[str, NodeSpec]) -> Dict[str, NodeSpec]:
        if not v:
            raise ValueError("at least one node is needed")
        for name in v:
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", name):
                raise ValueError(f"node name {name!r}: lower-case letters, digits and '-', at most 31")
        return v


def _path(loc: Tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _bad_value(data: Any, loc: Tuple[Any, ...]) -> Any:
    for part in loc:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def parse_spec(raw: Mapping[str, Any]) -> EstateSpec:
    """Parse and cross-check a raw config mapping (keys without the namespace prefix)."""
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError([(f"{NAMESPACE}:{k}", f"unknown key; known: {', '.join(TOP_LEVEL_KEYS)}") for k in unknown])
    try:
        spec = EstateSpec.model_validate(dict(raw))
    except ValidationError as err:
        problems = []
        for e in err.errors():
            loc = tuple(p for p in e["loc"]
                        if not (isinstance(p, str) and (p.startswith("function-") or p == "[key]")))
            head, rest = (loc[0], loc[1:]) if loc else ("", ())
            path = f"{NAMESPACE}:{head}" + (f".{_path(rest)}" if rest else "")
            bad = e.get("input") if e["type"] != "missing" else None
            if bad is None or isinstance(bad, (dict, list)):
                leaf = _bad_value(raw, loc)
                bad = leaf if not isinstance(leaf, (dict, list)) else None
            msg = e["msg"].removeprefix("Value error, ")
            problems.append((path, msg + (f" (got {bad!r})" if bad is not None else "")))
        raise ConfigError(problems) from None
    problems = check_estate(spec)
    if problems:
        raise ConfigError(problems)
    return spec


def resident_vram(sizes: Iterable[float], max_loaded: Optional[int]) -> float:
    """VRAM of the models Ollama keeps loaded at once: the largest ``max_loaded`` of them (all when unset).
    The spec checks it per node, and the policy pack from the model resources' stamps."""
    ordered = sorted(sizes)
    return float(sum(ordered[-(max_loaded or len(ordered)):])) if ordered else 0.0


def node_vram_demand(node: NodeSpec) -> float:
    """VRAM the node's resident models and GPU workloads need at once."""
    demand = 0.0
    ollama = node.workloads.get(WorkloadKind.OLLAMA)
    if ollama and ollama.models:
        demand += resident_vram(((catalog.ollama_model(m) or {"vram_gb": 0})["vram_gb"] for m in ollama.models),
                                ollama.max_loaded)
    for kind, w in node.workloads.items():
        if kind is not WorkloadKind.OLLAMA and w.vram_gb:
            demand += w.vram_gb
    return demand


def node_disk_demand(node: NodeSpec) -> float:
    """Disk the node's workloads, models and checkpoints need, without the OS reserve."""
    disk = 0.0
    for kind, w in node.workloads.items():
        disk += catalog.workload_disk_gb(kind.value)
        disk += sum((catalog.ollama_model(m) or {"disk_gb": 0})["disk_gb"] for m in w.models)
        disk += sum(c.size_gb for c in w.checkpoints)
    return disk


def node_ram_demand(node: NodeSpec) -> float:
    return sum(catalog.workload_ram_gb(kind.value) for kind in node.workloads)


def check_estate(spec: EstateSpec) -> List[Tuple[str, str]]:
    """Rules that span several keys. Returns ``(key path, message)`` for each broken one."""
    from components import pricing  # pricing reads the spec's types

    problems: List[Tuple[str, str]] = []
    ns = NAMESPACE
    served: Dict[str, List[str]] = {}  # ollama tag -> nodes

    for name, node in spec.nodes.items():
        base = f"{ns}:nodes.{name}"
        for kind, w in node.workloads.items():
            wpath = f"{base}.workloads.{kind.value}"
            if kind in NEEDS_GPU and node.gpu is None:
                problems.append((wpath, f"{kind.value} needs a GPU but node {name!r} has none"))
            if w.models and kind is not WorkloadKind.OLLAMA:
                problems.append((f"{wpath}.models", "models apply to ollama only"))
            if w.checkpoints and kind is not WorkloadKind.COMFYUI:
                problems.append((f"{wpath}.checkpoints", "checkpoints apply to comfyui only"))
            for i, tag in enumerate(w.models):
                if catalog.ollama_model(tag) is None:
                    problems.append((f"{wpath}.models[{i}]", f"unknown model {tag!r}: add its size to assets/models.json"))
                served.setdefault(tag, []).append(name)
            if node.provider.is_container and (kind is WorkloadKind.PGVECTOR or w.artifact_bucket):
                problems.append((wpath, f"{kind.value} keeps secrets in files on a VM-like node; "
                                        f"{node.provider.value} nodes are one container (got provider "
                                        f"{node.provider.value!r})"))
            if w.artifact_bucket and w.artifact_bucket not in spec.storage:
                problems.append((f"{wpath}.artifact_bucket", f"no bucket {w.artifact_bucket!r} in {ns}:storage"))
        if node.gpu is not None:
            demand = node_vram_demand(node)
            usable = node.gpu.vram_gb * VRAM_USABLE_FRACTION
            if demand > usable:
                problems.append((
                    f"{base}.workloads.ollama.models",
                    f"resident models need {demand:.1f} GB VRAM but {node.gpu.count}x {node.gpu.model} "
                    f"gives {usable:.1f} GB usable; drop a model or set max_loaded",
                ))
        disk_need = node_disk_demand(node) + DISK_OS_RESERVE_GB
        if disk_need > node.disk_gb:
            problems.append((f"{base}.disk_gb", f"workloads and models need {disk_need:.1f} GB, node has {node.disk_gb} GB (got {node.disk_gb})"))
        ram_need = node_ram_demand(node)
        if ram_need > node.ram_gb:
            problems.append((f"{base}.ram_gb", f"workloads need {ram_need:.1f} GB RAM (got {node.ram_gb})"))
        if node.idle_shutdown_minutes and WorkloadKind.OLLAMA not in node.workloads and node.gpu is None:
            problems.append((f"{base}.idle_shutdown_minutes", "idle shutdown watches the GPU: node has none"))
        try:
            pricing.estimate_node(name, node)
        except pricing.PlacementError as err:
            problems.append((f"{base}.gpu", str(err)))
        if node.provider is Provider.HOST and node.failover:
            problems.append((f"{base}.failover", "an owned host cannot fail over"))

    if spec.gateway is not None:
        g = spec.gateway
        gpath = f"{ns}:gateway"
        if g.node not in spec.nodes:
            problems.append((f"{gpath}.node", f"no node {g.node!r} in {ns}:nodes"))
        external_names = {m for ext in g.external.values() for m in ext.models}
        for alias, tag in g.aliases.items():
            if tag not in served:
                problems.append((f"{gpath}.aliases.{alias}", f"no node serves ollama model {tag!r}"))
            if alias in external_names:
                problems.append((f"{gpath}.aliases.{alias}", "name is also an external model"))
        known = set(g.aliases) | external_names
        for alias, chain in g.fallbacks.items():
            if alias not in known:
                problems.append((f"{gpath}.fallbacks.{alias}", f"unknown alias {alias!r}"))
            for i, target in enumerate(chain):
                if target not in known:
                    problems.append((f"{gpath}.fallbacks.{alias}[{i}]", f"unknown alias or external model {target!r}"))
                elif target == alias:
                    problems.append((f"{gpath}.fallbacks.{alias}[{i}]", "an alias cannot fall back to itself"))
        for alias in g.timeouts:
            if alias != "default" and alias not in known:
                problems.append((f"{gpath}.timeouts.{alias}", f"unknown alias {alias!r}"))
        host = spec.nodes.get(g.node)
        if g.deploy == "local":
            if host is not None and (host.provider is not Provider.HOST or host.address not in ("127.0.0.1", "localhost")):
                problems.append((f"{gpath}.deploy", f"local runs LiteLLM on this machine: node {g.node!r} must be "
                                                    "provider 'host' with address 127.0.0.1 (got 'local')"))
            remote = [n for n, node in spec.nodes.items() if n != g.node and node.access is Access.SSH]
            if remote or spec.routes:
                problems.append((f"{gpath}.deploy", "local reaches nodes directly and publishes no routes: "
                                                    f"{', '.join(remote) or 'routes'} need deploy 'ssh' (got 'local')"))
        elif g.port == 0:
            problems.append((f"{gpath}.port", "a free port is only picked for deploy 'local' (got 0)"))

    for i, t in enumerate(spec.tunnels):
        tpath = f"{ns}:tunnels[{i}]"
        if spec.gateway is None:
            problems.append((tpath, f"tunnels start on the gateway host: set {ns}:gateway"))
        if t.node not in spec.nodes:
            problems.append((f"{tpath}.node", f"no node {t.node!r} in {ns}:nodes"))
        else:
            node_ports = {spec.nodes[t.node].port(k) for k in spec.nodes[t.node].workloads}
            for j, p in enumerate(t.ports):
                if p not in node_ports:
                    problems.append((f"{tpath}.ports[{j}]", f"node {t.node!r} runs nothing on port {p}"))

    for host, route in spec.routes.items():
        rpath = f"{ns}:routes.{host}"
        if spec.edge is None:
            problems.append((rpath, f"routes need {ns}:edge (zone, account, domain)"))
        elif not (host == spec.edge.domain or host.endswith("." + spec.edge.domain)):
            problems.append((rpath, f"hostname is outside the zone's domain {spec.edge.domain!r}"))
        node_name, _, wname = route.service.partition("/")
        node = spec.nodes.get(node_name)
        kind = next((k for k in WorkloadKind if k.value == wname), None)
        if node is None or kind is None or kind not in node.workloads:
            problems.append((f"{rpath}.service", f"no node runs {route.service!r}"))
        elif kind.is_model_server and route.auth is AuthMode.NONE:
            problems.append((f"{rpath}.auth", f"{wname} must not be published without auth (got 'none')"))
        if spec.edge is not None and route.auth is AuthMode.ACCESS and not spec.edge.allowed_emails:
            problems.append((f"{ns}:edge.allowed_emails", f"route {host!r} uses access auth: list who may pass"))
        if spec.edge is not None and route.auth is AuthMode.BASIC and spec.edge.mode is not EdgeMode.CADDY:
            problems.append((f"{rpath}.auth", "basic auth is done by Caddy: set edge.mode to 'caddy' or use 'access'"))

    if spec.edge is not None and spec.edge.proxy_node and spec.edge.proxy_node not in spec.nodes:
        problems.append((f"{ns}:edge.proxy_node", f"no node {spec.edge.proxy_node!r}"))
    if spec.edge is not None and spec.edge.proxy_node and spec.gateway and spec.edge.proxy_node != spec.gateway.node:
        problems.append((f"{ns}:edge.proxy_node", f"the edge runs on the gateway host {spec.gateway.node!r} "
                                                  f"(got {spec.edge.proxy_node!r})"))
    if spec.routes and spec.gateway is None:
        problems.append((f"{ns}:routes", f"routes are served from the gateway host: set {ns}:gateway"))
    if not problems:
        from components.gateway import check_reachable  # the gateway reads the parsed spec

        problems += check_reachable(spec)

    for bname, bucket in spec.storage.items():
        for i, reader in enumerate(bucket.readers):
            if reader not in spec.nodes:
                problems.append((f"{ns}:storage.{bname}.readers[{i}]", f"no node {reader!r} in {ns}:nodes"))

    b = spec.budget
    for name, node in spec.nodes.items():
        try:
            est = pricing.estimate_node(name, node)
        except pricing.PlacementError:
            continue
        if b.max_hourly_per_node is not None and est.hourly_usd > b.max_hourly_per_node:
            problems.append((
                f"{ns}:nodes.{name}",
                f"${est.hourly_usd:.3f}/h exceeds {ns}:budget.max_hourly_per_node ${b.max_hourly_per_node:.2f}/h",
            ))
    if not any(p for p in problems if p[0].endswith(".gpu")):
        total = pricing.estimate_estate(spec).monthly_usd
        if total > b.monthly_usd:
            problems.append((
                f"{ns}:budget.monthly_usd",
                f"the estate's own estimate is ${total:.2f}/month, above the budget (got {b.monthly_usd})",
            ))
    return problems


PROJECT_ROOT = catalog.ASSETS.parent


def stack_file_config(stack: str, root: Any = None) -> Dict[str, Any]:
    """The ``config`` map of ``Pulumi.<stack>.yaml`` as committed (secure values stay encrypted): what
    the tools that run without the engine read (the gateway config command, the pack config, the cost
    diff) and what the tests run the program with."""
    import yaml
    from pathlib import Path

    path = Path(root or PROJECT_ROOT) / f"Pulumi.{stack}.yaml"
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("config", {})


def estate_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The estate's keys of a stack config without the namespace, as ``parse_spec`` takes them (config
    secrets such as ``gpu-estate:HF_TOKEN`` are not part of the spec)."""
    prefix = f"{NAMESPACE}:"
    return {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix) and k[len(prefix):] in TOP_LEVEL_KEYS}


def load_spec(config: Any = None) -> EstateSpec:
    """Read every key of the ``gpu-estate`` namespace from the stack's config and parse it once."""
    import pulumi

    config = config or pulumi.Config(NAMESPACE)
    raw: Dict[str, Any] = {}
    for key in TOP_LEVEL_KEYS:
        try:
            value = config.get_object(key)
        except Exception as err:  # malformed JSON in a config value
            raise ConfigError([(f"{NAMESPACE}:{key}", f"not valid structured config: {err}")]) from None
        # Pulumi.yaml gives optional keys an empty default: empty means not set.
        if value is not None and value != {} and value != []:
            raw[key] = value
    if "nodes" not in raw:
        raise ConfigError([(f"{NAMESPACE}:nodes", "missing: the estate needs at least one node")])
    if "budget" not in raw:
        raise ConfigError([(f"{NAMESPACE}:budget", "missing: set budget.monthly_usd")])
    spec = parse_spec(raw)
    missing = [(f"{NAMESPACE}:nodes.{n}.workloads.{k.value}.secret_env[{i}]",
                f"no config secret {NAMESPACE}:{name}: run `pulumi config set --secret {NAMESPACE}:{name} ...` (got {name!r})")
               for n, node in spec.nodes.items() for k, w in node.workloads.items()
               for i, name in enumerate(w.secret_env) if config.get_secret(name) is None]
    if missing:
        raise ConfigError(missing)
    return spec
