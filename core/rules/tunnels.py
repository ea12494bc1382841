"""Tunnel rules: tunnels start on the gateway host and forward ports a node really serves."""
from __future__ import annotations

from typing import List

from core.errors import Problem
from core.spec import NAMESPACE, EstateSpec


def check(spec: EstateSpec) -> List[Problem]:
    problems: List[Problem] = []
    for i, t in enumerate(spec.tunnels):
        tpath = f"{NAMESPACE}:tunnels[{i}]"
        if spec.gateway is None:
            problems.append((tpath, f"tunnels start on the gateway host: set {NAMESPACE}:gateway"))
        if t.node not in spec.nodes:
            problems.append((f"{tpath}.node", f"no node {t.node!r} in {NAMESPACE}:nodes"))
        else:
            node_ports = {p for k in spec.nodes[t.node].workloads
                          for p in (spec.nodes[t.node].port(k), spec.nodes[t.node].serving_port(k))}
            for j, p in enumerate(t.ports):
                if p not in node_ports:
                    problems.append((f"{tpath}.ports[{j}]", f"node {t.node!r} runs nothing on port {p}"))
    return problems
