"""Ollama: pulls and serves the tags the stack lists, the gateway's default model server."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Dict, List, Literal, Optional

from pydantic import AfterValidator, Field, field_validator

from core import buckets, catalog
from core.catalog import is_loopback, registry_of
from core.demand import resident_vram
from core.fields import ModelName, RegistryHost, StackModel
from core.kinds import WorkloadKind
from core.own_models import GgufModel
from core.workloads.base import BaseWorkload, listen_host, vm_only

if TYPE_CHECKING:
    from core.spec import NodeSpec


class ModelSize(StackModel):
    """What one Ollama model takes, as ``assets/models.json`` lists it."""

    disk_gb: float = Field(gt=0, le=4096)
    """GB its pulled files take on the node's disk (``ollama list``'s size)."""
    vram_gb: float = Field(gt=0, le=4096)
    """GB of VRAM it holds while loaded, weights and default context (``ollama ps``)."""


class Ollama(BaseWorkload):
    kind: Literal[WorkloadKind.OLLAMA] = WorkloadKind.OLLAMA
    models: List[ModelName] = Field(default_factory=list)
    """Tags to pull and keep."""
    gguf_models: Dict[ModelName, GgufModel] = Field(default_factory=dict)
    """Tag -> a model of your own, made on the node from a GGUF in the estate's bucket (or the version an MLflow
    alias names) with its Modelfile's template, system prompt and parameters; size it in ``model_sizes``."""
    model_sizes: Dict[ModelName, ModelSize] = Field(default_factory=dict)
    """Tag -> its sizes, for a model ``assets/models.json`` does not list (or lists otherwise): the stack's
    figures win, and the tracked table stays as it is."""
    model_cache: Annotated[Optional[str], Field(max_length=512), AfterValidator(buckets.cache_url)] = None
    """Warm starts: ``s3://<bucket>/<prefix>`` or ``gs://<bucket>/<prefix>`` (the estate's bucket) where its
    pulled models are kept once, so a new machine for the node (a failover, a re-rent) fills Ollama from there
    before the public registry."""
    max_loaded: Optional[int] = Field(None, ge=1)
    """Models resident in VRAM at once (OLLAMA_MAX_LOADED_MODELS); default all of them."""
    insecure_registries: List[RegistryHost] = Field(default_factory=list)
    """Registries (``host:port``) its models are pulled from over plain HTTP (Ollama's ``--insecure``):
    only a registry on the node's own loopback (``127.0.0.1:5000``, ``localhost:5000``, ``[::1]:5000``), which
    nothing off the node can answer for. A model named ``<registry>/<namespace>/<name>:<tag>`` is pulled
    from that registry."""
    host_network: bool = False
    """Share the VM's network instead of Docker's bridge (compose's ``network_mode: host``): Ollama then
    listens on the VM at its port itself, and reaches what listens on the VM's loopback, such as a registry
    there. VM-like nodes only."""

    speaks_ollama_api: ClassVar[bool] = True
    vram_field: ClassVar[Optional[str]] = "models"
    vram_advice: ClassVar[str] = "drop a model, or keep fewer loaded at once with max_loaded"
    belongs_elsewhere: ClassVar[Dict[str, str]] = {
        "vram_gb": "Ollama's VRAM is its models' own sizes (assets/models.json, or model_sizes.<tag>.vram_gb for a "
                   "model the table does not list); keep fewer loaded at once with max_loaded",
    }

    @field_validator("insecure_registries")
    @classmethod
    def _loopback_only(cls, v: List[str]) -> List[str]:
        for i, registry in enumerate(v):
            if not is_loopback(registry):
                raise ValueError(f"only a registry on the node's loopback may be pulled from without TLS: "
                                 f"127.0.0.1, localhost or [::1] with its port (got {registry!r} at [{i}])")
        return v

    def insecure_pull(self, tag: str) -> bool:
        return registry_of(tag) in self.insecure_registries

    def own_env(self, node: "NodeSpec", name: str) -> Dict[str, str]:
        # On the VM's own network it listens where the compose project would have published it.
        listen = (f"{'0.0.0.0' if node.access.value == 'direct' else '127.0.0.1'}:{node.port(name)}"
                  if self.host_network else f"{listen_host(node)}:11434")
        env = {"OLLAMA_HOST": listen, "OLLAMA_KEEP_ALIVE": "30m"}
        if self.max_loaded:
            env["OLLAMA_MAX_LOADED_MODELS"] = str(self.max_loaded)
        return env

    def compose_service(self, node, name, service, secrets):
        if not self.host_network:
            return service, {}
        return {**{k: v for k, v in service.items() if k != "ports"}, "network_mode": "host"}, {}

    def served_models(self) -> List[str]:
        return list(self.models) + list(self.gguf_models)

    def own_models(self) -> Dict[str, GgufModel]:
        return dict(self.gguf_models)

    def cache_of(self, tag: str) -> Optional[str]:
        return self.model_cache if tag in self.models else None

    def pulled_models(self) -> List[str]:
        return list(self.models)

    @property
    def max_resident(self) -> Optional[int]:
        return self.max_loaded

    def probe(self, routed: List[str]) -> Dict[str, object]:
        # It lists the node's models (each pulled one must be there) and answers a one-token generation for
        # each model an alias sends it that it holds loaded (``/api/ps``): a loaded model answering, not only
        # a process listening. A model not loaded is not loaded for the probe: every minute that would evict
        # the models serving traffic from VRAM and keep an idle node's watcher from ever stopping it.
        return {"type": "ollama", "path": "/api/tags", "models": list(self.models), "generate": list(routed),
                "loaded_only": True}

    def gateway_params(self, model: str, url: str) -> Dict[str, object]:
        return {"model": f"ollama_chat/{model}", "api_base": url}

    def gateway_id(self, node: str, name: str) -> str:
        return node  # an Ollama's entry keeps the node's name alone, as it always had

    def size(self, tag: str) -> Optional[Dict[str, float]]:
        """``{disk_gb, vram_gb}`` of one of its models: the stack's ``model_sizes``, else the table's."""
        given = self.model_sizes.get(tag)
        return given.model_dump() if given is not None else catalog.ollama_model(tag)

    def model_vram_gb(self, model: str) -> float:
        return (self.size(model) or {"vram_gb": 0.0})["vram_gb"]

    def vram(self, node: "NodeSpec") -> float:
        """The VRAM of the models it keeps loaded at once, whatever the node (its models' own figures)."""
        return self.default_vram(node)

    def default_vram(self, node: "NodeSpec") -> float:
        tags = self.served_models()
        return resident_vram((self.model_vram_gb(m) for m in tags), self.max_loaded) if tags else 0.0

    def disk_gb(self) -> float:
        return super().disk_gb() + sum((self.size(m) or {"disk_gb": 0})["disk_gb"] for m in self.served_models())

    def problems(self, spec, node_name: str, name: str, path: str):
        out = [(f"{path}.models[{i}]", f"unknown model {tag!r}: give its sizes in the stack, as "
                                       f"{path.partition(':')[2]}.model_sizes.{tag}: {{disk_gb: ..., vram_gb: ...}} "
                                       "(ollama list and ollama ps show them)")
               for i, tag in enumerate(self.models) if self.size(tag) is None]
        out += [(f"{path}.gguf_models.{tag}", f"give the sizes of your own model {tag!r} in the stack, as "
                                              f"{path.partition(':')[2]}.model_sizes.{tag}: {{disk_gb: ..., vram_gb: ...}}")
                for tag in self.gguf_models if self.size(tag) is None]
        out += [(f"{path}.gguf_models.{tag}", f"{tag!r} is also in models: a tag is pulled or made from a GGUF, "
                                              "not both")
                for tag in self.gguf_models if tag in self.models]
        out += [(f"{path}.model_sizes.{tag}", f"{tag!r} is not one of models, so nothing reads its sizes: add it to "
                                              f"models or drop it (got model_sizes.{tag})")
                for tag in self.model_sizes if tag not in self.served_models()]
        node = spec.nodes[node_name]
        if self.host_network:
            out += vm_only(self, node, f"{path}.host_network")
            # Open WebUI finds Ollama by its service name on the compose network, which it then leaves.
            out += [(f"{path}.host_network", f"{other} reaches Ollama on the compose network; with host_network "
                                             "Ollama is not on it (run Open WebUI on another node)")
                    for other, w in node.workloads.items() if w.kind is WorkloadKind.OPEN_WEBUI]
        elif not node.provider.is_container:
            # A container on Docker's bridge has a loopback of its own: the VM's registry is not there.
            out += [(f"{path}.models[{i}]", f"{tag!r} is pulled from a registry on the node's loopback, which "
                                            "Ollama's container reaches only on the VM's network: set "
                                            f"{path}.host_network: true")
                    for i, tag in enumerate(self.models) if registry_of(tag) and is_loopback(registry_of(tag))]
        return out

