"""Rules that span several keys of a stack, one module per concern.

``check_estate`` runs them in order and returns every broken rule as ``(key path, message)``: nodes
(workloads, fit, placement), ports the node itself listens on, serverless endpoints, gateway (aliases, fallbacks,
deploy), tunnels, routes and edge, storage and budget; before them all, that every number is finite and not
negative. Each node and serverless endpoint is priced once here; the rules that need the figure share it.
"""
from __future__ import annotations

from typing import Dict, List, Union

from core import pricing
from core.errors import Problem
from core.rules import budget, gateway, jobs, nodes, numbers, ports, routes, serverless, services, storage, tunnels
from core.spec import EstateSpec

Estimates = Dict[str, Union[pricing.NodeEstimate, pricing.PlacementError]]


def node_estimates(spec: EstateSpec) -> Estimates:
    """Each node's planned price, or why it cannot be placed."""
    out: Estimates = {}
    for name, node in spec.nodes.items():
        try:
            out[name] = pricing.estimate_node(name, node)
        except pricing.PlacementError as err:
            out[name] = err
    return out


def check_estate(spec: EstateSpec) -> List[Problem]:
    # A non-finite or negative figure is refused before any rule computes with it.
    problems = numbers.check(spec)
    if problems:
        return problems
    estimates = node_estimates(spec)
    endpoints = {name: pricing.estimate_endpoint(name, e) for name, e in spec.serverless.items()}
    problems += nodes.check(spec, estimates)
    problems += ports.check(spec)
    problems += serverless.check(spec, endpoints)
    problems += services.check(spec)
    problems += gateway.check(spec)
    problems += tunnels.check(spec)
    problems += routes.check(spec)
    if not problems:
        problems += gateway.check_reachable(spec)
    problems += storage.check(spec)
    problems += jobs.check(spec) + jobs.check_released(spec) + jobs.check_sources(spec)
    problems += budget.check(spec, estimates,
                             placed=not any(p for p in problems if p[0].endswith(".gpu")))
    return problems
