"""Ports a workload may not take on its node: what the node itself listens on.

Every node runs sshd on ``ssh.port`` (22 unless the stack says otherwise), the only thing open on a node
reached over SSH; the gateway's node runs LiteLLM on ``gateway.port``; in caddy mode the proxy node runs
Caddy on 80 and 443. A workload asking for one of them would fail to start, or worse, take the port
first and answer in its place (a container on 22 in front of the node's SSH).
"""
from __future__ import annotations

from typing import Dict, List

from core.errors import Problem
from core.spec import NAMESPACE, EdgeMode, EstateSpec

SSH_PORT = 22


def reserved_ports(spec: EstateSpec, node: str) -> Dict[int, str]:
    """Port -> what on the node listens there."""
    n = spec.nodes[node]
    out = {SSH_PORT: "the node's SSH", n.ssh.port: f"the node's SSH (ssh.port {n.ssh.port})"}
    if spec.gateway is not None and spec.gateway.node == node and spec.gateway.port:
        out[spec.gateway.port] = f"the gateway (gateway.port {spec.gateway.port})"
    if spec.edge is not None and spec.edge.mode is EdgeMode.CADDY and spec.routes:
        proxy = spec.edge.proxy_node or (spec.gateway.node if spec.gateway else None)
        if proxy == node:
            out.update({80: "Caddy (the edge's HTTP)", 443: "Caddy (the edge's HTTPS)"})
    return out


def check(spec: EstateSpec) -> List[Problem]:
    problems: List[Problem] = []
    for name, node in spec.nodes.items():
        reserved = reserved_ports(spec, name)
        for wname in node.workloads:
            if node.workloads[wname].on_gateway_host:
                continue  # the gateway itself
            port = node.port(wname)
            if port in reserved:
                problems.append((f"{NAMESPACE}:nodes.{name}.workloads.{wname}.port",
                                 f"{wname} would listen on port {port}, where {reserved[port]} listens on node "
                                 f"{name!r} (got port {port})"))
    g = spec.gateway
    if g is not None and g.port and g.node in spec.nodes and g.deploy != "local":
        ssh = spec.nodes[g.node].ssh.port
        if g.port in (SSH_PORT, ssh):
            problems.append((f"{NAMESPACE}:gateway.port", f"the gateway would listen on port {g.port}, where SSH "
                                                          f"listens on node {g.node!r} (got port {g.port})"))
    return problems
