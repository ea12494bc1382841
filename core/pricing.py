"""Placement and cost: the one place that turns a node request and offers into a price.

Pure functions only: no I/O beyond the dated tables in assets/, no Pulumi. ``choose_offer`` picks the
cheapest offer that meets every constraint of a request (ties broken deterministically), and the
``estimate_*`` functions give the hourly and monthly figures that outputs, the cost report and the policy
pack read. The dynamic providers feed live offers to the same ``choose_offer``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from pydantic import BaseModel, ConfigDict, Field

from core import catalog
from core.services import ServiceEstimate
from core.spec import HOURS_IN_MONTH, EstateSpec, Market, NodeSpec, ServerlessSpec
from core.vendors import SERVERLESS_PROVIDER, Vendor
from core.workloads.base import image_usd


class PlacementError(ValueError):
    """No offer meets the request. ``reasons`` counts why the offers were rejected."""

    def __init__(self, message: str, reasons: Optional[Dict[str, int]] = None):
        self.reasons = dict(reasons or {})
        super().__init__(message)


class NodeRequest(BaseModel):
    """What a node needs from an offer. Built from a NodeSpec; serialisable into a dynamic resource."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_model: str
    gpu_count: int = Field(1, ge=1)
    min_vram_gb: int = 0
    vcpu: int = 1
    ram_gb: int = 1
    disk_gb: int = 10
    regions: Tuple[str, ...] = ()
    spot: bool = False
    max_price_per_hour: Optional[float] = None
    min_reliability: Optional[float] = None


class Offer(BaseModel):
    """One rentable configuration as a provider lists it, normalised."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    provider: str
    offer_id: str
    region: str = ""
    gpu_model: str
    gpu_count: int
    vram_gb: int = 0
    """Total VRAM across the offer's GPUs."""
    vcpu: int = 0
    ram_gb: int = 0
    disk_gb: int = 0
    price_per_hour: float
    """Price for the whole request (GPUs, CPU, RAM, disk) at the request's market."""
    reliability: Optional[float] = None
    spot: bool = False
    min_bid: Optional[float] = None


def _region_rank(request: NodeRequest, region: str) -> Optional[int]:
    if not request.regions:
        return 0
    r = region.lower()
    for i, wanted in enumerate(request.regions):
        w = wanted.lower()
        if r == w or r.startswith(w) or r.endswith(w) or w in r.split(", "):
            return i
    return None


def _rejection(request: NodeRequest, offer: Offer) -> Optional[str]:
    if offer.gpu_model != request.gpu_model:
        return "gpu model"
    if offer.gpu_count < request.gpu_count:
        return "gpu count"
    if offer.vram_gb and offer.vram_gb < request.min_vram_gb:
        return "vram"
    if offer.vcpu and offer.vcpu < request.vcpu:
        return "vcpu"
    if offer.ram_gb and offer.ram_gb < request.ram_gb:
        return "ram"
    if offer.disk_gb and offer.disk_gb < request.disk_gb:
        return "disk"
    if offer.spot != request.spot:
        return "market"
    if request.max_price_per_hour is not None and offer.price_per_hour > request.max_price_per_hour + 1e-9:
        return "price"
    if request.min_reliability is not None and (offer.reliability or 0.0) < request.min_reliability:
        return "reliability"
    if _region_rank(request, offer.region) is None:
        return "region"
    return None


def rank_offers(request: NodeRequest, offers: Iterable[Offer]) -> List[Offer]:
    """Offers that meet every constraint, best first.

    Order: price, then the request's region preference, then higher reliability, then offer id, so the
    same offers always give the same choice.
    """
    fits = [o for o in offers if _rejection(request, o) is None]
    return sorted(
        fits,
        key=lambda o: (
            round(o.price_per_hour, 6),
            _region_rank(request, o.region) or 0,
            -(o.reliability or 0.0),
            o.provider,
            o.offer_id,
        ),
    )


def choose_offer(request: NodeRequest, offers: Sequence[Offer]) -> Offer:
    """The cheapest offer that meets every constraint; PlacementError says why none did."""
    ranked = rank_offers(request, offers)
    if ranked:
        return ranked[0]
    reasons: Dict[str, int] = {}
    for o in offers:
        why = _rejection(request, o) or "unknown"
        reasons[why] = reasons.get(why, 0) + 1
    detail = ", ".join(f"{n} by {why}" for why, n in sorted(reasons.items())) or "no offers listed"
    raise PlacementError(
        f"no offer for {request.gpu_count}x {request.gpu_model}"
        + (f" in {'/'.join(request.regions)}" if request.regions else "")
        + (f" under ${request.max_price_per_hour}/h" if request.max_price_per_hour else "")
        + f" ({len(offers)} offers: {detail})",
        reasons,
    )


@dataclasses.dataclass(frozen=True)
class NodeEstimate:
    node: str
    provider: str
    gpu: str
    hourly_usd: float
    hours_per_month: float
    basis: str
    """Where the hourly figure comes from: ``ceiling`` (the node's max $/h), ``reference <date>``,
    ``instance <type>`` or ``owned``."""
    instance_type: Optional[str] = None

    @property
    def monthly_usd(self) -> float:
        return round(self.hourly_usd * self.hours_per_month, 2)

    @property
    def daily_usd(self) -> float:
        """What the node costs on a day it runs around the clock."""
        return round(self.hourly_usd * 24, 2)


@dataclasses.dataclass(frozen=True)
class EndpointEstimate:
    """What a serverless endpoint costs: flex workers per second while they run, active ones all month.

    Priced at the dearest of its pools (RunPod may start a worker on any of them)."""

    endpoint: str
    pool: str
    """The dearest pool, whose rates the figures use."""
    gpu_count: int
    worker_hourly_usd: float
    """One flex worker (all its GPUs) for an hour."""
    active_hourly_usd: float
    """One active worker for an hour (the lower rate RunPod bills ``workers.min`` at)."""
    min_workers: int
    max_workers: int
    busy_hours_per_month: float

    @property
    def monthly_usd(self) -> float:
        return round(self.min_workers * self.active_hourly_usd * HOURS_IN_MONTH
                     + self.busy_hours_per_month * self.worker_hourly_usd, 2)

    @property
    def burst_hourly_usd(self) -> float:
        """Every worker busy at once: the most an hour of the endpoint can cost."""
        return round(self.max_workers * self.worker_hourly_usd, 4)

    @property
    def equivalent_hours(self) -> float:
        """Hours a month of one flex worker that cost what the endpoint is planned to: how it reads as a
        node (``hourly_usd`` x ``hours_per_month``) in the stamps, the cost table and the cost diff."""
        return round(self.monthly_usd / self.worker_hourly_usd, 2) if self.worker_hourly_usd else 0.0


@dataclasses.dataclass(frozen=True)
class ImageEstimate:
    """What one image of an image alias costs on one node serving it."""

    alias: str
    node: str
    workflow: str
    seconds_per_image: float
    usd_per_image: float


@dataclasses.dataclass(frozen=True)
class EstateEstimate:
    nodes: Tuple[NodeEstimate, ...]
    fixed_monthly_usd: float
    endpoints: Tuple[EndpointEstimate, ...] = ()
    images: Tuple[ImageEstimate, ...] = ()
    """Image aliases priced per image (within the nodes' hours, so not added to the month)."""
    services: Tuple[ServiceEstimate, ...] = ()
    jobs: Tuple[NodeEstimate, ...] = ()
    """Each GPU job at its cap (``estimate_job``): the most it may cost, counted in the month."""

    @property
    def monthly_usd(self) -> float:
        return round(sum(n.monthly_usd for n in (*self.nodes, *self.jobs)) + sum(e.monthly_usd for e in self.endpoints)
                     + sum(s.monthly_usd for s in self.services) + self.fixed_monthly_usd, 2)


def node_request(node: NodeSpec) -> NodeRequest:
    """The placement request of a NodeSpec (marketplace or cloud VM)."""
    gpu = node.gpu
    return NodeRequest(
        gpu_model=gpu.model,
        gpu_count=gpu.count,
        min_vram_gb=gpu.vram_gb,
        vcpu=node.vcpu,
        ram_gb=node.ram_gb,
        disk_gb=node.disk_gb,
        regions=tuple(node.regions),
        spot=node.market is Market.SPOT,
        max_price_per_hour=node.price_cap,
        min_reliability=node.min_reliability,
    )


def cloud_offers(cloud: str, request: NodeRequest) -> List[Offer]:
    """AWS/GCP instance types from the dated tables, as offers at the request's market."""
    offers = []
    for itype, row in catalog.instance_types(cloud).items():
        offers.append(Offer(
            provider=cloud,
            offer_id=itype,
            region=request.regions[0] if request.regions else "",
            gpu_model=row["gpu"],
            gpu_count=row["gpu_count"],
            vram_gb=catalog.gpu_vram_gb(row["gpu"]) * row["gpu_count"],
            vcpu=row["vcpu"],
            ram_gb=row["ram_gb"],
            price_per_hour=row["spot" if request.spot else "on_demand"],
            spot=request.spot,
        ))
    return offers


def choose_instance_type(cloud: str, request: NodeRequest, pinned: Optional[str] = None) -> Offer:
    offers = cloud_offers(cloud, request)
    if pinned:
        offers = [o for o in offers if o.offer_id == pinned]
        if not offers:
            raise PlacementError(f"unknown {cloud} instance type {pinned!r}; see assets/prices/{cloud}.json")
    return choose_offer(request, offers)


def estimate_node(name: str, node: NodeSpec) -> NodeEstimate:
    """The hourly price the estate plans with for one node.

    Marketplace nodes are priced before any offer is seen: at their ``max_price_per_hour`` when set
    (the most the node may ever cost, since placement refuses dearer offers), otherwise at the dated
    reference price. Cloud VMs use the instance type placement picks from the dated table.
    """
    provider = node.provider.value
    hours = node.hours_per_month
    if node.provider is Vendor.HOST:
        return NodeEstimate(name, provider, node.gpu.model if node.gpu else "-", 0.0, hours, "owned")
    request = node_request(node)
    gpu = f"{node.gpu.count}x {catalog.gpu_display(node.gpu.model)}"
    if node.provider in (Vendor.AWS, Vendor.GCP):
        offer = choose_instance_type(provider, request, node.instance_type)
        return NodeEstimate(name, provider, gpu, offer.price_per_hour, hours, f"instance {offer.offer_id}",
                            instance_type=offer.offer_id)
    if node.price_cap is not None:
        return NodeEstimate(name, provider, gpu, node.price_cap, hours, "ceiling")
    candidates = [provider] + [p.value for p in node.failover]
    prices = [
        catalog.reference_gpu_hourly(p, node.gpu.model, request.spot) for p in candidates
    ]
    known = [p for p in prices if p is not None]
    if not known:
        raise PlacementError(
            f"{'/'.join(candidates)} list no {node.gpu.model}; set max_price_per_hour or pick another GPU"
        )
    # The dearest candidate: failover may land on any of them.
    return NodeEstimate(name, provider, gpu, round(max(known) * node.gpu.count, 4), hours,
                        f"reference {catalog.prices_as_of()}")


def estimate_endpoint(name: str, endpoint: ServerlessSpec) -> EndpointEstimate:
    """The price the estate plans with for one serverless endpoint, from the dated per-second rates."""
    pools = catalog.serverless_pools()
    pool = max(endpoint.gpu_pools, key=lambda p: (pools[p]["flex_per_second"], p))
    rates = pools[pool]
    per_hour = 3600 * endpoint.gpu_count
    return EndpointEstimate(
        endpoint=name, pool=pool, gpu_count=endpoint.gpu_count,
        worker_hourly_usd=round(rates["flex_per_second"] * per_hour, 4),
        active_hourly_usd=round(rates["active_per_second"] * per_hour, 4),
        min_workers=endpoint.workers.min, max_workers=endpoint.workers.max,
        busy_hours_per_month=endpoint.busy_hours_per_month)


def estimate_estate(spec: EstateSpec) -> EstateEstimate:
    nodes = tuple(estimate_node(name, node) for name, node in spec.nodes.items())
    endpoints = tuple(estimate_endpoint(name, e) for name, e in spec.serverless.items())
    services = tuple(s.estimate(name) for name, s in spec.services.items())
    fixed = sum(b.monthly_usd for b in spec.storage.values())
    hourly = {n.node: n.hourly_usd for n in nodes}
    images = tuple(
        ImageEstimate(alias, name, model, seconds, image_usd(hourly[name], seconds))
        for alias, model in (spec.gateway.aliases.items() if spec.gateway else ())
        for name, node in spec.nodes.items() for w in node.workloads.values()
        if (seconds := w.image_seconds(model)) is not None)
    return EstateEstimate(nodes, round(fixed, 2), endpoints, images=images, services=services,
                          jobs=job_estimates(spec))


def estimate_job(name: str, job: Any) -> NodeEstimate:
    """A GPU job's line in the month (``core.jobs.JobSpec``): its machine's $/h (its price cap, else the
    reference price) for the hours its cap buys, so its ``monthly_usd`` is the most it may cost."""
    node = estimate_node(f"job:{name}", job.machine)
    cap = job.cap_usd(node.hourly_usd) if node.hourly_usd else job.max_usd
    hours = math.floor(cap / node.hourly_usd * 10000) / 10000 if node.hourly_usd else job.max_hours
    return NodeEstimate(f"job:{name}", node.provider, node.gpu, node.hourly_usd, hours, f"job cap ({node.basis})")


def job_estimates(spec: EstateSpec) -> Tuple[NodeEstimate, ...]:
    """Each job's line at its cap."""
    return tuple(estimate_job(name, job) for name, job in spec.jobs.items())


def cost_table(estimate: EstateEstimate, budget_monthly: float) -> Dict[str, object]:
    """The cost report exported by the stack and read by the PR cost diff."""
    rows = [
        {
            "node": n.node,
            "provider": n.provider,
            "gpu": n.gpu,
            "hourly_usd": n.hourly_usd,
            "hours_per_month": n.hours_per_month,
            "monthly_usd": n.monthly_usd,
            "basis": n.basis,
        }
        for n in (*estimate.nodes, *estimate.jobs)
    ] + [
        {
            "node": e.endpoint,
            "provider": SERVERLESS_PROVIDER,
            "gpu": f"{e.gpu_count}x {e.pool}",
            "hourly_usd": e.worker_hourly_usd,
            "hours_per_month": e.equivalent_hours,
            "monthly_usd": e.monthly_usd,
            "basis": f"serverless {e.min_workers}-{e.max_workers} workers, {e.busy_hours_per_month:g} busy h, "
                     f"reference {catalog.serverless_prices_as_of()}",
        }
        for e in estimate.endpoints
    ] + [
        {
            "node": s.service,
            "provider": s.provider,
            "gpu": s.size,
            "hourly_usd": s.instance_hourly_usd,
            "hours_per_month": s.equivalent_hours,
            "monthly_usd": s.monthly_usd,
            "basis": s.basis,
        }
        for s in estimate.services
    ]
    images = {"images": [dataclasses.asdict(i) for i in estimate.images]} if estimate.images else {}
    return {
        "nodes": rows,
        **images,
        "fixed_monthly_usd": estimate.fixed_monthly_usd,
        "total_monthly_usd": estimate.monthly_usd,
        "budget_monthly_usd": budget_monthly,
        "prices_as_of": catalog.prices_as_of(),
    }
