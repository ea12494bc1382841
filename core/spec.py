"""The estate specification as typed models: what one stack file says exists and what it may cost.

All keys live in the ``gpu-estate`` config namespace (declared in Pulumi.yaml). These frozen pydantic
models check what a single field or node can check on its own; rules that span several keys live in
``core.rules``, reading the stack file in ``core.config``, and the translation of validation errors into
key paths in ``core.errors``.
"""
from __future__ import annotations

import dataclasses
import enum
import math
import re
from typing import Annotated, Dict, List, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from core import catalog
from core.vendors import Vendor
from core.fields import (
    Hostname, Address, UnixUser, ImageRef, VmImage, EnvName, EnvValue, DownloadUrl, UrlPath, Email, Region, ModelName, WorkloadName, Arg, ContainerPath, HfRepo, GgufFile, BucketName, CHECKPOINT_KINDS,
    NAMESPACE, Access, Checkpoint, StackModel as _Model,
)
from core.kinds import KindInfo, WorkloadKind
from core.services import ServiceSpec
from core.workloads import WorkloadSpec, with_kinds

TOP_LEVEL_KEYS = ("nodes", "serverless", "services", "gateway", "tunnels", "routes", "edge", "storage", "budget", "spend",
                  "jobs", "health")
HOURS_IN_MONTH = catalog.HOURS_IN_MONTH


class Market(str, enum.Enum):
    ON_DEMAND = "on-demand"
    SPOT = "spot"


class PowerState(str, enum.Enum):
    RUNNING = "running"
    """Kept running: `up` starts a node found stopped, and the drift check reports it."""
    STOPPED = "stopped"
    """Kept stopped (a stopped machine still bills its disk)."""
    IDLE = "idle"
    """Pay-per-use: running when rented, and its idle watcher may stop it. A stopped node is not drift:
    refresh, the drift check and `up` leave it stopped; set ``running`` for the `up` that should start it."""

    @property
    def serves(self) -> bool:
        """Whether the gateway routes to the node (an idle-stopped node is routed to; fallbacks apply)."""
        return self is not PowerState.STOPPED


class GpuSpec(_Model):
    model: str
    """GPU model in any spelling of it: case, spaces, ``-`` and ``_`` do not count and the maker's words may
    be left out (``rtx3090``, ``RTX 3090``, ``RTX-3090``, ``3090``, ``NVIDIA GeForce RTX 3090``); stored
    canonical (``rtx3090``). The names are ``assets/prices/gpus.json``'s."""
    count: int = Field(1, ge=1, le=8)
    """GPUs in the machine; VRAM, prices and bids count them all."""

    @field_validator("model", mode="before")
    @classmethod
    def _number_is_a_name(cls, v: object) -> object:
        """``model: 3090`` unquoted is a number in YAML: the same name as ``"3090"``."""
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("model")
    @classmethod
    def _known_gpu(cls, v: str) -> str:
        found = catalog.gpu_candidates(v)
        if len(found) > 1:
            raise ValueError(f"GPU {v!r} names {len(found)} cards: {' or '.join(found)}; give one")
        if not found:
            near = catalog.near_gpus(v)
            hint = f"did you mean {' or '.join(f'`{n}`' for n in near)}? " if near else ""
            raise ValueError(f"unknown GPU {v!r}; {hint}known: {', '.join(sorted(catalog.gpus()))}")
        return found[0]

    @property
    def vram_gb(self) -> int:
        return catalog.gpu_vram_gb(self.model) * self.count


SSH_KEY_TYPE = r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)"
SSH_KEY = SSH_KEY_TYPE + r" [A-Za-z0-9+/]+={0,3}"
"""An OpenSSH public key, ``<type> <base64>``."""


class SshSpec(_Model):
    user: UnixUser = "root"
    """The user the program and the tunnels sign in as."""
    port: int = Field(22, ge=1, le=65535)
    """The machine's SSH port."""
    public_key: Optional[str] = None
    """OpenSSH public key put on the node; the matching private key stays with the operator."""
    host_key: Optional[str] = Field(None, pattern=r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,3}$")
    """The node's SSH host key (``<type> <base64>``, as in ``/etc/ssh/ssh_host_ed25519_key.pub`` without
    its comment): give it for an owned host. Without it the key is recorded on first contact and every
    later connection verifies it."""
    private_key_env: str = "ESTATE_SSH_PRIVATE_KEY"
    """Environment variable (or config secret ``sshPrivateKey``) holding the private key for remote commands."""

    @field_validator("public_key")
    @classmethod
    def _openssh_key(cls, v: Optional[str]) -> Optional[str]:
        """One key on one line: it becomes the node's authorized_keys, where a newline starts a second
        key (root for whoever holds it) and a second key's type and base64 in the comment hide one."""
        if v is None:
            return v
        if re.search(r"[\x00-\x1f\x7f]", v):
            raise ValueError("one OpenSSH public key on one line, without control characters")
        m = re.fullmatch(SSH_KEY + r"( (?P<comment>[^\s].{0,200}))?", v)
        if not m:
            raise ValueError("not one OpenSSH public key (<type> <base64> [comment])")
        if m["comment"] and re.search(SSH_KEY_TYPE + r"\s+[A-Za-z0-9+/]{16,}", m["comment"]):
            raise ValueError("one OpenSSH public key, not two")
        return v


class NodeSpec(_Model):
    provider: Vendor
    """Who rents the machine: tensordock, vastai, runpod (marketplaces), aws, gcp, or host (a machine you own)."""
    failover: List[Vendor] = Field(default_factory=list)
    """Other marketplace providers tried in order when the first has no capacity."""
    gpu: Optional[GpuSpec] = None
    """The GPUs to rent (required but on an owned host)."""
    regions: List[Region] = Field(default_factory=list)
    """Locations tried in order: TensorDock city/country, Vast geolocation code, RunPod data center,
    AWS/GCP region. Empty means anywhere."""
    vcpu: int = Field(4, ge=1, le=256)
    """Virtual CPUs the machine has at least."""
    ram_gb: int = Field(16, ge=1, le=2048)
    """RAM the machine has at least; the workloads' own needs are checked against it."""
    disk_gb: int = Field(100, ge=10, le=16384)
    """Disk the machine is rented with; models, checkpoints and images must fit with 20 GB to spare."""
    market: Market = Market.ON_DEMAND
    """`spot` rents interruptible capacity (Vast.ai bids, RunPod, AWS and GCP spot) for less."""
    bid_per_hour: Optional[float] = Field(None, gt=0)
    """Spot only: the $/h bid (Vast) or $/GPU-h bid (RunPod); default the lowest accepted bid."""
    max_price_per_hour: Optional[float] = Field(None, gt=0)
    """The most the node may cost an hour, in USD: no dearer offer is rented, and the estimate plans at it."""
    max_usd_per_month: Optional[float] = Field(None, gt=0)
    """The same cap in USD a month, for a budget thought of that way: the hourly cap is this over
    ``hours_per_month``, rounded down (the preview says both). Give this or ``max_price_per_hour``."""
    min_reliability: Optional[float] = Field(None, ge=0, le=1)
    """The lowest host reliability (0-1) a marketplace offer may have (TensorDock's uptime, Vast.ai's
    reliability)."""
    hours_per_month: float = Field(HOURS_IN_MONTH, ge=0, le=744)
    """Expected running hours in a month; the monthly estimate is this times the hourly price."""
    power: PowerState = PowerState.RUNNING
    """Whether `up` keeps the machine running, stopped (its disk still bills) or leaves it to its idle watcher (`idle`)."""
    idle_shutdown_minutes: Optional[int] = Field(None, ge=5, le=1440)
    """Stop the machine once its GPUs and Ollama have been idle this long (not on RunPod, which runs no watcher)."""
    instance_type: Optional[str] = None
    """AWS/GCP only: pin an instance type from assets/prices; otherwise the cheapest that fits."""
    address: Optional[Address] = None
    """host only: address of the machine you own."""
    image: VmImage = "ubuntu2404"
    """VM image (TensorDock image id, AWS/GCP image family, or a pinned ``ami-...``) for VM-like nodes."""
    protect: bool = False
    """Pulumi's ``protect`` on the node's machine: no `up` (a replace) or `destroy` can delete it until
    this is set back to false and applied. For a node an operator cannot afford to lose."""
    ssh: SshSpec = Field(default_factory=SshSpec)
    """How the program and the gateway reach the machine over SSH."""
    access: Access = Access.SSH
    """`ssh`: services listen on the node's loopback, reached through SSH; `direct`: on its mapped ports (private networks, the sandbox)."""
    workloads: Dict[WorkloadName, WorkloadSpec] = Field(default_factory=dict)
    """What runs on the node, by name: a kind's name is that kind, any other a container of your own."""

    @field_validator("workloads", mode="before")
    @classmethod
    def _kinds_from_names(cls, v: object) -> object:
        return with_kinds(v)

    @model_validator(mode="after")
    def _shape(self) -> "NodeSpec":
        if self.provider is not Vendor.HOST and self.gpu is None:
            raise ValueError(f"provider {self.provider.value!r} rents GPU nodes: set gpu.model")
        if self.provider is Vendor.HOST and not self.address:
            raise ValueError("provider 'host' needs address (the machine's IP or DNS name)")
        if self.market is Market.SPOT and not self.provider.info.spot:
            raise ValueError(f"market 'spot' is not offered by {self.provider.value!r}")
        if self.bid_per_hour is not None and self.market is not Market.SPOT:
            raise ValueError("bid_per_hour is only meaningful with market 'spot'")
        if self.max_usd_per_month is not None and self.max_price_per_hour is not None:
            raise ValueError("give one price cap, max_price_per_hour or max_usd_per_month (got both: "
                             f"{self.max_price_per_hour} and {self.max_usd_per_month})")
        if self.max_usd_per_month is not None and not self.hours_per_month:
            raise ValueError("max_usd_per_month is spread over hours_per_month, which is 0: give max_price_per_hour")
        for other in self.failover:
            if not other.is_marketplace or other is self.provider:
                raise ValueError(f"failover to {other.value!r}: only another of tensordock/vastai/runpod")
        if self.instance_type and self.provider not in (Vendor.AWS, Vendor.GCP):
            raise ValueError("instance_type applies to aws and gcp nodes only")
        # Values a node of this provider would ignore, refused saying whose they are.
        if self.bid_per_hour is not None and not self.provider.is_marketplace:
            raise ValueError(f"bid_per_hour is a marketplace's bid (vastai, runpod); a {self.provider.value} spot node "
                             "pays the spot price, capped by max_price_per_hour (got bid_per_hour)")
        if self.address and self.provider is not Vendor.HOST:
            raise ValueError(f"address is a host's you own (provider host); a {self.provider.value} machine's comes "
                             f"from its vendor (got address {self.address!r})")
        if "image" in self.model_fields_set and self.provider.is_container:
            raise ValueError(f"image is a VM's; a {self.provider.value} node is one container, whose image is its "
                             f"workload's (nodes.<node>.workloads.<workload>.image) (got image {self.image!r})")
        return self

    @property
    def price_cap(self) -> Optional[float]:
        """The most the node may cost an hour: ``max_price_per_hour``, or ``max_usd_per_month`` over
        ``hours_per_month`` rounded down to a hundredth of a cent (so the month stays within it)."""
        if self.max_usd_per_month is not None and self.hours_per_month:
            return math.floor(self.max_usd_per_month / self.hours_per_month * 10000) / 10000
        return self.max_price_per_hour

    @property
    def is_pay_per_use(self) -> bool:
        return self.provider is not Vendor.HOST

    def kind(self, name: str) -> WorkloadKind:
        return self.workloads[name].kind

    def info(self, name: str) -> KindInfo:
        """What the workload is: its kind's static facts, with what the stack gives for a container of its own."""
        return self.workloads[name].facts()

    def port(self, name: str) -> int:
        return self.workloads[name].port or self.info(name).port

    def serving_port(self, name: str) -> int:
        """Where the gateway reaches the models the workload serves (ComfyUI's images bridge has its own)."""
        return self.workloads[name].serving_port(self.port(name))

    def uses_gpu(self, name: str) -> bool:
        """Whether the workload's container is given the node's GPUs."""
        return self.workloads[name].uses_gpu()

    def image_for(self, name: str) -> str:
        return self.workloads[name].image or self.info(name).image


RunpodSecret = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
"""The name of a secret kept by RunPod (its console's Secrets), referenced as ``{{ RUNPOD_SECRET_<name> }}``."""
RunpodLocation = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}(-[A-Z]{2,4}-[0-9]{1,2})?$")]
"""A RunPod location: a country code (``US``, ``RO``) or a data center (``EU-RO-1``)."""


class ServerlessWorkers(_Model):
    min: int = Field(0, ge=0, le=100)
    """Active workers, kept running (and billed) all the time at RunPod's active rate; 0 scales to zero."""
    max: int = Field(3, ge=1, le=100)
    """The most workers RunPod starts at once (flex workers, billed per second while they run)."""

    @model_validator(mode="after")
    def _ordered(self) -> "ServerlessWorkers":
        if self.min > self.max:
            raise ValueError(f"workers.min {self.min} is above workers.max {self.max}")
        return self


class ServerlessSpec(_Model):
    """A RunPod serverless endpoint (a template and an endpoint through RunPod's API): workers start on
    requests and stop after ``idle_timeout_seconds``. One that serves a model (``model`` or
    ``served_name``) joins the gateway through its OpenAI-compatible route."""

    provider: str = Field("runpod", pattern=r"^runpod$")
    """The one provider of serverless endpoints: runpod."""
    image: ImageRef
    """The worker image, pinned (``runpod/worker-v1-vllm:<tag>`` serves a Hugging Face model)."""
    gpu_pools: List[str] = Field(min_length=1)
    """RunPod's GPU pools in order of preference (``ADA_24``, ``AMPERE_80``; assets/prices/runpod-serverless.json)."""
    gpu_count: int = Field(1, ge=1, le=8)
    """GPUs per worker."""
    workers: ServerlessWorkers = Field(default_factory=ServerlessWorkers)
    """How many workers run: `min` always (billed), up to `max` on demand."""
    idle_timeout_seconds: int = Field(5, ge=1, le=3600)
    """Seconds a worker waits for the next request before it stops (and stops billing)."""
    busy_hours_per_month: float = Field(0.0, ge=0, le=744 * 100)
    """Expected worker-hours a month of flex workers (cold starts, requests, idle timeouts), priced at the
    flex rate; the monthly estimate adds ``workers.min`` active workers around the clock."""
    regions: List[RunpodLocation] = Field(default_factory=list)
    """RunPod locations the workers may run in; empty means anywhere."""
    container_disk_gb: int = Field(20, ge=5, le=1000)
    """Each worker's container disk."""
    flashboot: bool = True
    """RunPod's FlashBoot: faster cold starts from cached workers."""
    scaler: str = Field("QUEUE_DELAY", pattern=r"^(QUEUE_DELAY|REQUEST_COUNT)$")
    """How RunPod decides to start another worker: QUEUE_DELAY or REQUEST_COUNT."""
    scaler_value: int = Field(4, ge=1, le=1000)
    """Seconds of queue delay (QUEUE_DELAY) or requests per worker (REQUEST_COUNT) before another starts."""
    model: Optional[HfRepo] = None
    """The Hugging Face repository the worker serves (RunPod's vLLM worker reads it as ``MODEL_NAME``)."""
    served_name: Optional[ModelName] = None
    """The model name it answers to and gateway aliases name (``OPENAI_SERVED_MODEL_NAME_OVERRIDE``);
    default ``model``."""
    model_size_gb: Optional[float] = Field(None, gt=0, le=2048)
    """The model's weights in GB, checked against each pool's VRAM."""
    args: List[Arg] = Field(default_factory=list)
    """The worker's command after its image's entrypoint (the template's ``dockerArgs``)."""
    env: Dict[EnvName, EnvValue] = Field(default_factory=dict)
    """The template's env, readable in RunPod's console: no secrets (see ``secret_env``)."""
    secret_env: Dict[EnvName, RunpodSecret] = Field(default_factory=dict)
    """Env var -> the name of a secret kept by RunPod: the template carries only the reference
    ``{{ RUNPOD_SECRET_<name> }}``, never a value."""

    @field_validator("gpu_pools")
    @classmethod
    def _known_pools(cls, v: List[str]) -> List[str]:
        known = catalog.serverless_pools()
        for pool in v:
            if pool not in known:
                raise ValueError(f"unknown RunPod serverless GPU pool {pool!r}; known: {', '.join(known)}")
        if len(set(v)) != len(v):
            raise ValueError(f"a pool is listed twice (got {v})")
        return v

    @model_validator(mode="after")
    def _shape(self) -> "ServerlessSpec":
        clash = sorted(set(self.env) & set(self.secret_env))
        if clash:
            raise ValueError(f"{clash[0]} is in both env and secret_env")
        return self

    @property
    def model_name(self) -> Optional[str]:
        """The model name the gateway sends it (None: not a model server the gateway routes to)."""
        return self.served_name or self.model

    @property
    def gpu_ids(self) -> str:
        """RunPod's ``gpuIds``: the pools in order, comma-separated."""
        return ",".join(self.gpu_pools)

    def template_env(self) -> Dict[str, str]:
        """The template's env: the stack's, the model the worker serves, and RunPod secret references."""
        out = dict(self.env)
        if self.model:
            out.setdefault("MODEL_NAME", self.model)
        if self.served_name and self.served_name != self.model:
            out.setdefault("OPENAI_SERVED_MODEL_NAME_OVERRIDE", self.served_name)
        if self.gpu_count > 1:
            out.setdefault("TENSOR_PARALLEL_SIZE", str(self.gpu_count))
        out.update({k: "{{ RUNPOD_SECRET_%s }}" % ref for k, ref in self.secret_env.items()})
        return dict(sorted(out.items()))


class ExternalProvider(_Model):
    """An external API the gateway may fall back to (OpenAI, Anthropic, OpenRouter...)."""

    models: Dict[ModelName, ModelName]
    """Gateway name -> LiteLLM model string, e.g. ``openai-gpt-4o: openai/gpt-4o``."""
    api_key_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    """Environment variable holding the key on the gateway host; the value comes from a config secret."""
    api_base: Optional[str] = Field(None, max_length=2048,
                                    pattern=r"^(https://[A-Za-z0-9.-]+|http://(127\.0\.0\.1|localhost))(:[0-9]{1,5})?(/[A-Za-z0-9._~%/-]*)?$")
    """Where the provider answers: https, or plain http on this machine's loopback only."""


class GatewaySpec(_Model):
    node: str
    """Node (from ``nodes``) that runs the LiteLLM proxy."""
    aliases: Dict[ModelName, ModelName] = Field(default_factory=dict)
    """Client-facing name -> the model the estate serves under it (an Ollama tag or a server's
    ``served_name``), as ``gpt-4: qwen3:32b``."""
    external: Dict[str, ExternalProvider] = Field(default_factory=dict)
    """External APIs by name (openai, anthropic, ...) whose models aliases may fall back to."""
    fallbacks: Dict[ModelName, List[ModelName]] = Field(default_factory=dict)
    """Alias -> names (aliases or external models) tried in order when it fails."""
    timeouts: Dict[str, float] = Field(default_factory=dict)
    """Alias -> request timeout in seconds; ``default`` applies to the rest."""
    routing_strategy: str = Field(
        "simple-shuffle",
        pattern=r"^(simple-shuffle|least-busy|usage-based-routing|usage-based-routing-v2|"
        r"latency-based-routing|cost-based-routing)$",
    )
    """How LiteLLM picks among the nodes serving one alias (LiteLLM's own strategies)."""
    num_retries: int = Field(2, ge=0, le=10)
    """Retries of a failed request before its fallbacks are tried."""
    port: int = Field(4000, ge=0, le=65535)
    """Where clients reach LiteLLM on the gateway host's loopback (over SSH, its front: ``backend_ports``); 0
    (local deploy only) takes a free port."""
    backend_ports: Tuple[Annotated[int, Field(ge=1, le=65535)], Annotated[int, Field(ge=1, le=65535)]] = (4102, 4103)
    """Where LiteLLM's two instances listen on the gateway host's loopback, behind the front on ``port``:
    a new config starts the one not live, and the front switches to it once it is ready (docs/gateway.md)."""
    identity_port: int = Field(4101, ge=1, le=65535)
    """Where the identity proxy listens on the gateway host's loopback: it signs the gateway's requests to
    services that check a Google ID token (``provider: cloudrun``) and runs only for them; a local gateway's
    takes a free port."""
    deploy: str = Field("ssh", pattern=r"^(ssh|local)$")
    """``ssh`` (systemd units on the gateway node, over SSH) or ``local`` (a LiteLLM process on the machine
    running `pulumi up`, for a workstation or the sandbox). A local gateway reaches nodes directly, and its
    node must be an owned host at 127.0.0.1."""

    def timeout(self, name: str) -> float:
        """The request timeout of an alias or external model: its own, else ``default``, else 600 s."""
        return self.timeouts.get(name, self.timeouts.get("default", 600))


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
    service: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*/[a-z][a-z0-9-]*$")
    """``<node>/<workload>``, e.g. ``inference/open-webui``."""
    auth: AuthMode = AuthMode.ACCESS
    """Who may pass: `access` (Cloudflare Access), `basic` (the proxy's basic auth) or `none` (refused for model servers)."""
    path: UrlPath = "/"
    """Only this path prefix of the hostname is forwarded."""

    @property
    def node(self) -> str:
        return self.service.partition("/")[0]

    @property
    def workload(self) -> str:
        """The routed workload's name on its node."""
        return self.service.partition("/")[2]


class EdgeMode(str, enum.Enum):
    CLOUDFLARE_TUNNEL = "cloudflare-tunnel"
    CADDY = "caddy"


class EdgeSpec(_Model):
    mode: EdgeMode = EdgeMode.CLOUDFLARE_TUNNEL
    """`cloudflare-tunnel`: a connector on the gateway host behind Access; `caddy`: Caddy with basic auth on a node with ports 80/443."""
    zone_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    """The Cloudflare zone the hostnames' DNS records go in."""
    account_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    """The Cloudflare account holding the tunnel and Access applications."""
    domain: Hostname
    """The zone's domain; every route's hostname is under it."""
    allowed_emails: List[Email] = Field(default_factory=list)
    """Who Cloudflare Access lets through."""
    team_name: Optional[str] = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    """cloudflare-tunnel mode: the Zero Trust team (``<team>.cloudflareaccess.com``). The connector checks
    every request's Access token against it, so nothing reaches a service around Access."""
    proxy_node: Optional[str] = None
    """caddy mode: the node running Caddy (default the gateway node)."""


class BucketSpec(_Model):
    provider: str = Field(pattern=r"^(gcs|s3)$")
    """gcs or s3."""
    location: Region
    """The bucket's region (GCS location or AWS region)."""
    versioning: bool = True
    """Keep old versions of overwritten objects (deleted after `noncurrent_days`)."""
    noncurrent_days: int = Field(30, ge=1)
    """Old object versions are deleted after this many days."""
    readers: List[str] = Field(default_factory=list)
    """Nodes given read/write credentials scoped to this bucket."""
    monthly_usd: float = Field(0.0, ge=0)
    """Expected storage bill, counted in the monthly estimate."""
    endpoint: Optional[DownloadUrl] = None
    """s3 only: the API of an S3-compatible store holding a bucket that exists already (MinIO, Cloudflare R2,
    Backblaze B2), named as this key: the estate creates nothing there and gives its readers and jobs the
    access key in the config secrets ``access_key_secret`` and ``secret_key_secret``."""
    access_key_secret: Optional[EnvName] = None
    """With ``endpoint``: the config secret (``gpu-estate:<NAME>``) holding the store's access key id."""
    secret_key_secret: Optional[EnvName] = None
    """With ``endpoint``: the config secret holding the store's secret access key."""

    @model_validator(mode="after")
    def _existing(self) -> "BucketSpec":
        given = [k for k in ("access_key_secret", "secret_key_secret") if getattr(self, k)]
        if self.endpoint is None and given:
            raise ValueError(f"{given[0]} is the access key of an existing bucket at endpoint; set endpoint too")
        if self.endpoint is not None and (self.provider != "s3" or len(given) != 2):
            raise ValueError("an existing bucket at endpoint speaks the S3 API (provider s3) and needs both "
                             f"access_key_secret and secret_key_secret (got provider {self.provider!r}, {given})")
        return self

    def store_name(self, project: str, stack: str, key: str) -> str:
        """The bucket's name at its store: an existing bucket's (``endpoint``) is its key in ``storage``; one the
        estate creates is ``<project>-<stack>-<key>``."""
        return key if self.endpoint is not None else f"{project}-{stack}-{key}"

    @property
    def secret_names(self) -> List[str]:
        """The config secrets the bucket's access key is read from (an existing bucket's)."""
        return [n for n in (self.access_key_secret, self.secret_key_secret) if n]


class BudgetSpec(_Model):
    monthly_usd: float = Field(gt=0)
    """The most the estate may cost a month; its own estimate must fit (and the spend watcher's percentages are of it)."""
    daily_usd: Optional[float] = Field(None, gt=0)
    """The most a day may cost: the policy pack checks always-on nodes against it and the spend watcher alerts past it."""
    max_hourly_per_node: Optional[float] = Field(None, gt=0)
    """The most any one node (or serverless worker) may cost an hour."""


MONTH_PATTERN = r"^20[0-9]{2}-(0[1-9]|1[0-2])$"
Month = Annotated[str, StringConstraints(pattern=MONTH_PATTERN)]
"""A calendar month, ``YYYY-MM`` (UTC)."""


class SpendSpec(_Model):
    """The spend watcher the estate deploys beside its gateway (seed 000 D2, seed 003's daily alert).

    Every ``every_minutes`` it adds up what each node has cost this month (the vendor's billed rate for
    the time the vendor reports it running, else the launch price), posts to the webhook in the config
    secret ``gpu-estate:spendWebhook`` as each alert threshold and the daily budget are passed, and at
    ``stop_percent`` stops every pay-per-use node. While the month stays over it, `up` refuses to start
    them again and the gateway does not wake them, unless ``resume_month`` names the month."""

    alerts_percent: List[int] = Field(default_factory=lambda: [50, 80])
    """Percentages of ``budget.monthly_usd`` at which an alert is posted, once each a month."""
    stop_percent: int = Field(100, ge=1, le=1000)
    """At this percentage of the monthly budget every pay-per-use node is stopped."""
    every_minutes: int = Field(10, ge=1, le=1440)
    """How often the watcher looks (a systemd timer on the gateway host)."""
    resume_month: Optional[Month] = None
    """The operator's word: in this month the stopped nodes may run above the budget (the watcher still
    alerts but stops nothing, and `up` starts them)."""

    @field_validator("alerts_percent")
    @classmethod
    def _alerts(cls, v: List[int]) -> List[int]:
        for p in v:
            if not 1 <= p <= 1000:
                raise ValueError(f"an alert is a percentage of the monthly budget, 1-1000 (got {p})")
        return sorted(set(v))


class HealthSpec(_Model):
    """The health agent the estate deploys beside its gateway (seed 002 section 5): every ``every_seconds``
    it probes each service the gateway routes to through the address the gateway reaches it at, each tunnel,
    each node's state and the gateway itself, posts "down" after ``down_after`` failed checks in a row and
    "up" on recovery to the spend watcher's webhook (``gpu-estate:spendWebhook``), and serves the status
    document, page and Prometheus metrics on the gateway host's loopback behind the gateway's master key."""

    every_seconds: int = Field(60, ge=5, le=3600)
    """How often every check runs."""
    down_after: int = Field(3, ge=1, le=100)
    """Failed checks in a row before a service is reported down (one success reports it up again)."""
    timeout_seconds: float = Field(10, gt=0, le=300)
    """How long one probe may take (a one-token generation included)."""
    alert_format: str = Field("slack", pattern=r"^(slack|discord|ntfy|json)$")
    """The webhook's shape: ``slack`` (also Mattermost), ``discord``, ``ntfy`` (a topic URL) or ``json``."""
    port: int = Field(4100, ge=1, le=65535)
    """Where the status page, document and metrics answer on the gateway host's loopback."""


class EstateSpec(_Model):
    nodes: Dict[str, NodeSpec]
    serverless: Dict[str, ServerlessSpec] = Field(default_factory=dict)
    """RunPod serverless endpoints by name (lower-case, not a node's name)."""
    services: Dict[str, ServiceSpec] = Field(default_factory=dict)
    """Hosted model services by name (Fly.io, Cloud Run): the gateway routes to them like serverless endpoints."""
    gateway: Optional[GatewaySpec] = None
    tunnels: List[TunnelSpec] = Field(default_factory=list)
    routes: Dict[Hostname, RouteSpec] = Field(default_factory=dict)
    edge: Optional[EdgeSpec] = None
    storage: Dict[BucketName, BucketSpec] = Field(default_factory=dict)
    budget: BudgetSpec
    spend: Optional[SpendSpec] = None
    jobs: Dict[str, "JobSpec"] = Field(default_factory=dict)
    """GPU jobs by name (``core/jobs.py``): run once, released at the end or at a cap. ``JobSpec`` is declared
    with this module's ``NodeSpec`` fields, so ``core.jobs`` completes this model when imported (``core.config``
    imports it through ``core.rules``)."""
    health: Optional[HealthSpec] = None

    def gateway_over_ssh(self, node: str) -> bool:
        """Whether ``node`` hosts the gateway and the gateway is deployed on it over SSH."""
        return self.gateway is not None and self.gateway.node == node and self.gateway.deploy != "local"

    @field_validator("nodes")
    @classmethod
    def _node_names(cls, v: Dict[str, NodeSpec]) -> Dict[str, NodeSpec]:
        if not v:
            raise ValueError("at least one node is needed")
        return _named("node", v)

    @field_validator("jobs")
    @classmethod
    def _job_names(cls, v: Dict[str, object]) -> Dict[str, object]:
        return _named("job", v)

    @field_validator("serverless")
    @classmethod
    def _endpoint_names(cls, v: Dict[str, ServerlessSpec]) -> Dict[str, ServerlessSpec]:
        return _named("endpoint", v)

    @field_validator("services")
    @classmethod
    def _service_names(cls, v: Dict[str, ServiceSpec]) -> Dict[str, ServiceSpec]:
        return _named("service", v)


def _named(what: str, v: Dict[str, object]) -> Dict[str, object]:
    """``v`` when every name in it can name a resource, a vendor label and a DNS comment alike."""
    for name in v:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", name):
            raise ValueError(f"{what} name {name!r}: lower-case letters, digits and '-', at most 31")
    return v
