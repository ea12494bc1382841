"""The estate: every node, bucket and route of one stack, wired from the parsed spec."""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import pulumi

from components import catalog, pricing
from components.node import GpuNode, GpuNodeArgs
from components.spec import EstateSpec, PowerState, WorkloadKind, node_disk_demand, node_ram_demand, node_vram_demand
from components.storage import ModelBucket, ModelBucketArgs

TYPE = "gpu-estate:index:Estate"

# Output keys, shared with tests and the cost diff tool.
OUTPUT_NODES = "nodes"
OUTPUT_COST = "cost"
OUTPUT_CAPACITY = "capacity"
OUTPUT_URLS = "urls"
OUTPUT_BUCKETS = "buckets"
OUTPUT_GATEWAY = "gateway"
OUTPUT_MASTER_KEY = "gateway_master_key"


@dataclasses.dataclass(frozen=True)
class EstateArgs:
    spec: EstateSpec
    project: str
    stack: str


def _pct(free: float, cap: float) -> int:
    return int(round(100 * free / cap)) if cap else 0


def capacity_table(spec: EstateSpec) -> List[Dict[str, object]]:
    """Per-node capacity, allocation and headroom (seed 000, A201)."""
    rows = []
    for name, node in spec.nodes.items():
        vram_cap = node.gpu.vram_gb if node.gpu else 0
        for resource, cap, alloc in (
            ("ram_gb", node.ram_gb, node_ram_demand(node)),
            ("vram_gb", vram_cap, node_vram_demand(node)),
            ("disk_gb", node.disk_gb, node_disk_demand(node)),
        ):
            if not cap:
                continue
            head = _pct(cap - alloc, cap)
            rows.append({
                "node": name, "resource": resource, "capacity": cap, "allocated": round(alloc, 1),
                "free": round(cap - alloc, 1), "headroom_pct": head,
                "status": "FULL" if head <= 5 else "TIGHT" if head < 25 else "OK",
            })
    return rows


class Estate(pulumi.ComponentResource):
    nodes: Dict[str, GpuNode]

    def __init__(self, name: str, args: EstateArgs, opts: Optional[pulumi.ResourceOptions] = None):
        spec = args.spec
        estimate = pricing.estimate_estate(spec)
        # Registered before any node, so the policy pack can refuse an estate over budget before anything
        # is rented, even on `up --skip-preview`, where stack policies only run after the resources.
        super().__init__(TYPE, name, {"stamps": {"monthly_usd": round(estimate.monthly_usd, 2),
                                                 "fixed_monthly_usd": round(estimate.fixed_monthly_usd, 2),
                                                 "nodes": len(spec.nodes)}}, opts)
        self._gateway_port = spec.gateway.port if spec.gateway else None
        self.estimate = estimate
        estimates = {e.node: e for e in self.estimate.nodes}
        proxy_node = None
        if spec.edge is not None and spec.edge.mode.value == "caddy":
            proxy_node = spec.edge.proxy_node or (spec.gateway.node if spec.gateway else None)
        readers: Dict[str, List[str]] = {b: list(bucket.readers) for b, bucket in spec.storage.items()}
        for node_name, node in spec.nodes.items():
            mlflow = node.workloads.get(WorkloadKind.MLFLOW)
            if mlflow and mlflow.artifact_bucket and node_name not in readers[mlflow.artifact_bucket]:
                readers[mlflow.artifact_bucket].append(node_name)
        self.buckets = {
            b: ModelBucket(b, ModelBucketArgs(spec=bucket, project=args.project, stack=args.stack,
                                              readers=tuple(readers[b])),
                           pulumi.ResourceOptions(parent=self))
            for b, bucket in spec.storage.items()
        }
        self.nodes = {}
        for node_name, node in spec.nodes.items():
            self.nodes[node_name] = GpuNode(node_name, GpuNodeArgs(
                spec=node,
                label=f"{args.project}-{args.stack}-{node_name}",
                estimate=estimates[node_name],
                open_ports=(80, 443) if node_name == proxy_node else (),
                bucket_access={b: mb.access[node_name] for b, mb in self.buckets.items() if node_name in mb.access},
            ), pulumi.ResourceOptions(parent=self))
        self.models = self._model_library(spec)
        self.gateway = self.edge = None
        if spec.gateway is not None and spec.gateway.deploy == "local":
            self.gateway = self._local_gateway(spec, args)
        elif spec.gateway is not None:
            from components.edge import Edge
            from components.gateway_host import GatewayHost

            if spec.edge is not None and spec.routes:
                self.edge = Edge("edge", spec, self.nodes[spec.gateway.node].address,
                                 pulumi.ResourceOptions(parent=self))
            self.gateway = GatewayHost(
                "gateway", spec, self.nodes, extra_units=self.edge.units if self.edge else None,
                extra_secrets=self.edge.secrets if self.edge else None, opts=pulumi.ResourceOptions(parent=self))
        self.cost = pricing.cost_table(self.estimate, spec.budget.monthly_usd)
        self.capacity = capacity_table(spec)
        self.urls = self._url_map(spec)
        self.register_outputs({OUTPUT_COST: self.cost, OUTPUT_CAPACITY: self.capacity, OUTPUT_URLS: self.urls})

    def _local_gateway(self, spec: EstateSpec, args: EstateArgs) -> "LocalGateway":
        from pathlib import Path

        from components.gateway_host import render_outputs
        from providers.local_gateway import LocalGateway

        state_dir = Path.cwd() / ".estate" / args.stack / "gateway"
        gateway = LocalGateway("gateway", {
            "config": render_outputs(spec, self.nodes).apply(lambda r: r[0]),
            "port": spec.gateway.port, "state_dir": str(state_dir),
        }, pulumi.ResourceOptions(parent=self, depends_on=list(self.models.values())))
        gateway.tunnels = {}
        return gateway

    def _model_library(self, spec: EstateSpec) -> Dict[str, "OllamaModel"]:
        """One Ollama model resource per (node, tag): editing a model list pulls or removes exactly those."""
        from providers.ollama import OllamaModel, resource_name

        models = {}
        for node_name, node in spec.nodes.items():
            ollama = node.workloads.get(WorkloadKind.OLLAMA)
            if ollama is None:
                continue
            gpu_node = self.nodes[node_name]
            target = gpu_node.service_target(WorkloadKind.OLLAMA)
            for tag in ollama.models:
                name = resource_name(node_name, tag)
                models[name] = OllamaModel(name, {
                    "node": node_name, "model": tag, **target, "active": node.power is PowerState.RUNNING,
                    # What the policy pack's VRAM check adds up per node; a model's own figures only, so
                    # editing one tag of a list leaves the others' inputs as they are.
                    "stamps": {"node": node_name, "model_vram_gb": catalog.ollama_model(tag)["vram_gb"],
                               "vram_gb": node.gpu.vram_gb if node.gpu else 0,
                               "max_loaded": ollama.max_loaded or 0},
                }, pulumi.ResourceOptions(parent=gpu_node, depends_on=gpu_node.workloads_ready))
        return models

    @staticmethod
    def _url_map(spec: EstateSpec) -> List[Dict[str, object]]:
        """Hostname -> node, container, port, auth and how the edge reaches it (seed 000, A203)."""
        from components.gateway_host import route_upstreams

        upstreams = route_upstreams(spec) if spec.gateway is not None else {}
        rows = []
        for host, route in spec.routes.items():
            node_name, _, wname = route.service.partition("/")
            kind = WorkloadKind(wname)
            auth = {"access": "cloudflare-access", "basic": "caddy-basic-auth"}.get(route.auth.value, "none")
            if spec.edge is not None and spec.edge.mode.value == "caddy":
                auth = "caddy-basic-auth"  # Caddy puts basic auth in front of every site
            rows.append({"url": f"https://{host}{route.path if route.path != '/' else ''}", "node": node_name,
                         "container": wname, "port": spec.nodes[node_name].port(kind), "auth": auth,
                         "via": upstreams.get(host, "")})
        return rows

    def gateway_outputs(self) -> Dict[str, object]:
        """Where clients reach the gateway, its tunnels and the hash of the config it runs."""
        from components.workloads import digest

        if self.gateway is None:
            return {}
        g = self.gateway
        url = getattr(g, "url", None) or f"http://127.0.0.1:{self._gateway_port}"
        return {"url": url, "tunnels": g.tunnels,
                "config_sha256": g.config.apply(digest)}

    def node_outputs(self) -> Dict[str, pulumi.Output]:
        return {
            name: pulumi.Output.all(
                address=n.address, ssh_host=n.ssh_host, ssh_port=n.ssh_port, ports=n.ports,
                hourly_price=n.hourly_price, monthly_estimate=n.monthly_estimate,
            )
            for name, n in self.nodes.items()
        }
