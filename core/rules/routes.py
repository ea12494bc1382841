"""Route and edge rules: hostnames inside the zone, routes to deployed services, model servers never
without auth, Access with people to let in, basic auth only where Caddy does it, the edge on the
gateway host."""
from __future__ import annotations

from typing import List

from core.errors import Problem
from core.spec import NAMESPACE, AuthMode, EdgeMode, EstateSpec


def check(spec: EstateSpec) -> List[Problem]:
    problems: List[Problem] = []
    ns = NAMESPACE
    for host, route in spec.routes.items():
        rpath = f"{ns}:routes.{host}"
        if spec.edge is None:
            problems.append((rpath, f"routes need {ns}:edge (zone, account, domain)"))
        elif not (host == spec.edge.domain or host.endswith("." + spec.edge.domain)):
            problems.append((rpath, f"hostname is outside the zone's domain {spec.edge.domain!r}"))
        node = spec.nodes.get(route.node)
        if node is None or route.workload not in node.workloads:
            problems.append((f"{rpath}.service", f"no node runs {route.service!r}"))
        elif node.info(route.workload).model_server and route.auth is AuthMode.NONE:
            kind = node.workloads[route.workload].kind.value
            what = route.workload if kind == route.workload else f"{route.workload} ({kind})"
            problems.append((f"{rpath}.auth", f"{what} must not be published without auth (got 'none')"))
        if spec.edge is not None and route.auth is AuthMode.ACCESS and not spec.edge.allowed_emails:
            problems.append((f"{ns}:edge.allowed_emails", f"route {host!r} uses access auth: list who may pass"))
        if (spec.edge is not None and route.auth is AuthMode.ACCESS and spec.edge.mode is EdgeMode.CLOUDFLARE_TUNNEL
                and not spec.edge.team_name):
            problems.append((f"{ns}:edge.team_name", f"route {host!r} uses access auth: name the Zero Trust team "
                                                     "(<team>.cloudflareaccess.com) so the connector checks the "
                                                     "Access token at the origin (got none)"))
        if spec.edge is not None and route.auth is AuthMode.BASIC and spec.edge.mode is not EdgeMode.CADDY:
            problems.append((f"{rpath}.auth", "basic auth is done by Caddy: set edge.mode to 'caddy' or use 'access'"))

    if spec.edge is not None and spec.edge.proxy_node and spec.edge.proxy_node not in spec.nodes:
        problems.append((f"{ns}:edge.proxy_node", f"no node {spec.edge.proxy_node!r}"))
    if spec.edge is not None and spec.edge.proxy_node and spec.gateway and spec.edge.proxy_node != spec.gateway.node:
        problems.append((f"{ns}:edge.proxy_node", f"the edge runs on the gateway host {spec.gateway.node!r} "
                                                  f"(got {spec.edge.proxy_node!r})"))
    if spec.routes and spec.gateway is None:
        problems.append((f"{ns}:routes", f"routes are served from the gateway host: set {ns}:gateway"))
    return problems
