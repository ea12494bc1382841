"""Gateway rules: the node it runs on, aliases served by some node, fallbacks and timeouts naming known
models, where a local gateway may run, and that every alias and route can be reached."""
from __future__ import annotations

from typing import List

from core.errors import Problem
from core.identity import needs_proxy
from core.rules.ports import reserved_ports
from core.spec import NAMESPACE, Access, EstateSpec
from core.vendors import Vendor
from core.topology import served_off_nodes, servers, serving_nodes


def check(spec: EstateSpec) -> List[Problem]:
    problems: List[Problem] = []
    g = spec.gateway
    if g is None:
        if spec.health is not None:
            problems.append((f"{NAMESPACE}:health", "the health agent runs beside the gateway and checks what it "
                                                    f"routes to: set {NAMESPACE}:gateway.node (got no gateway)"))
        return problems
    if spec.health is not None and spec.health.port == g.port:
        problems.append((f"{NAMESPACE}:health.port", f"LiteLLM listens on {g.port} (gateway.port): give the "
                                                     f"health agent another port (got {spec.health.port})"))
    elif spec.health is not None and g.node in spec.nodes and g.deploy != "local":
        host = spec.nodes[g.node]
        taken = [w for w in host.workloads if not host.workloads[w].on_gateway_host and host.port(w) == spec.health.port]
        if taken:
            problems.append((f"{NAMESPACE}:health.port", f"{', '.join(taken)} already listens on {spec.health.port} on the "
                                                         f"gateway host {g.node!r}: give the health agent another port "
                                                         f"(got {spec.health.port})"))
    problems += _identity_port(spec)
    problems += _backend_ports(spec)
    gpath = f"{NAMESPACE}:gateway"
    if g.node not in spec.nodes:
        problems.append((f"{gpath}.node", f"no node {g.node!r} in {NAMESPACE}:nodes"))
    external_names = {m for ext in g.external.values() for m in ext.models}
    for alias, tag in g.aliases.items():
        if not serving_nodes(spec, tag) and not served_off_nodes(spec, tag):
            problems.append((f"{gpath}.aliases.{alias}", f"no node serves {tag!r}: no ollama lists it, no ComfyUI has "
                                                         f"it in its workflows and no model server, serverless "
                                                         f"endpoint or service answers to it (got {tag!r})"))
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
    problems += _image_or_chat(spec, gpath)
    for alias in g.timeouts:
        if alias != "default" and alias not in known:
            problems.append((f"{gpath}.timeouts.{alias}", f"unknown alias {alias!r}"))
    host = spec.nodes.get(g.node)
    if g.deploy == "local":
        if host is not None and (host.provider is not Vendor.HOST or host.address not in ("127.0.0.1", "localhost")):
            problems.append((f"{gpath}.deploy", f"local runs LiteLLM on this machine: node {g.node!r} must be "
                                                "provider 'host' with address 127.0.0.1 (got 'local')"))
        # It reaches nodes over SSH through forwards of its own (providers.local_tunnel), but publishes nothing.
        if spec.routes:
            problems.append((f"{gpath}.deploy", "local publishes no routes: routes need deploy 'ssh' (got 'local')"))
    elif g.port == 0:
        problems.append((f"{gpath}.port", "a free port is only picked for deploy 'local' (got 0)"))
    return problems


def _image_or_chat(spec: EstateSpec, gpath: str) -> List[Problem]:
    """An alias answers OpenAI's images API or its chat API, never both: every workload serving its model
    says the same, and it falls back only to aliases of its own sort (external models may be either)."""
    g = spec.gateway
    images = {}
    problems: List[Problem] = []
    for alias, model in g.aliases.items():
        sorts = {(s.node, s.workload): s.workload_spec(spec).serves_images(model) for s in servers(spec, model)}
        if len(set(sorts.values())) > 1:
            said = ", ".join(f"{n}/{w} ({'images' if i else 'chat'})" for (n, w), i in sorts.items())
            problems.append((f"{gpath}.aliases.{alias}", f"{model!r} is an image workflow on some nodes and a chat "
                                                          f"model on others: {said}; an alias is one or the other "
                                                          f"(got {model!r})"))
        elif sorts:
            images[alias] = next(iter(sorts.values()))
    for alias, chain in g.fallbacks.items():
        for i, target in enumerate(chain):
            if alias in images and target in images and images[alias] != images[target]:
                sort = lambda a: "an image alias" if images[a] else "a chat alias"  # noqa: E731
                problems.append((f"{gpath}.fallbacks.{alias}[{i}]", f"{alias} is {sort(alias)} and {target} is "
                                                                     f"{sort(target)}: it cannot answer for it "
                                                                     f"(got {target!r})"))
    return problems


def check_reachable(spec: EstateSpec) -> List[Problem]:
    """Every alias has a running node or a fallback; the gateway reaches every node it routes to."""
    problems: List[Problem] = []
    g = spec.gateway
    if g is None or g.node not in spec.nodes:
        return problems
    for alias, tag in g.aliases.items():
        nodes = serving_nodes(spec, tag)
        running = [n for n in nodes if spec.nodes[n].power.serves]
        if nodes and not running and not g.fallbacks.get(alias) and not served_off_nodes(spec, tag):
            problems.append((f"{NAMESPACE}:gateway.aliases.{alias}",
                             f"every node serving {tag!r} is stopped ({', '.join(nodes)}) and the alias has no "
                             "fallback"))
    if not any(w.on_gateway_host for w in spec.nodes[g.node].workloads.values()):
        problems.append((f"{NAMESPACE}:gateway.node", f"node {g.node!r} does not run the litellm workload"))
    for host, route in spec.routes.items():
        if route.node != g.node and spec.nodes[route.node].access is Access.DIRECT:
            problems.append((f"{NAMESPACE}:routes.{host}.service",
                             f"node {route.node!r} has access 'direct': the edge only reaches nodes through the "
                             "gateway's SSH tunnels"))
    return problems


def _backend_ports(spec: EstateSpec) -> List[Problem]:
    """LiteLLM's two instances behind the front (``gateway.backend_ports``) need two ports of their own on the
    gateway host: neither the front's, the health agent's, the identity proxy's, SSH's nor a workload's."""
    g = spec.gateway
    if g.deploy == "local" or g.node not in spec.nodes:
        return []
    host = spec.nodes[g.node]
    taken = {**{host.port(w): f"workload {w}" for w in host.workloads if not host.workloads[w].on_gateway_host},
             **reserved_ports(spec, g.node)}
    if spec.health is not None:
        taken[spec.health.port] = f"the health agent (health.port {spec.health.port})"
    if needs_proxy(spec.services):
        taken[g.identity_port] = f"the identity proxy (gateway.identity_port {g.identity_port})"
    blue, green = g.backend_ports
    if blue == green:
        return [(f"{NAMESPACE}:gateway.backend_ports", f"LiteLLM's two instances need two ports (got {blue} twice)")]
    for port in (blue, green):
        if port in taken:
            return [(f"{NAMESPACE}:gateway.backend_ports",
                     f"{taken[port]} already listens on {port} on the gateway host {g.node!r}: give LiteLLM's "
                     f"instances other ports (got {[blue, green]})")]
    return []


def _identity_port(spec: EstateSpec) -> List[Problem]:
    """The identity proxy (``core.identity``) runs on the gateway host when a service checks an ID token:
    its port may be neither LiteLLM's, the health agent's, SSH's nor a workload's there."""
    g = spec.gateway
    if not needs_proxy(spec.services) or g.deploy == "local" or g.node not in spec.nodes:
        return []
    host = spec.nodes[g.node]
    taken = {**{host.port(w): f"workload {w}" for w in host.workloads if not host.workloads[w].on_gateway_host},
             **reserved_ports(spec, g.node)}
    if spec.health is not None:
        taken[spec.health.port] = f"the health agent (health.port {spec.health.port})"
    if g.identity_port in taken:
        return [(f"{NAMESPACE}:gateway.identity_port",
                 f"{taken[g.identity_port]} already listens on {g.identity_port} on the gateway host {g.node!r}: give "
                 f"the identity proxy of {', '.join(sorted(needs_proxy(spec.services)))} another port "
                 f"(got {g.identity_port})")]
    return []
