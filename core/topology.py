"""The estate's topology, derived once from a checked spec into an ``EstatePlan``.

Everything here is plain data: which workloads serve which model, the SSH forwards the gateway host
keeps to each node, how the gateway host reaches each routed service, each node's placement request
and the cost estimate. ``plan_estate`` computes it once; components, the gateway renderers and the
scripts read the plan they are given instead of deriving it again.

- Tunnel plan: nodes the gateway needs (they serve an alias or a route) get a forward for exactly those
  ports, plus any listed under ``tunnels``; the gateway's own node and nodes with ``access: direct`` need
  none. Local ports keep the remote number where free and take the next free one otherwise (seed 002:
  11434, then 11435 for a second Ollama).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Tuple

from core import pricing
from core.workloads import BaseWorkload
from core.spec import Access, EstateSpec, PowerState
from core.vendors import Vendor


@dataclasses.dataclass(frozen=True)
class Forward:
    node: str
    remote: int
    local: int


Endpoint = Tuple[Optional[str], Mapping[str, int]]
"""(address, service port -> mapped port) of a node reached directly; address None until it is up."""


@dataclasses.dataclass(frozen=True)
class Upstream:
    """A routed service and how the gateway host reaches it."""

    node: str
    workload: str
    """The workload's name on its node."""
    port: int
    """The service's port on its node."""
    url: str
    """Where the gateway host reaches it (loopback, a tunnel's local port, or the node's address)."""


@dataclasses.dataclass(frozen=True)
class Server:
    """One workload serving a model the gateway names: an Ollama listing the tag, or an OpenAI-speaking
    server (a vLLM, TGI or llama.cpp preset, or a container of the stack's own) answering to the name."""

    node: str
    workload: str

    def workload_spec(self, spec: EstateSpec) -> BaseWorkload:
        return spec.nodes[self.node].workloads[self.workload]


def servers(spec: EstateSpec, model: str) -> List[Server]:
    """Every workload serving ``model``, in spec order."""
    out = []
    for name, node in spec.nodes.items():
        for wname, w in node.workloads.items():
            if model in w.served_models():
                out.append(Server(name, wname))
    return out


def serving_endpoints(spec: EstateSpec, model: str) -> List[str]:
    """The serverless endpoints answering to ``model``, in spec order."""
    return [name for name, e in spec.serverless.items() if e.model_name == model]


def serving_services(spec: EstateSpec, model: str) -> List[str]:
    """The hosted model services (Fly.io, Cloud Run) answering to ``model``, in spec order."""
    return [name for name, s in spec.services.items() if s.model_name == model]


def served_off_nodes(spec: EstateSpec, model: str) -> bool:
    """Whether something other than a node answers to ``model`` (a serverless endpoint or a hosted service),
    so it is served while its nodes are stopped."""
    return bool(serving_endpoints(spec, model) or serving_services(spec, model))


def serving_nodes(spec: EstateSpec, model: str) -> List[str]:
    """The nodes serving ``model``, in spec order."""
    return list(dict.fromkeys(s.node for s in servers(spec, model)))


def needed_ports(spec: EstateSpec) -> Dict[str, List[int]]:
    """Node -> the ports of it the gateway host reaches: Ollama for aliased models, routed services,
    declared tunnels."""
    g = spec.gateway
    need: Dict[str, List[int]] = {}

    def add(node: str, port: int) -> None:
        if port not in need.setdefault(node, []):
            need[node].append(port)

    if g is not None:
        for model in g.aliases.values():
            for server in servers(spec, model):
                add(server.node, spec.nodes[server.node].serving_port(server.workload))
    for route in spec.routes.values():
        add(route.node, spec.nodes[route.node].port(route.workload))
    for t in spec.tunnels:
        for p in t.ports:
            add(t.node, p)
    return need


def tunnel_plan(spec: EstateSpec) -> Dict[str, Tuple[Forward, ...]]:
    """Node -> the SSH forwards the gateway host keeps to it (nodes needing none are left out)."""
    if spec.gateway is None:
        return {}
    used = {spec.gateway.port}
    host = spec.nodes[spec.gateway.node]
    used |= {host.port(k) for k in host.workloads}
    plan: Dict[str, List[Forward]] = {}
    needed = needed_ports(spec)
    for node in spec.nodes:  # spec order keeps the allocation stable
        if node == spec.gateway.node or node not in needed or spec.nodes[node].access is Access.DIRECT:
            continue
        for remote in needed[node]:
            local = remote
            while local in used:
                local += 1
            used.add(local)
            plan.setdefault(node, []).append(Forward(node, remote, local))
    return {n: tuple(f) for n, f in plan.items()}


def unknown_address(node: str) -> str:
    """What a URL says for a directly reached node whose address is not known until `pulumi up`."""
    return f"address-of-{node}-known-after-up"


@dataclasses.dataclass(frozen=True)
class Wake:
    """How the gateway wakes an alias whose serving nodes may all be stopped by their idle watchers."""

    nodes: Tuple[str, ...]
    """The nodes serving it (every one ``power: idle`` on a marketplace), tried in spec order."""
    timeout: float
    """The alias's timeout: how long a request waits for a node to wake."""
    fallbacks: bool
    """Whether the alias falls back: the request then goes on at once while the node wakes."""


def wake_plan(spec: EstateSpec) -> Dict[str, Wake]:
    """Alias -> how to wake it, for every alias served only by nodes that may be idle-stopped
    (``power: idle``, rented on TensorDock, Vast.ai or RunPod) and by no serverless endpoint."""
    g = spec.gateway
    if g is None:
        return {}
    out = {}
    for alias, model in g.aliases.items():
        nodes = [n for n in serving_nodes(spec, model) if spec.nodes[n].power.serves]
        wakeable = all(spec.nodes[n].power is PowerState.IDLE and spec.nodes[n].provider.is_marketplace for n in nodes)
        if nodes and wakeable and not served_off_nodes(spec, model):
            out[alias] = Wake(tuple(nodes), float(g.timeout(alias)), bool(g.fallbacks.get(alias)))
    return out


def unknown_serverless_base(endpoint: str) -> str:
    """What the gateway's config says for a serverless endpoint RunPod has not given an id yet."""
    return f"https://api.runpod.ai/v2/id-of-{endpoint}-known-after-up/openai/v1"


def unknown_service_url(service: str) -> str:
    """What the gateway's config says for a hosted service whose URL is not known until `pulumi up`."""
    return f"https://url-of-{service}-known-after-up"


@dataclasses.dataclass(frozen=True)
class EstatePlan:
    """What the estate derives from its spec, computed once by ``plan_estate``."""

    spec: EstateSpec
    estimate: pricing.EstateEstimate
    requests: Dict[str, pricing.NodeRequest]
    """Placement request of every node that is rented (marketplace and cloud VMs)."""
    tunnels: Dict[str, Tuple[Forward, ...]]
    serving: Dict[str, Tuple[Server, ...]]
    """Model (Ollama tag or served model name) -> the workloads serving it, for every model an alias names."""
    upstreams: Dict[str, Upstream]
    """Public hostname -> the routed service."""
    endpoints: Dict[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Model -> the serverless endpoints answering to it, for every model an alias names."""
    wake: Dict[str, Wake] = dataclasses.field(default_factory=dict)
    """Alias -> how the gateway wakes it (aliases served only by idle-stoppable nodes)."""
    services: Dict[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Model -> the hosted model services answering to it, for every model an alias names."""

    @property
    def service_estimates(self) -> Dict[str, "pricing.ServiceEstimate"]:
        return {s.service: s for s in self.estimate.services}

    @property
    def endpoint_estimates(self) -> Dict[str, pricing.EndpointEstimate]:
        return {e.endpoint: e for e in self.estimate.endpoints}

    @property
    def estimates(self) -> Dict[str, pricing.NodeEstimate]:
        return {e.node: e for e in self.estimate.nodes}

    def service_url(self, node: str, port: int, endpoints: Optional[Mapping[str, Endpoint]] = None) -> str:
        """How the gateway host reaches ``port`` of ``node``; ``endpoints`` gives the addresses of nodes
        reached directly once they are known, and (a local gateway) the forwards of its own to nodes reached
        over SSH, whose local ports are picked when they start."""
        spec = self.spec
        if spec.gateway is not None and node == spec.gateway.node:
            return f"http://127.0.0.1:{port}"
        if spec.nodes[node].access is Access.DIRECT or node in (endpoints or {}):
            address, ports = (endpoints or {}).get(node, (None, {}))
            return f"http://{address or unknown_address(node)}:{(ports or {}).get(str(port), port)}"
        for fwd in self.tunnels.get(node, ()):
            if fwd.remote == port:
                return f"http://127.0.0.1:{fwd.local}"
        raise ValueError(f"the gateway has no way to reach port {port} of node {node!r}")


def plan_estate(spec: EstateSpec) -> EstatePlan:
    """The plan of a spec that passed ``core.rules.check_estate``."""
    tunnels = tunnel_plan(spec)
    requests = {name: pricing.node_request(node) for name, node in spec.nodes.items()
                if node.provider is not Vendor.HOST}
    models = spec.gateway.aliases.values() if spec.gateway else ()
    serving = {model: tuple(servers(spec, model)) for model in models}
    endpoints = {model: tuple(serving_endpoints(spec, model)) for model in models}
    plan = EstatePlan(spec=spec, estimate=pricing.estimate_estate(spec), requests=requests, tunnels=tunnels,
                      serving=serving, upstreams={}, endpoints=endpoints, wake=wake_plan(spec),
                      services={model: tuple(serving_services(spec, model)) for model in models})
    if spec.gateway is not None:
        upstreams = {}
        for host, route in spec.routes.items():
            port = spec.nodes[route.node].port(route.workload)
            if spec.nodes[route.node].workloads[route.workload].on_gateway_host and route.node == spec.gateway.node:
                port = spec.gateway.port  # the gateway itself: where it listens, whatever the workload says
            upstreams[host] = Upstream(route.node, route.workload, port, plan.service_url(route.node, port))
        plan = dataclasses.replace(plan, upstreams=upstreams)
    return plan
