"""The estate: every node, bucket, model, gateway and route of one stack, wired from its plan."""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional

import pulumi

from components import services, workloads
from components.edge import Edge, EdgeArgs
from components.gateway import CONFIG_DIR, SPEND_DIR, SPEND_JOBS
from components.gateway_host import Gateway, GatewayArgs
from components.node import GpuNode, GpuNodeArgs
from components.storage import ModelBucket, ModelBucketArgs
from core import pricing, spend
from core.jobs import WATCH_DIR
from components.stack import SSH_PRIVATE_KEY, Stack
from core.demand import node_disk_demand, node_ram_demand, node_vram_demand
from core.errors import ConfigError
from core.spec import NAMESPACE, EdgeMode, EstateSpec
from core.stamps import endpoint_stamp, image_stamps
from core.text import digest
from core.topology import EstatePlan
from providers import own_models
from providers.model_files import ModelFile, ModelFileArgs
from providers.model_files import resource_name as files_resource_name
from providers.ollama import OllamaModel, OllamaModelArgs, resource_name
from providers.runpod_serverless import EndpointInputs, ServerlessEndpoint, ServerlessEndpointArgs, TemplateInputs
from providers.local import replace_text
from providers.ssh_forward import ForwardError, read_file, write_file

TYPE = "gpu-estate:index:Estate"

# Output keys, shared with tests and the cost diff tool.
OUTPUT_NODES = "nodes"
OUTPUT_COST = "cost"
OUTPUT_CAPACITY = "capacity"
OUTPUT_URLS = "urls"
OUTPUT_BUCKETS = "buckets"
OUTPUT_GATEWAY = "gateway"
OUTPUT_MASTER_KEY = "gateway_master_key"
OUTPUT_SERVERLESS = "serverless"


@dataclasses.dataclass(frozen=True)
class EstateArgs:
    stack: Stack
    """The checked spec, its plan and its secrets (``components.stack.load_stack``)."""


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


def url_map(plan: EstatePlan) -> List[Dict[str, object]]:
    """Hostname -> node, container, port, auth and how the edge reaches it (seed 000, A203)."""
    spec = plan.spec
    rows = []
    for host, route in spec.routes.items():
        auth = {"access": "cloudflare-access", "basic": "caddy-basic-auth"}.get(route.auth.value, "none")
        if spec.edge is not None and spec.edge.mode is EdgeMode.CADDY:
            auth = "caddy-basic-auth"  # Caddy puts basic auth in front of every site
        upstream = plan.upstreams.get(host)
        rows.append({"url": f"https://{host}{route.path if route.path != '/' else ''}", "node": route.node,
                     "container": route.workload, "port": spec.nodes[route.node].port(route.workload),
                     "auth": auth, "via": upstream.url if upstream else ""})
    return rows


def gateway_state_dir(stack: Stack) -> Path:
    """Where a local gateway keeps its config, log, pid and the spend watcher's ledger."""
    return Path.cwd() / ".estate" / stack.stack / "gateway"


class SpendPlace:
    """Where the spend watcher keeps its ledger, as the program reaches it: beside a local gateway, or over
    SSH on a gateway host the stack gives an address (a machine the operator owns), verifying its pinned
    host key. ``None`` from ``at`` when the program cannot reach it (a rented gateway host)."""

    def __init__(self, stack: Stack, ssh: Optional[tuple] = None, host_key: Optional[str] = None):
        self.stack = stack
        self.ssh = ssh
        """(address, port, user, private key) of a gateway host; None beside a local gateway."""
        self.host_key = host_key

    @classmethod
    def at(cls, stack: Stack) -> Optional["SpendPlace"]:
        g = stack.spec.gateway
        if stack.spec.spend is None or g is None:
            return None
        if g.deploy == "local":
            return cls(stack)
        host = stack.spec.nodes[g.node]
        key = pulumi.Config(NAMESPACE).get(SSH_PRIVATE_KEY) or os.environ.get("ESTATE_SSH_PRIVATE_KEY")
        if not host.address or not key:
            pulumi.log.warn(f"spend: the ledger on {g.node} is not read before `up` (it needs the node's "
                            f"address and the key {NAMESPACE}:{SSH_PRIVATE_KEY}); the watcher there still "
                            "stops nodes over the budget")
            return None
        return cls(stack, (host.address, host.ssh.port, host.ssh.user, key), host.ssh.host_key)

    def _known_hosts(self) -> str:
        known = Path.cwd() / ".estate" / self.stack.stack / "known_hosts"
        known.parent.mkdir(parents=True, exist_ok=True)
        return str(known)

    def read(self, name: str) -> Optional[str]:
        if self.ssh is None:
            try:
                return (gateway_state_dir(self.stack) / name).read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
        return read_file(*self.ssh, f"{SPEND_DIR}/{name}", self._known_hosts(), host_key=self.host_key)

    def write(self, name: str, text: str) -> None:
        if self.ssh is None:
            replace_text(gateway_state_dir(self.stack) / name, text)
            return
        write_file(*self.ssh, f"{SPEND_DIR}/{name}", text, self._known_hosts(), host_key=self.host_key)


def check_spend(stack: Stack) -> None:
    """Before any resource: refuse an `up` that would start pay-per-use nodes in a month the spend watcher
    found over the budget (``core.spend.refusal``); on an `up` that goes on (not a preview), tell the
    watcher which month the operator resumed, before any node starts, so it does not stop them again. A
    ledger that cannot be reached is reported: the watcher on the gateway host keeps stopping the nodes."""
    place = SpendPlace.at(stack)
    if place is None:
        return
    try:
        text = place.read(spend.LEDGER_FILE)
        ledger = json.loads(text) if text else None
    except (OSError, ValueError, ForwardError) as err:
        pulumi.log.warn(f"spend: cannot read the spend ledger ({err}); `up` goes on without it")
        return
    refused = spend.refusal(stack.spec, ledger, time.time())
    if refused:
        raise ConfigError([(spend.RESUME_KEY, refused)])
    if not pulumi.runtime.is_dry_run():
        try:
            place.write(spend.RESUME_FILE, (stack.spec.spend.resume_month or "") + "\n")
        except (OSError, ForwardError) as err:
            pulumi.log.warn(f"spend: cannot tell the watcher the resumed month ({err})")


class Estate(pulumi.ComponentResource):
    nodes: Dict[str, GpuNode]
    cost: Dict[str, object]
    capacity: List[Dict[str, object]]
    urls: List[Dict[str, object]]

    def __init__(self, name: str, args: EstateArgs, opts: Optional[pulumi.ResourceOptions] = None):
        stack = args.stack
        spec, plan = stack.spec, stack.plan
        estimate = plan.estimate
        # Before anything is registered: a month over its budget starts no node unless the operator says so.
        check_spend(stack)
        # And the versions the registry's aliases name now, so an alias that names nothing rents nothing.
        # A bucket at an endpoint of its own is read with the access key in its config secrets: read here, in
        # the program's memory only (the model's source names the secrets, never their values).
        config = pulumi.Config(NAMESPACE)
        keys = {f"{NAMESPACE}:{n}": v for b in spec.storage.values() for n in b.secret_names if (v := config.get(n))}
        self.model_sources = own_models.sources(spec, stack.project, stack.stack, keys)
        # Registered before any node, so the policy pack can refuse an estate over budget before anything
        # is rented, even on `up --skip-preview`, where stack policies only run after the resources.
        super().__init__(TYPE, name, {"stamps": {"monthly_usd": round(estimate.monthly_usd, 2),
                                                 "fixed_monthly_usd": round(estimate.fixed_monthly_usd, 2),
                                                 "nodes": len(spec.nodes),
                                                 "endpoints": len(spec.serverless),
                                                 "services": len(spec.services),
                                                 **image_stamps(estimate)}}, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.buckets = self._create_buckets(stack, child)
        proxy_node = None
        if spec.edge is not None and spec.edge.mode is EdgeMode.CADDY:
            proxy_node = spec.edge.proxy_node or (spec.gateway.node if spec.gateway else None)
        estimates = plan.estimates
        self.nodes = {}
        for node_name, node in spec.nodes.items():
            names = sorted({n for w in node.workloads.values() for n in w.secret_env})
            self.nodes[node_name] = GpuNode(node_name, GpuNodeArgs(
                spec=node,
                label=f"{stack.project}-{stack.stack}-{node_name}",
                estimate=estimates[node_name],
                request=plan.requests.get(node_name),
                open_ports=(80, 443) if node_name == proxy_node else (),
                bucket_access={b: mb.access[node_name] for b, mb in self.buckets.items() if node_name in mb.access},
                secret_env={n: stack.secrets.env[n] for n in names},
                ssh_private_key=stack.secrets.ssh_private_key,
                # The gateway host deployed over SSH is reached whatever its own access says.
                reached_over_ssh=spec.gateway_over_ssh(node_name),
            ), child)
        self.models = self._model_library(spec)
        self.files = self._model_files(spec)
        self.serverless = self._create_serverless(stack, child)
        self.services = self._create_services(stack, child)
        # The bearers the services' providers made, for the gateway's env file.
        self.service_keys = {s.gateway_key_env(n): self.services[n].api_key for n, s in spec.services.items()
                             if self.services[n].api_key is not None}
        # The key files of the accounts the gateway invokes services checking an ID token as (secrets).
        self.service_identities = {n: self.services[n].identity for n in spec.services
                                   if self.services[n].identity is not None}
        self.gateway: Optional[Gateway] = None
        self.edge: Optional[Edge] = None
        if spec.gateway is not None:
            if spec.gateway.deploy != "local" and spec.edge is not None and spec.routes:
                self.edge = Edge("edge", EdgeArgs(plan=plan, proxy_address=self.nodes[spec.gateway.node].address),
                                 child)
            self.gateway = Gateway("gateway", GatewayArgs(
                plan=plan, nodes=self.nodes, secrets=stack.secrets, service_keys=self.service_keys,
                service_identities=self.service_identities,
                state_dir=str(gateway_state_dir(stack)),
                edge_units=self.edge.units if self.edge else None,
                edge_secrets=self.edge.secrets if self.edge else {},
                serverless={n: e.openai_base for n, e in self.serverless.items()},
                services={n: s.url for n, s in self.services.items()},
                ready=[*self.models.values(), *self.serverless.values(), *(s.resource for s in self.services.values())],
            ), child)
        # After the gateway: a job's machine is rented only once the spend watcher that releases it runs.
        self.jobs = self._create_jobs(stack, child)
        self.cost = pricing.cost_table(estimate, spec.budget.monthly_usd)
        self.capacity = capacity_table(spec)
        self.urls = url_map(plan)
        # Cost, capacity and URLs are the stack's exports (__main__.py), not copied into the component's
        # outputs: the checkpoint, written whole after every step, carried them twice.

    def _create_buckets(self, stack: Stack, opts: pulumi.ResourceOptions) -> Dict[str, ModelBucket]:
        """Each bucket, with credentials for its readers and for the MLflow nodes whose artifacts it holds."""
        spec = stack.spec
        readers: Dict[str, List[str]] = {b: list(bucket.readers) for b, bucket in spec.storage.items()}
        for name, job in spec.jobs.items():
            readers[job.bucket].append(f"job-{name}")  # each job its own credentials (its outputs, status, log)
        for node_name, node in spec.nodes.items():
            for w in node.workloads.values():
                for bucket in w.buckets_used():
                    if node_name not in readers[bucket]:
                        readers[bucket].append(node_name)
        return {
            b: ModelBucket(b, ModelBucketArgs(spec=bucket, project=stack.project, stack=stack.stack,
                                              readers=tuple(readers[b]), credentials=tuple(
                                                  stack.secrets.env[n] for n in bucket.secret_names) or None), opts)
            for b, bucket in spec.storage.items()
        }

    def _create_jobs(self, stack: Stack, opts: pulumi.ResourceOptions) -> Dict[str, "GpuJob"]:
        """One GPU job per ``jobs`` entry: its machine rented and its runner started, not waited for."""
        from components.jobs import GpuJob, GpuJobArgs

        # Each job's watch entry goes where the spend watcher beside the gateway reads it (core.jobs.WATCH_DIR).
        g = stack.spec.gateway
        local = g is not None and g.deploy == "local"
        watch_dir = (str(gateway_state_dir(stack) / WATCH_DIR) if local
                     else f"{CONFIG_DIR}/{SPEND_JOBS}" if g is not None else None)
        watch_host = self.nodes[g.node] if g is not None and not local else None
        return {name: GpuJob(name, GpuJobArgs(
            spec=job, project=stack.project, stack=stack.stack, bucket=stack.spec.storage[job.bucket],
            bucket_name=self.buckets[job.bucket].bucket_name, bucket_access=self.buckets[job.bucket].access[f"job-{name}"],
            secret_env={n: stack.secrets.env[n] for n in job.secret_env}, ssh_private_key=stack.secrets.ssh_private_key,
            watch_dir=watch_dir, watch_host=watch_host, watcher=self.gateway.watcher if self.gateway else None,
        ), opts) for name, job in stack.spec.jobs.items()}

    def _create_serverless(self, stack: Stack, opts: pulumi.ResourceOptions) -> Dict[str, ServerlessEndpoint]:
        """One RunPod template and endpoint per ``serverless`` entry, stamped with its cost."""
        out = {}
        estimates = stack.plan.endpoint_estimates
        for name, e in stack.spec.serverless.items():
            out[name] = ServerlessEndpoint(f"serverless-{name}", ServerlessEndpointArgs(
                name=f"{stack.project}-{stack.stack}-{name}",
                template=TemplateInputs(image=e.image, container_disk_gb=e.container_disk_gb, env=e.template_env(),
                                        docker_args=" ".join(e.args)),
                endpoint=EndpointInputs(gpu_ids=e.gpu_ids, gpu_count=e.gpu_count, locations=",".join(e.regions),
                                        idle_timeout=e.idle_timeout_seconds, scaler_type=e.scaler,
                                        scaler_value=e.scaler_value, workers_min=e.workers.min,
                                        workers_max=e.workers.max, flashboot=e.flashboot),
                stamps=endpoint_stamp(name, e, estimates[name]),
            ), opts)
        return out

    def _create_services(self, stack: Stack, opts: pulumi.ResourceOptions) -> Dict[str, services.Service]:
        """Each hosted model service from its provider's builder (``components/services``), stamped with its cost."""
        estimates = stack.plan.service_estimates
        return {name: services.build(services.ServiceRequest(
            name=name, label=f"{stack.project}-{stack.stack}-{name}", spec=s, estimate=estimates[name],
            stamp=s.stamp(name, estimates[name]), opts=opts, buckets=self.buckets,
        )) for name, s in stack.spec.services.items()}

    def service_outputs(self) -> Dict[str, pulumi.Output]:
        """Each hosted model service's URL."""
        return {name: s.url for name, s in self.services.items()}

    def _model_library(self, spec: EstateSpec) -> Dict[str, OllamaModel]:
        """One Ollama model resource per (node, tag): editing a model list pulls or removes exactly those."""
        models = {}
        for node_name, node in spec.nodes.items():
            gpu_node = self.nodes[node_name]
            for wname, w in node.workloads.items():
                own = w.own_models()
                target = gpu_node.service_target(wname) if w.pulled_models() or own else {}
                for tag in w.pulled_models() + list(own):
                    name = resource_name(node_name, tag)
                    waiting = (self.model_sources.get((node_name, tag)) or {}).get("waiting")
                    if waiting:
                        pulumi.log.warn(f"{node_name}: {tag} waits: {waiting}; the first `up` after it succeeded "
                                        f"makes it (a {tag} made before stays as it is)")
                    models[name] = OllamaModel(name, OllamaModelArgs(
                        node=node_name, model=tag, **target, active=node.power.serves,
                        insecure=w.insecure_pull(tag), source=self.model_sources.get((node_name, tag)),
                        cache=w.cache_of(tag),
                        # What the policy pack's VRAM check adds up per node; a model's own figures only, so
                        # editing one tag of a list leaves the others' inputs as they are.
                        stamps={"node": node_name, "model_vram_gb": w.model_vram_gb(tag),
                                "vram_gb": node.gpu.vram_gb if node.gpu else 0,
                                "max_loaded": w.max_resident or 0},
                    ), pulumi.ResourceOptions(parent=gpu_node, depends_on=gpu_node.workloads_ready,
                                              deleted_with=gpu_node.gone_with))
        return models

    def _model_files(self, spec: EstateSpec) -> Dict[str, ModelFile]:
        """One resource per (node, workload, file) its workloads load from disk (ComfyUI's checkpoints): editing
        the list downloads or deletes exactly those, and never touches the machine. Each is made once the
        node's workloads and secrets are delivered (a gated file's token is read from them on the node) and is
        deleted with the machine, so destroying or replacing it never connects to it for its files."""
        files = {}
        for node_name, node in spec.nodes.items():
            wanted = workloads.node_files(node)
            if not wanted:
                continue
            gpu_node = self.nodes[node_name]
            target = gpu_node.files_target()
            for f in wanted:
                name = files_resource_name(node_name, f.workload, f.file.kind, f.file.name)
                files[name] = ModelFile(name, ModelFileArgs(
                    node=node_name, workload=f.workload, path=f.path, url=f.file.url, sha256=f.file.sha256,
                    size_gb=f.file.size_gb, ssh=target, token_file=f.token_file, instance=gpu_node.machine_id,
                    active=node.power.serves,
                ), gpu_node.on_machine(pulumi.ResourceOptions(parent=gpu_node), gpu_node.workloads_ready))
        return files

    def gateway_outputs(self) -> Dict[str, object]:
        """Where clients reach the gateway, its tunnels and the hash of the config it runs."""
        if self.gateway is None:
            return {}
        g = self.gateway
        out = {"url": g.url, "tunnels": g.tunnels, "config_sha256": g.config.apply(digest)}
        if getattr(g, "status_url", None) is not None:
            out["status_url"] = g.status_url  # the health agent's status view (on the gateway host's loopback)
        return out

    def serverless_outputs(self) -> Dict[str, pulumi.Output]:
        """Each serverless endpoint's RunPod ids and OpenAI route."""
        return {name: pulumi.Output.all(endpoint_id=e.endpoint_id, template_id=e.template_id,
                                        openai_base=e.openai_base)
                for name, e in self.serverless.items()}

    def node_outputs(self) -> Dict[str, pulumi.Output]:
        return {
            name: pulumi.Output.all(
                address=n.address, ssh_host=n.ssh_host, ssh_port=n.ssh_port, ports=n.ports,
                hourly_price=n.hourly_price, monthly_estimate=n.monthly_estimate,
            )
            for name, n in self.nodes.items()
        }
