"""The Pulumi dynamic provider for rented GPU instances on TensorDock, Vast.ai and RunPod.

One lifecycle for every marketplace (the backends sit behind ``providers.gpu_cloud.GpuCloud``):

- create looks for an instance carrying the node's label first and adopts it, so a create whose
  response was lost, or an earlier ``up`` that died, never rents a second machine. Otherwise it picks the
  cheapest live offer that meets the request (``core.pricing``), tries the next offer when one is
  taken, and fails over to the next cloud when one has no capacity; the final error lists what each said.
- read reports a deleted or preempted instance as gone, and the observed power state, so ``refresh``
  shows drift and the next ``up`` converges.
- update starts/stops in place (the disk stays) and changes a spot bid where the vendor allows it.
- delete is idempotent and verified: it returns only once the vendor no longer lists the instance as
  billing, and raises otherwise so the resource stays in state.

Credentials are read when a method runs, from the environment or from the provider's config
(``configure``), never from resource inputs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pulumi
from pulumi.dynamic import (
    CheckFailure, CheckResult, ConfigureRequest, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult,
)
from pydantic import ValidationError

from core.pricing import NodeRequest, Offer, PlacementError, choose_offer, rank_offers
from core.text import bare_key
from core.vendors import MARKETPLACE_CONFIG_KEYS, Vendor
from providers import gpu_cloud, status_watch
from providers.gpu_cloud import CLOUDS, GpuCloud, Instance, LaunchSpec, Status, env_seconds, machine_id
from providers.host_key import install_in_cloud_init
from providers.http import CloudError, LostResponse, NoCapacity, OfferTaken, Outbid
from providers.resource import DynamicResource

# Bump when the provider's behaviour changes so existing resources pick it up on the next up.
PROVIDER_VERSION = "1"


def _replaces(default: Any = dataclasses.MISSING) -> Any:
    """An input whose change replaces the machine."""
    return dataclasses.field(default=default, metadata={"replaces": True})


@dataclasses.dataclass(frozen=True)
class LaunchInputs:
    """What runs on the rented machine. Nothing here is secret: the vendor's API, console and host read it."""

    image: str
    disk_gb: int
    ports: List[int] = dataclasses.field(default_factory=list)
    env: Dict[str, str] = dataclasses.field(default_factory=dict)
    onstart: str = ""
    ssh_public_key: Optional[str] = None
    cloud_init: Optional[str] = None
    vcpu: int = 1
    ram_gb: int = 1
    args: Optional[List[str]] = None
    """A RunPod pod's command after its image's entrypoint (``dockerArgs``); absent from the inputs when
    there is none, so a machine launched before it existed keeps its inputs as they were."""

    def to_props(self) -> Dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if not (k == "args" and v is None)}


@dataclasses.dataclass(frozen=True)
class GpuInstanceArgs:
    """The inputs of ``pulumi-python:dynamic/gpu:Instance``: the one place their names are written."""

    label: pulumi.Input[str]
    """Deterministic name at the vendor (``<project>-<stack>-<node>``): the idempotency key."""
    clouds: List[str] = _replaces()
    """Marketplaces tried in order."""
    request: NodeRequest = _replaces()
    launch: LaunchInputs = _replaces()
    power: str = "running"
    """``running``, ``stopped``, or ``idle`` (its watcher may stop it; neither refresh nor update
    starts or stops it)."""
    bid_per_hour: Optional[float] = None
    stamps: Dict[str, Any] = dataclasses.field(default_factory=dict)
    """What the policy pack reads."""
    host_key: Optional[pulumi.Input[Dict[str, str]]] = None
    """A VM's SSH host key pair the program generated (``private``, ``public``; a secret), installed through
    its cloud-init when this resource creates the machine. It changes nothing on a running machine: a
    machine created without it (or adopted) keeps its own key, recorded on first contact."""
    secrets: Optional[pulumi.Input[Dict[str, Any]]] = _replaces(None)
    """Retired: states written before secrets moved out of vendor metadata hold the secret parts of the
    launch here (``cloud_init`` with secret files, ``env`` values). The program sends none now, so such a
    machine, whose vendor env or user-data holds those values, is replaced once, and preview names this
    key as the reason."""

    def to_props(self) -> Dict[str, Any]:
        return {"label": self.label, "clouds": list(self.clouds),
                "request": json.loads(self.request.model_dump_json()),
                "launch": self.launch.to_props(), "power": self.power,
                "bid_per_hour": self.bid_per_hour, "stamps": self.stamps, "secrets": self.secrets,
                "host_key": self.host_key}


POWER_VALUES = ("running", "stopped", "idle")
_ADOPTED: set = set()
"""``<cloud>:<id>`` of every instance a create adopted by label in this provider process (one `up`)."""
_ADOPTED_LOCK = threading.Lock()


_CLAIMED: Dict[Tuple[str, ...], set] = {}
"""Offer ids, by cloud account, that a create in this provider process is renting or has rented: nodes
placed at once each take a different offer instead of all launching on the cheapest and failing over
one by one (64 nodes at once made about 450 launch calls for 64 machines)."""
_CLAIMED_LOCK = threading.Lock()


def forget_adoptions() -> None:
    """Start over as a new provider process does (for callers that reuse one process across runs)."""
    with _ADOPTED_LOCK:
        _ADOPTED.clear()
    with _CLAIMED_LOCK:
        _CLAIMED.clear()


def _claimed(account: Optional[Tuple[str, ...]]) -> set:
    """The offers creates of this process are renting or rented on ``account`` (None: a cloud whose offers
    hold several machines, where nothing is claimed)."""
    with _CLAIMED_LOCK:
        return set(_CLAIMED.get(account, ())) if account else set()


def _claim(account: Optional[Tuple[str, ...]], offer_id: str) -> bool:
    """Take ``offer_id`` for this create; False when another create of this process has it."""
    if not account:
        return True
    with _CLAIMED_LOCK:
        claimed = _CLAIMED.setdefault(account, set())
        if offer_id in claimed:
            return False
        claimed.add(offer_id)
        return True


def _release(account: Optional[Tuple[str, ...]], offer_id: str) -> None:
    with _CLAIMED_LOCK:
        _CLAIMED.get(account, set()).discard(offer_id)


REPLACE_KEYS = tuple(f.name for f in dataclasses.fields(GpuInstanceArgs) if f.metadata.get("replaces"))
# What the machine *is*: a change of one of these replaces it. The rest of the request (price ceiling,
# regions, reliability floor) and the failover clouds only guide the next placement, so they update in
# place and take effect when the node is next placed (a re-rent after preemption, a replacement).
MACHINE_REQUEST_KEYS = ("gpu_model", "gpu_count", "min_vram_gb", "vcpu", "ram_gb", "disk_gb", "spot")
UPDATE_KEYS = tuple(f.name for f in dataclasses.fields(GpuInstanceArgs) if not f.metadata.get("replaces")) + ("version",)
INPUT_KEYS = REPLACE_KEYS + UPDATE_KEYS
CONFIG_KEYS = MARKETPLACE_CONFIG_KEYS
MAX_OFFERS_TRIED = 5
SEARCH_ROUNDS = 50
"""Searches one placement may make while offers it has not tried remain (each round tries new ones)."""
SAME_PRICE = 0.01
"""Offers within this fraction of the cheapest count as the same price for ``spread``."""


def _launch(props: Dict[str, Any]) -> Dict[str, Any]:
    """The launch spec as the vendor gets it. Nothing in it is secret (the retired ``secrets`` input of
    older states is only compared by ``replace_reasons``, never launched)."""
    return dict(props.get("launch") or {})


def split_id(id_: str) -> Tuple[str, str]:
    parsed = machine_id(id_)
    if parsed is None:
        raise ValueError(f"not a GPU instance id: {id_!r}")
    return parsed


def replace_reasons(id_: str, olds: Dict[str, Any], news: Dict[str, Any]) -> List[str]:
    """The input keys (``launch.image``, ``request.gpu_count``, ...) whose change makes a new machine."""
    reasons: List[str] = []
    old_launch, new_launch = olds.get("launch") or {}, news.get("launch") or {}
    reasons += [f"launch.{k}" for k in sorted(set(old_launch) | set(new_launch)) if old_launch.get(k) != new_launch.get(k)]
    if olds.get("secrets") != news.get("secrets"):
        reasons.append("secrets")
    old_req, new_req = olds.get("request") or {}, news.get("request") or {}
    reasons += [f"request.{k}" for k in MACHINE_REQUEST_KEYS if old_req.get(k) != new_req.get(k)]
    cloud = (id_ or "").partition(":")[0]
    if cloud in CLOUDS and cloud not in (news.get("clouds") or []):
        reasons.append("clouds")  # the machine's own cloud is no longer allowed
    return reasons


def spread(ranked: List[Offer], label: str) -> List[Offer]:
    """``ranked`` with the offers that cost the same as the cheapest rotated by the node's label, so
    nodes placed at once start at different offers instead of all racing for the first; dearer offers
    keep their order after them (never a dearer machine for the sake of spreading)."""
    if not ranked:
        return ranked
    first = ranked[0].price_per_hour
    n = 1
    while n < len(ranked) and ranked[n].price_per_hour <= first * (1 + SAME_PRICE):
        n += 1
    tied = ranked[:n]
    start = int(hashlib.sha256(label.encode()).hexdigest(), 16) % len(tied)
    return tied[start:] + tied[:start] + ranked[len(tied):]


class GpuInstanceProvider(ResourceProvider):
    def __init__(self) -> None:
        super().__init__()
        self._config: Dict[str, str] = {}

    def configure(self, req: ConfigureRequest) -> None:
        self._config = {k: v for k in CONFIG_KEYS if (v := req.config.get(k))}

    def _client(self, cloud: str) -> GpuCloud:
        return gpu_cloud.client(cloud, self._config)

    # -- check / diff -------------------------------------------------------------------------------
    def check(self, _olds: Dict[str, Any], news: Dict[str, Any]) -> CheckResult:
        failures: List[CheckFailure] = []
        clouds = news.get("clouds") or []
        if not clouds or any(c not in CLOUDS for c in clouds):
            failures.append(CheckFailure("clouds", f"one or more of {', '.join(CLOUDS)} (got {clouds!r})"))
        if news.get("power") not in POWER_VALUES:
            failures.append(CheckFailure("power", f"one of {', '.join(POWER_VALUES)} (got {news.get('power')!r})"))
        if not news.get("label"):
            failures.append(CheckFailure("label", "a deterministic label is required"))
        try:
            NodeRequest.model_validate(news.get("request") or {})
        except ValidationError as err:
            failures.append(CheckFailure("request", str(err)))
        try:
            LaunchSpec.model_validate({**_launch(news), "label": news.get("label") or "x"})
        except ValidationError as err:
            failures.append(CheckFailure("launch", str(err)))
        bid = news.get("bid_per_hour")
        if bid is not None and (not isinstance(bid, (int, float)) or bid <= 0):
            failures.append(CheckFailure("bid_per_hour", f"a positive $/h (got {bid!r})"))
        return CheckResult({**news, "version": PROVIDER_VERSION}, failures)

    def diff(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> DiffResult:
        reasons = replace_reasons(_id, olds, news)
        replaces = sorted({r.split(".", 1)[0] for r in reasons}, key=INPUT_KEYS.index)
        changed = replaces or [k for k in INPUT_KEYS if olds.get(k) != news.get(k)]
        if reasons:
            # The engine shows the top-level input; say which key forces the new machine.
            pulumi.log.warn(f"{news.get('label')}: {', '.join(reasons)} changed: this rents a new machine "
                            "and terminates the old one (its disk and pulled models with it)")
        # Delete first: the replacement carries the same label and must not adopt the old machine,
        # and two GPU machines should never bill at once for one node.
        return DiffResult(changes=bool(changed), replaces=replaces, stables=[], delete_before_replace=True)

    # -- create -------------------------------------------------------------------------------------
    def create(self, props: Dict[str, Any]) -> CreateResult:
        label = props["label"]
        request = NodeRequest.model_validate(props["request"])
        spec = LaunchSpec.model_validate({**_launch(props), "label": label, "bid_per_hour": props.get("bid_per_hour")})
        said: List[str] = []
        key = props.get("host_key") or {}
        for cloud in props["clouds"]:
            placed_key = None
            # A VM is launched with the generated host key; a container keeps the key its vendor sets.
            if key.get("private") and spec.cloud_init and not Vendor(cloud).is_container:
                spec = spec.model_copy(update={"cloud_init": install_in_cloud_init(
                    spec.cloud_init, key["private"], key["public"])})
                placed_key = bare_key(key["public"])
            with self._client(cloud) as c:
                try:
                    placed = self._place(c, request, spec)
                    if placed is None:
                        continue
                    inst, offer_price, region, offer_id = placed
                    inst = self._converge_power(c, inst, props)
                    outs = self._outs(props, cloud, inst)
                    outs.update({"launch_price_per_hour": offer_price, "region": region, "offer_id": offer_id,
                                 # Only a machine rented here was launched with the generated key, not one adopted.
                                 "host_public_key": placed_key if offer_id else None})
                    return CreateResult(f"{cloud}:{inst.id}", outs)
                except (NoCapacity, PlacementError) as err:
                    said.append(f"{cloud}: {err}")
                    pulumi.log.warn(f"{label}: {cloud} has no capacity, trying the next provider ({err})")
        raise NoCapacity(f"{label}: no provider could place the node:\n  " + "\n  ".join(said))

    def _place(self, c: GpuCloud, request: NodeRequest, spec: LaunchSpec):
        """Adopt the instance carrying our label, or rent the best offer. None means no offer here."""
        existing = c.find(spec.label)
        if existing:
            if len(existing) > 1:
                pulumi.log.warn(f"{spec.label}: {len(existing)} {c.name} instances carry this label; adopting "
                                f"{existing[0].id}, the others are not managed: {[i.id for i in existing[1:]]}")
            pulumi.log.info(f"{spec.label}: adopting {c.name} instance {existing[0].id}")
            inst = existing[0]
            with _ADOPTED_LOCK:
                _ADOPTED.add(f"{c.name}:{inst.id}")
            return inst, inst.price_per_hour, "", ""
        taken: List[str] = []
        tried: set = set()
        account = c.account() if c.single_rental_offers else None
        # Several nodes placed at once race for the same cheapest offers: where an offer is one machine,
        # each takes an offer no other create of this process is renting (the next cheapest); when every
        # offer of one search was taken, it searches again (the list has moved on) while untried offers
        # remain, before calling it no capacity; nodes start at different offers of the same price.
        for _round in range(SEARCH_ROUNDS):
            offers = c.offers(request)
            ranked = rank_offers(request, offers)
            if not ranked and not taken:
                choose_offer(request, offers)  # raises PlacementError saying why each offer was refused
            untried = [o for o in ranked if o.offer_id not in tried]
            others = _claimed(account)
            fresh = spread([o for o in untried if o.offer_id not in others], spec.label)[:MAX_OFFERS_TRIED]
            if not fresh:
                if not untried:
                    break
                # Only offers other creates are renting are left: wait for them to rent or let go.
                time.sleep(env_seconds("ESTATE_POLL_SECONDS", 5))
                continue
            for offer in fresh:
                if not _claim(account, offer.offer_id):
                    continue
                tried.add(offer.offer_id)
                pulumi.log.info(f"{spec.label}: renting {c.name} offer {offer.offer_id} at ${offer.price_per_hour}/h")
                try:
                    iid = c.launch(offer, spec)
                except OfferTaken as err:
                    taken.append(str(err))  # gone: it stays claimed
                    continue
                except LostResponse:
                    found = self._wait_for_label(c, spec.label)
                    if found is None:
                        raise CloudError(
                            f"{spec.label}: {c.name} did not answer the create and lists no instance with this "
                            f"label yet; run `pulumi up` again: it adopts the instance if one appears, never "
                            f"renting twice")
                    iid = found.id
                except BaseException:
                    _release(account, offer.offer_id)  # not rented: another create may take it
                    raise
                inst = self._wait_running(c, iid, spec.label)
                return inst, offer.price_per_hour, offer.region, offer.offer_id
        raise NoCapacity(f"every offer tried was taken: {'; '.join(taken)}")

    def _wait_for_label(self, c: GpuCloud, label: str) -> Optional[Instance]:
        deadline = time.monotonic() + env_seconds("ESTATE_ADOPT_WAIT_SECONDS", 60)
        while True:
            found = c.find(label)
            if found:
                return found[0]
            if time.monotonic() >= deadline:
                return None
            time.sleep(env_seconds("ESTATE_POLL_SECONDS", 5))

    def _wait_running(self, c: GpuCloud, iid: str, label: str) -> Instance:
        deadline = time.monotonic() + env_seconds("ESTATE_READY_TIMEOUT_SECONDS", 900)
        while True:
            inst = c.get(iid)
            if inst is None or inst.status is Status.GONE:
                raise CloudError(f"{label}: {c.name} instance {iid} vanished while starting "
                                 f"({inst.detail if inst else 'not found'})")
            if inst.status is Status.RUNNING:
                return inst
            if time.monotonic() >= deadline:
                raise CloudError(f"{label}: {c.name} instance {iid} not running after the ready timeout "
                                 f"(status {inst.detail}); it stays in state, run `pulumi up` again")
            self._await_listing(c, iid, (Status.RUNNING, Status.GONE), deadline)

    def _converge_power(self, c: GpuCloud, inst: Instance, props: Dict[str, Any]) -> Instance:
        """Start or stop the instance to match ``power``; ``idle`` leaves it as its watcher left it."""
        power = props["power"]
        if power == "stopped" and inst.status in (Status.RUNNING, Status.PENDING):
            c.stop(inst.id)
            return self._wait_status(c, inst.id, Status.STOPPED)
        if power == "running" and inst.status in (Status.STOPPED, Status.STOPPING):
            self._start(c, inst, props)
            return self._wait_running(c, inst.id, inst.label)
        return inst

    @staticmethod
    def _start(c: GpuCloud, inst: Instance, props: Dict[str, Any]) -> None:
        """Start; a spot instance that was outbid is re-bid at the machine's new minimum when that is within
        the node's ceiling, else the start fails at once saying so (never a wait on a start that cannot
        succeed)."""
        try:
            c.start(inst.id)
        except Outbid as err:
            ceiling = (props.get("request") or {}).get("max_price_per_hour")
            bid = round(err.min_bid * 1.01, 4)
            if ceiling is not None and bid > float(ceiling):
                raise NoCapacity(f"{props['label']}: {err}; re-bidding at ${bid}/h would pass the node's ceiling "
                                 f"max_price_per_hour ${ceiling}/h. Raise the ceiling, or destroy the node to "
                                 "rent elsewhere") from err
            pulumi.log.warn(f"{props['label']}: outbid; re-bidding at ${bid}/h (ceiling "
                            f"{'none' if ceiling is None else f'${ceiling}/h'}) and starting")
            c.set_bid(inst.id, bid)
            c.start(inst.id)

    def _wait_status(self, c: GpuCloud, iid: str, want: Status) -> Instance:
        deadline = time.monotonic() + env_seconds("ESTATE_READY_TIMEOUT_SECONDS", 900)
        while True:
            inst = c.get(iid)
            if inst is None:
                raise CloudError(f"{c.name} instance {iid} disappeared")
            if inst.status is want or time.monotonic() >= deadline:
                return inst
            self._await_listing(c, iid, (want, Status.GONE), deadline)

    def _await_listing(self, c: GpuCloud, iid: str, wanted: Tuple[Status, ...], deadline: float) -> None:
        """Until the account's listing shows the machine in one of ``wanted`` or without it, or for a few
        poll intervals at most: one listing serves every machine this host waits on
        (providers/status_watch.py)."""
        status_watch.wait_for_news(c, lambda: self._client(c.name), iid, lambda s: s in wanted, deadline)

    @staticmethod
    def _outs(props: Dict[str, Any], cloud: str, inst: Instance) -> Dict[str, Any]:
        return {
            **{k: props.get(k) for k in INPUT_KEYS},
            "cloud": cloud,
            "instance_id": inst.id,
            "status": inst.status.value,
            "address": inst.address,
            "ssh_host": inst.ssh_host,
            "ssh_port": inst.ssh_port,
            "ports": {str(k): v for k, v in sorted(inst.ports.items())},
            "price_per_hour": inst.price_per_hour,
        }

    # -- read / update / delete ---------------------------------------------------------------------
    def read(self, id_: str, props: Dict[str, Any]) -> ReadResult:
        cloud, iid = split_id(id_)
        with self._client(cloud) as c:
            inst = c.get(iid)
        if inst is None or inst.status is Status.GONE:
            # Deleted or preempted behind the state's back: report it gone so the next up recreates it.
            return ReadResult("", {})
        outs = {**props, **self._outs(props, cloud, inst)}
        for k in ("launch_price_per_hour", "region", "offer_id"):
            outs[k] = props.get(k)
        if inst.status in (Status.STOPPED, Status.STOPPING) and not inst.address and not inst.ports:
            # A stopped machine has no runtime to report; it keeps the address it had, where the gateway's
            # route and tunnel expect it when it starts again (an idle node woken by a request).
            for k in ("address", "ssh_host", "ssh_port", "ports"):
                outs[k] = props.get(k)
        inputs = {k: props.get(k) for k in INPUT_KEYS if k in props}
        if props.get("power") == "idle":
            pass  # stopped or running, the node is as its idle watcher left it: no drift
        elif inst.status in (Status.STOPPED, Status.STOPPING):
            inputs["power"] = outs["power"] = "stopped"
        elif inst.status is Status.RUNNING:
            inputs["power"] = outs["power"] = "running"
        return ReadResult(id_, outs, inputs)

    def update(self, id_: str, olds: Dict[str, Any], news: Dict[str, Any]) -> UpdateResult:
        cloud, iid = split_id(id_)
        with self._client(cloud) as c:
            if news.get("bid_per_hour") != olds.get("bid_per_hour") and news.get("bid_per_hour"):
                try:
                    c.set_bid(iid, float(news["bid_per_hour"]))
                except NotImplementedError as err:
                    pulumi.log.warn(f"{news['label']}: {err}; the new bid applies at the next launch")
            inst = c.get(iid)
            if inst is None:
                raise CloudError(f"{news['label']}: {cloud} instance {iid} is gone; run `pulumi refresh` then `pulumi up`")
            inst = self._converge_power(c, inst, news)
        outs = {**olds, **self._outs(news, cloud, inst)}
        return UpdateResult(outs)

    def delete(self, id_: str, props: Dict[str, Any]) -> None:
        cloud, iid = split_id(id_)
        with _ADOPTED_LOCK:
            adopted = id_ in _ADOPTED
        if adopted:
            # A resource moved to a new URN (a new parent, a renamed node component or type token, no
            # alias) is created before the old one is deleted; the new one adopted this machine by its
            # label in this same run, so terminating it would destroy the running node it now manages.
            pulumi.log.warn(f"{props.get('label')}: {cloud} instance {iid} was adopted by another resource in this "
                            "run (a moved or renamed resource without an alias); it stays running and this "
                            "resource only leaves the state. Give renames `aliases` to avoid the hand-over.")
            return
        with self._client(cloud) as c:
            c.terminate(iid)
            deadline = time.monotonic() + env_seconds("ESTATE_DELETE_TIMEOUT_SECONDS", 300)
            while True:
                inst = c.get(iid)
                if inst is None or inst.status is Status.GONE:
                    return
                if time.monotonic() >= deadline:
                    raise CloudError(f"{cloud} still lists instance {iid} as {inst.detail} after delete; "
                                     "it stays in state so the next destroy tries again")
                time.sleep(env_seconds("ESTATE_POLL_SECONDS", 5))


class GpuInstance(DynamicResource, module="gpu", name="Instance"):
    """A rented GPU machine: ``pulumi-python:dynamic/gpu:Instance``."""

    cloud: pulumi.Output[str]
    instance_id: pulumi.Output[str]
    status: pulumi.Output[str]
    address: pulumi.Output[Optional[str]]
    ssh_host: pulumi.Output[Optional[str]]
    ssh_port: pulumi.Output[Optional[int]]
    ports: pulumi.Output[Dict[str, int]]
    price_per_hour: pulumi.Output[Optional[float]]
    launch_price_per_hour: pulumi.Output[Optional[float]]
    region: pulumi.Output[str]
    host_public_key: pulumi.Output[Optional[str]]
    """The host key this resource installed when it rented the machine (None: recorded on first contact)."""
    SECRET_OUTPUTS = ("host_key",)  # the generated key pair, carried from the input into the outputs

    def __init__(self, name: str, args: GpuInstanceArgs, opts: Optional[pulumi.ResourceOptions] = None):
        outs = {k: None for k in ("cloud", "instance_id", "status", "address", "ssh_host", "ssh_port", "ports",
                                  "price_per_hour", "launch_price_per_hour", "region", "offer_id", "host_public_key")}
        super().__init__(GpuInstanceProvider(), name, {**outs, "version": PROVIDER_VERSION, **args.to_props()}, opts)
