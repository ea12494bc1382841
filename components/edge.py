"""Public hostnames: Cloudflare DNS, and either a Cloudflare tunnel with Access in front of every hostname
or Caddy with basic auth on the gateway host. Either way the connector runs on the gateway host and
reaches services through the gateway's own tunnels, so no node publishes a port to the internet.

``cloudflare-tunnel``: one remotely managed tunnel (its secret from pulumi-random), an ingress rule per
hostname ending in a 404 catch-all, a proxied CNAME per hostname to ``<tunnel>.cfargotunnel.com``, one
allow policy for ``edge.allowed_emails`` and an Access application per hostname whose route says
``auth: access``. The application covers the whole hostname (a route's ``path`` narrows what the
connector forwards, anchored at the start, never what Access protects), and the connector refuses any
request without that application's Access token (``originRequest.access``), so a request that reached the
tunnel some other way gets nothing. The connector token is a secret and goes to the host on a command's
stdin.

``caddy``: an A record per hostname to the proxy node, a Caddyfile with basic auth on every site (the
password from pulumi-random, only its bcrypt hash in the file), Caddy as a unit on the host.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, List, Optional

import pulumi

from components.gateway import CONFIG_DIR, DOCKER
from core.spec import AuthMode, EdgeMode, EstateSpec
from core.images import default_image
from core.templates import render
from core.topology import EstatePlan

TYPE = "gpu-estate:index:Edge"
CLOUDFLARED_IMAGE = default_image("cloudflared")
CADDY_IMAGE = default_image("caddy")
BASIC_AUTH_USER = "estate"


def ingress_rules(plan: EstatePlan, audiences: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """The tunnel's ingress: one rule per hostname (``path`` a regex cloudflared matches anywhere in the
    path, so anchored here), each Access route requiring its application's token (``audiences``: host ->
    the application's AUD tag)."""
    rules = []
    for host, route in plan.spec.routes.items():
        upstream = plan.upstreams[host].url
        # The service sees its own address as Host, never the client's.
        rule: Dict[str, Any] = {"hostname": host, "service": upstream,
                                "origin_request": {"http_host_header": upstream.removeprefix("http://")}}
        if is_gateway_route(plan.spec, host):
            rule["path"] = INFERENCE_PATHS  # the gateway's inference routes only
        elif route.path != "/":
            rule["path"] = "^" + re.escape(route.path)
        if audiences and host in audiences:
            rule["origin_request"]["access"] = {"required": True, "team_name": plan.spec.edge.team_name,
                                                "aud_tags": [audiences[host]]}
        status = status_upstream(plan.spec) if is_gateway_route(plan.spec, host) else None
        if status:  # the health agent's view under /estate/, behind the same Access application
            rules.append({"hostname": host, "path": STATUS_PATHS, "service": f"http://{status}",
                          "origin_request": {**rule["origin_request"], "http_host_header": status}})
        rules.append(rule)
    return rules + [{"service": "http_status:404"}]


# LiteLLM's inference routes, the only ones a gateway's public hostname forwards: its admin and management
# routes (/key, /user, /team, /spend, /ui, /mcp, /config, /model, /global, /organization, ...) stay on the
# gateway host. Anchored at both ends, for Caddy's path_regexp and cloudflared's ingress path alike.
INFERENCE_PATHS = (r"^/(v1/)?(chat/completions|completions|embeddings|models(/[A-Za-z0-9._:@/-]+)?|"
                   r"images/(generations|edits|variations)|audio/(speech|transcriptions|translations)|"
                   r"responses|moderations)$|^/health/(liveliness|readiness)$")


STATUS_PATHS = r"^/estate/(status|status\.json|metrics)$"
"""The health agent's status page, document and metrics under a gateway's hostname (it asks for the master
key itself, behind the edge's own auth)."""


def status_upstream(spec: EstateSpec) -> Optional[str]:
    """Where the health agent answers on the gateway host, when the stack runs it."""
    return f"127.0.0.1:{spec.health.port}" if spec.health is not None else None


def is_gateway_route(spec: EstateSpec, host: str) -> bool:
    route = spec.routes[host]
    return spec.nodes[route.node].workloads[route.workload].on_gateway_host


def render_caddyfile(plan: EstatePlan, password_hash: str) -> str:
    spec = plan.spec
    sites = [{"host": host, "user": BASIC_AUTH_USER, "hash": password_hash,
              "matcher": f"{route.path}* " if route.path != "/" else "",
              "upstream": plan.upstreams[host].url.removeprefix("http://"),
              "inference_only": is_gateway_route(spec, host),
              "status": status_upstream(spec) if is_gateway_route(spec, host) else None}
             for host, route in spec.routes.items()]
    email = (spec.edge.allowed_emails or [f"admin@{spec.edge.domain}"])[0]
    return render("gateway/Caddyfile.j2", sites=sites, email=email, inference_paths=INFERENCE_PATHS,
                  status_paths=STATUS_PATHS)


def route_comment(spec: EstateSpec, host: str) -> str:
    """What a hostname's DNS record says about the route, read by the policy pack."""
    route = spec.routes[host]
    auth = "basic" if spec.edge.mode is EdgeMode.CADDY else route.auth.value
    kind = spec.nodes[route.node].workloads[route.workload].kind.value
    # A workload named after its kind says no more; any other name says what it is.
    return f"gpu-estate route {route.service} auth={auth}" + ("" if kind == route.workload else f" kind={kind}")


@dataclasses.dataclass(frozen=True)
class EdgeArgs:
    plan: EstatePlan
    """The estate's plan: routes and how the gateway host reaches each."""
    proxy_address: pulumi.Input[Optional[str]] = None
    """caddy mode: the public address of the gateway host the A records point at."""


class Edge(pulumi.ComponentResource):
    units: pulumi.Output[Dict[str, str]]
    """Units the gateway host runs for the edge (the connector or Caddy)."""
    secrets: Dict[str, pulumi.Output]
    """Path on the gateway host -> secret file content."""
    hostnames: List[str]
    """Every public hostname the edge serves."""

    def __init__(self, name: str, args: EdgeArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE, name, None, opts)
        self.child = pulumi.ResourceOptions(parent=self)
        self.secrets = {}
        self.records: Dict[str, object] = {}
        self.applications: Dict[str, object] = {}
        self.hostnames = list(args.plan.spec.routes)
        if args.plan.spec.edge.mode is EdgeMode.CLOUDFLARE_TUNNEL:
            self._cloudflare_tunnel(name, args.plan)
        else:
            self._caddy(name, args.plan, args.proxy_address)
        self.register_outputs({"hostnames": self.hostnames, "units": self.units,
                               "records": {h: r.id for h, r in self.records.items()}})

    def _cloudflare_tunnel(self, name: str, plan: EstatePlan) -> None:
        import pulumi_cloudflare as cf
        import pulumi_random as random

        spec = plan.spec
        edge = spec.edge
        secret = random.RandomBytes(f"{name}-tunnel-secret", length=32, opts=self.child)
        self.tunnel = cf.ZeroTrustTunnelCloudflared(
            f"{name}-tunnel", account_id=edge.account_id, name=name, config_src="cloudflare",
            tunnel_secret=secret.base64, opts=self.child)
        target = self.tunnel.id.apply(lambda tid: f"{tid}.cfargotunnel.com")
        for host in spec.routes:
            self.records[host] = cf.DnsRecord(
                f"{name}-dns-{host}", zone_id=edge.zone_id, name=host, type="CNAME", content=target,
                proxied=True, ttl=1, comment=route_comment(spec, host), opts=self.child)
        access_routes = [h for h, r in spec.routes.items() if r.auth is AuthMode.ACCESS]
        if access_routes:
            self.policy = cf.ZeroTrustAccessPolicy(
                f"{name}-allow", account_id=edge.account_id, name=f"{name}: allowed people", decision="allow",
                includes=[{"email": {"email": e}} for e in edge.allowed_emails], session_duration="24h",
                opts=self.child)
            for host in access_routes:
                self.applications[host] = cf.ZeroTrustAccessApplication(
                    f"{name}-app-{host}", account_id=edge.account_id, name=host, type="self_hosted",
                    domain=host,
                    policies=[{"id": self.policy.id, "precedence": 1}], session_duration="24h",
                    app_launcher_visible=False, opts=self.child)
        audiences = {h: app.aud for h, app in self.applications.items()}
        self.tunnel_config = cf.ZeroTrustTunnelCloudflaredConfig(
            f"{name}-tunnel-config", account_id=edge.account_id, tunnel_id=self.tunnel.id,
            config=pulumi.Output.all(**audiences).apply(lambda aud: {"ingresses": ingress_rules(plan, aud)})
            if audiences else {"ingresses": ingress_rules(plan)}, opts=self.child)
        token = cf.get_zero_trust_tunnel_cloudflared_token_output(account_id=edge.account_id, tunnel_id=self.tunnel.id)
        self.secrets[f"{CONFIG_DIR}/cloudflared.env"] = pulumi.Output.secret(token.token).apply(
            lambda t: f"TUNNEL_TOKEN={t}\n")
        self.units = pulumi.Output.from_input({"estate-cloudflared.service": render(
            "gateway/estate-cloudflared.service.j2", config_dir=CONFIG_DIR, image=CLOUDFLARED_IMAGE,
            docker=DOCKER)})

    def _caddy(self, name: str, plan: EstatePlan, proxy_address: pulumi.Input[Optional[str]]) -> None:
        import pulumi_cloudflare as cf
        import pulumi_random as random

        spec = plan.spec
        edge = spec.edge
        self.password = random.RandomPassword(f"{name}-basic-auth", length=24, special=False, opts=self.child)
        for host in spec.routes:
            self.records[host] = cf.DnsRecord(
                f"{name}-dns-{host}", zone_id=edge.zone_id, name=host, type="A", content=proxy_address,
                proxied=False, ttl=300, comment=route_comment(spec, host), opts=self.child)
        # The bcrypt hash is not the password, but it is still kept secret in state.
        self.caddyfile = pulumi.Output.secret(self.password.bcrypt_hash).apply(lambda h: render_caddyfile(plan, h))
        self.secrets[f"{CONFIG_DIR}/Caddyfile"] = self.caddyfile
        self.units = pulumi.Output.from_input({"estate-caddy.service": render(
            "gateway/estate-caddy.service.j2", config_dir=CONFIG_DIR, image=CADDY_IMAGE, docker=DOCKER)})
