"""The LiteLLM gateway, derived from the estate: what it routes, how it reaches each node, and its files.

Everything here is plain data from the spec plus the endpoints of nodes reached directly, so the same
functions serve the program (inside an ``apply``), the ``scripts/gateway_config.py`` command (no engine,
addresses not known yet) and the tests (loopback endpoints).

- ``tunnel_plan``: which remote ports the gateway host forwards from which node, and to which local
  port. Nodes the gateway needs (they serve an alias or a route) get a forward for exactly those ports,
  plus any listed under ``tunnels``; the gateway's own node and nodes with ``access: direct`` need none.
  Local ports keep the remote number where free and take the next free one otherwise (seed 002:
  11434, then 11435 for a second Ollama).
- ``litellm_config``: one model_list entry per (alias, node serving its tag), so an alias served by
  several nodes is load-balanced; external models with ``os.environ/`` key references; fallbacks in the
  spec's order; per-alias timeouts; ``input_cost_per_second`` from the node's hourly price; the master
  key as ``os.environ/LITELLM_MASTER_KEY``. No secret value is ever part of the document.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Tuple

import yaml

from components import workloads
from components.spec import Access, EstateSpec, PowerState, WorkloadKind

MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
CONFIG_DIR = "/etc/estate/gateway"
DOCKER = "/usr/bin/docker"


@dataclasses.dataclass(frozen=True)
class Forward:
    node: str
    remote: int
    local: int


Endpoint = Tuple[Optional[str], Mapping[str, int]]
"""(address, service port -> mapped port) of a node reached directly; address None until it is up."""


def _needed_ports(spec: EstateSpec) -> Dict[str, List[int]]:
    g = spec.gateway
    need: Dict[str, List[int]] = {}

    def add(node: str, port: int) -> None:
        if port not in need.setdefault(node, []):
            need[node].append(port)

    if g is not None:
        for tag in g.aliases.values():
            for node in serving_nodes(spec, tag):
                add(node, spec.nodes[node].port(WorkloadKind.OLLAMA))
    for route in spec.routes.values():
        node, _, wname = route.service.partition("/")
        add(node, spec.nodes[node].port(WorkloadKind(wname)))
    for t in spec.tunnels:
        for p in t.ports:
            add(t.node, p)
    return need


def tunnel_plan(spec: EstateSpec) -> Dict[str, List[Forward]]:
    """Node -> the SSH forwards the gateway host keeps to it (nodes needing none are left out)."""
    if spec.gateway is None:
        return {}
    used = {spec.gateway.port}
    host = spec.nodes[spec.gateway.node]
    used |= {host.port(k) for k in host.workloads}
    plan: Dict[str, List[Forward]] = {}
    needed = _needed_ports(spec)
    for node in spec.nodes:  # spec order keeps the allocation stable
        if node == spec.gateway.node or node not in needed or spec.nodes[node].access is Access.DIRECT:
            continue
        for remote in needed[node]:
            local = remote
            while local in used:
                local += 1
            used.add(local)
            plan.setdefault(node, []).append(Forward(node, remote, local))
    return plan


def serving_nodes(spec: EstateSpec, tag: str) -> List[str]:
    return [name for name, node in spec.nodes.items()
            if WorkloadKind.OLLAMA in node.workloads and tag in node.workloads[WorkloadKind.OLLAMA].models]


def unknown_address(node: str) -> str:
    """What an api_base says for a directly reached node whose address is not known until `pulumi up`."""
    return f"address-of-{node}-known-after-up"


def service_url(spec: EstateSpec, plan: Dict[str, List[Forward]], node: str, port: int,
                endpoints: Mapping[str, Endpoint]) -> str:
    """How the gateway host reaches ``port`` of ``node``."""
    if spec.gateway is not None and node == spec.gateway.node:
        return f"http://127.0.0.1:{port}"
    if spec.nodes[node].access is Access.DIRECT:
        address, ports = endpoints.get(node, (None, {}))
        return f"http://{address or unknown_address(node)}:{(ports or {}).get(str(port), port)}"
    for fwd in plan.get(node, []):
        if fwd.remote == port:
            return f"http://127.0.0.1:{fwd.local}"
    raise ValueError(f"the gateway has no way to reach port {port} of node {node!r}")


def litellm_config(spec: EstateSpec, endpoints: Mapping[str, Endpoint] = None,
                   hourly: Mapping[str, float] = None) -> Dict[str, object]:
    """The proxy's config document. ``hourly`` is each node's $/h (the estimate where not given)."""
    from components import pricing

    g = spec.gateway
    if g is None:
        raise ValueError("the stack has no gateway")
    endpoints = endpoints or {}
    estimates = {e.node: e.hourly_usd for e in pricing.estimate_estate(spec).nodes}
    hourly = {**estimates, **(hourly or {})}
    plan = tunnel_plan(spec)
    default_timeout = g.timeouts.get("default", 600)
    model_list: List[Dict[str, object]] = []
    for alias, tag in g.aliases.items():
        timeout = g.timeouts.get(alias, default_timeout)
        for node in serving_nodes(spec, tag):
            if spec.nodes[node].power is PowerState.STOPPED:
                continue
            params: Dict[str, object] = {
                "model": f"ollama_chat/{tag}",
                "api_base": service_url(spec, plan, node, spec.nodes[node].port(WorkloadKind.OLLAMA), endpoints),
                "timeout": timeout,
                "stream_timeout": timeout,
                "input_cost_per_second": hourly.get(node, 0.0) / 3600,
                "output_cost_per_second": 0,
            }
            model_list.append({"model_name": alias, "litellm_params": params,
                               "model_info": {"id": f"{alias}@{node}", "node": node}})
    for provider, ext in g.external.items():
        for name, model in ext.models.items():
            params = {"model": model, "api_key": f"os.environ/{ext.api_key_env}",
                      "timeout": g.timeouts.get(name, default_timeout)}
            if ext.api_base:
                params["api_base"] = ext.api_base
            model_list.append({"model_name": name, "litellm_params": params,
                               "model_info": {"id": f"{name}@{provider}"}})
    return {
        "model_list": model_list,
        "router_settings": {
            "routing_strategy": g.routing_strategy,
            "num_retries": g.num_retries,
            "timeout": default_timeout,
            "fallbacks": [{alias: list(chain)} for alias, chain in g.fallbacks.items()],
            "allowed_fails": 1,
            "cooldown_time": 30,
        },
        "litellm_settings": {"drop_params": True, "request_timeout": default_timeout},
        "general_settings": {"master_key": f"os.environ/{MASTER_KEY_ENV}"},
    }


def render_litellm_config(spec: EstateSpec, endpoints: Mapping[str, Endpoint] = None,
                          hourly: Mapping[str, float] = None) -> str:
    return yaml.safe_dump(litellm_config(spec, endpoints, hourly), sort_keys=False)


def check_reachable(spec: EstateSpec) -> List[Tuple[str, str]]:
    """Every alias has a running node or a fallback; the gateway reaches every node it routes to."""
    problems: List[Tuple[str, str]] = []
    g = spec.gateway
    if g is None or g.node not in spec.nodes:
        return problems
    for alias, tag in g.aliases.items():
        nodes = serving_nodes(spec, tag)
        running = [n for n in nodes if spec.nodes[n].power is PowerState.RUNNING]
        if nodes and not running and not g.fallbacks.get(alias):
            problems.append((f"gpu-estate:gateway.aliases.{alias}",
                             f"every node serving {tag!r} is stopped ({', '.join(nodes)}) and the alias has no "
                             "fallback"))
    if WorkloadKind.LITELLM not in spec.nodes[g.node].workloads:
        problems.append(("gpu-estate:gateway.node", f"node {g.node!r} does not run the litellm workload"))
    for host, route in spec.routes.items():
        node = route.service.partition("/")[0]
        if node != g.node and spec.nodes[node].access is Access.DIRECT:
            problems.append((f"gpu-estate:routes.{host}.service",
                             f"node {node!r} has access 'direct': the edge only reaches nodes through the "
                             "gateway's SSH tunnels"))
    return problems


def gateway_units(spec: EstateSpec, plan: Dict[str, List[Forward]], ssh: Mapping[str, Tuple[str, int, str]],
                  image: Optional[str] = None, docker: str = DOCKER) -> Dict[str, str]:
    """The systemd units of the gateway host: LiteLLM (a container on the host network, so the tunnels'
    loopback ports reach it) and one autossh unit per tunnelled node. ``ssh`` is node -> (host, port,
    user); a node whose address is not known yet gets a unit naming that in its host."""
    g = spec.gateway
    units = {"estate-litellm.service": workloads.render(
        "gateway/estate-litellm.service.j2", image=image or spec.nodes[g.node].image_for(WorkloadKind.LITELLM),
        port=g.port, config_dir=CONFIG_DIR, docker=docker,
        after=[f"estate-tunnel-{n}.service" for n in plan])}
    for node, forwards in plan.items():
        host, port, user = ssh.get(node) or (unknown_address(node), 22, spec.nodes[node].ssh.user)
        units[f"estate-tunnel-{node}.service"] = workloads.render(
            "gateway/estate-tunnel.service.j2", node=node, host=host or unknown_address(node), port=port,
            user=user, forwards=forwards, key=f"{CONFIG_DIR}/tunnel_key")
    return units
