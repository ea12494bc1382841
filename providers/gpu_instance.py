"""The Pulumi dynamic provider for rented GPU instances on TensorDock, Vast.ai and RunPod.

One lifecycle for every marketplace (the backends sit behind ``providers.gpu_cloud.GpuCloud``):

- create looks for an instance carrying the node's label first and adopts it, so a create whose
  response was lost, or an earlier ``up`` that died, never rents a second machine. Otherwise it picks the
  cheapest live offer that meets the request (``core.pricing``), tries the next offer when one is
  taken, and fails over to the next cloud when one has no capacity; the final error lists what each said.
  That search, and the adoptions and offer claims it shares with the other creates of the process, is
  ``providers.placement``; every wait on a machine is ``providers.wait.wait_for``.
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
import json
from typing import Any, Dict, List, Optional, Tuple

import pulumi
from pulumi.dynamic import (
    CheckFailure, CheckResult, ConfigureRequest, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult,
)
import yaml
from pydantic import ValidationError

from core.pricing import NodeRequest
from core.text import bare_key
from core.workloads.node_files import CHECKPOINT_SCRIPT, COMPOSE_FILE, ESTATE_DIR
from core.vendors import MARKETPLACE_CONFIG_KEYS, MARKETPLACES, Vendor, machine_id
from providers import gpu_cloud, status_watch
from providers.gpu_cloud import GpuCloud, Instance, LaunchSpec, Status, env_seconds
from providers.host_key import install_in_cloud_init
from providers.http import CloudError, NoCapacity, Outbid
from providers.placement import Placed, Placement
from providers.resource import DynamicResource
from providers.wait import WaitTimeout, wait_for, within

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

    @classmethod
    def from_props(cls, props: Dict[str, Any]) -> "LaunchInputs":
        return cls(**{f.name: props[f.name] for f in dataclasses.fields(cls) if f.name in props})

    def spec(self, label: str, bid_per_hour: Optional[float]) -> LaunchSpec:
        """The launch spec as the vendor gets it. Nothing in it is secret (the retired ``secrets`` input of
        older states is only compared by ``replace_reasons``, never launched)."""
        return LaunchSpec.model_validate({**self.to_props(), "label": label, "bid_per_hour": bid_per_hour})


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

    @classmethod
    def from_props(cls, props: Dict[str, Any]) -> "GpuInstanceArgs":
        """The inputs as the engine sends them (checked by ``check``), typed."""
        return cls(label=props["label"], clouds=list(props["clouds"]),
                   request=NodeRequest.model_validate(props["request"]),
                   launch=LaunchInputs.from_props(props.get("launch") or {}), power=props["power"],
                   bid_per_hour=props.get("bid_per_hour"), stamps=props.get("stamps") or {},
                   host_key=props.get("host_key"), secrets=props.get("secrets"))


@dataclasses.dataclass(frozen=True)
class Machine:
    """The outputs a read of the vendor gives (beside the inputs, echoed)."""

    cloud: str
    instance_id: str
    status: str
    address: Optional[str] = None
    ssh_host: Optional[str] = None
    ssh_port: Optional[int] = None
    ports: Dict[str, int] = dataclasses.field(default_factory=dict)
    """Machine port (a string: state keys are strings) -> public port."""
    price_per_hour: Optional[float] = None

    @classmethod
    def seen(cls, cloud: str, inst: Instance) -> "Machine":
        return cls(cloud=cloud, instance_id=inst.id, status=inst.status.value, address=inst.address,
                   ssh_host=inst.ssh_host, ssh_port=inst.ssh_port,
                   ports={str(k): v for k, v in sorted(inst.ports.items())}, price_per_hour=inst.price_per_hour)

    def to_props(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Rental:
    """What the create that placed the machine recorded: kept as it was by reads and updates."""

    launch_price_per_hour: Optional[float] = None
    region: str = ""
    offer_id: str = ""
    host_public_key: Optional[str] = None
    """The host key this resource installed when it rented the machine (None: adopted, or a container)."""

    def to_props(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


POWER_VALUES = ("running", "stopped", "idle")


def forget_adoptions() -> None:
    """Start over as a new provider process does (for callers that reuse one process across runs)."""
    Placement.of_process().forget()


REPLACE_KEYS = tuple(f.name for f in dataclasses.fields(GpuInstanceArgs) if f.metadata.get("replaces"))
# What the machine *is*: a change of one of these replaces it. The rest of the request (price ceiling,
# regions, reliability floor) and the failover clouds only guide the next placement, so they update in
# place and take effect when the node is next placed (a re-rent after preemption, a replacement).
MACHINE_REQUEST_KEYS = ("gpu_model", "gpu_count", "min_vram_gb", "vcpu", "ram_gb", "disk_gb", "spot")
UPDATE_KEYS = tuple(f.name for f in dataclasses.fields(GpuInstanceArgs) if not f.metadata.get("replaces")) + ("version",)
INPUT_KEYS = REPLACE_KEYS + UPDATE_KEYS
CONFIG_KEYS = MARKETPLACE_CONFIG_KEYS


def split_id(id_: str) -> Tuple[str, str]:
    parsed = machine_id(id_)
    if parsed is None:
        raise ValueError(f"not a GPU instance id: {id_!r}")
    return parsed


def same_image(old: Optional[str], new: Optional[str]) -> bool:
    """Whether two references name the image a machine already runs: the same ``name:tag``, one of them
    pinned by the digest the other's tag was pulled at (pinning a running machine's tag by digest, as
    ``scripts/pin-images.sh`` does, is no new machine). Two different digests are two images."""
    if not old or not new:
        return old == new
    (old_ref, _, old_digest), (new_ref, _, new_digest) = old.partition("@"), new.partition("@")
    return old_ref == new_ref and (not old_digest or not new_digest or old_digest == new_digest)


def without_boot_fetch(key: str, text: Optional[str]) -> Optional[str]:
    """A launch's ``cloud_init`` or ``onstart`` as it is rendered now, from one rendered before a workload's
    model files were resources of their own (``providers/model_files.py``): the boot-time fetch of them
    taken out. A VM's user-data held the fetch script as a ``write_files`` entry and one ``runcmd`` line; a
    container's start script wrote it with a heredoc and ran it in the background. Anything else is
    returned as it was."""
    if not text or CHECKPOINT_SCRIPT not in text:
        return text
    out: List[str] = []
    lines = iter(text.split("\n"))
    for line in lines:
        if key == "cloud_init" and line == f"  - path: {CHECKPOINT_SCRIPT}":
            # The entry's own keys and its content are indented deeper than the next entry's "  - ", and the
            # script's last newline left one empty line after it.
            for rest in lines:
                if not (rest.startswith("    ") or rest == ""):
                    line = rest
                    break
            else:
                break
        if key == "cloud_init" and line == f"  - [{CHECKPOINT_SCRIPT}]":
            continue
        if key == "onstart" and line == f"cat > {CHECKPOINT_SCRIPT} <<'ESTATE_FETCH'":
            for rest in lines:
                if rest == "ESTATE_FETCH":
                    break
            continue
        if key == "onstart" and line in (f"mkdir -p {ESTATE_DIR} && chmod 0755 {CHECKPOINT_SCRIPT}",
                                         f"nohup {CHECKPOINT_SCRIPT} >/var/log/estate-checkpoints.log 2>&1 &"):
            continue
        out.append(line)
    return "\n".join(out)


def _with_bridge_respawned(compose: Dict[str, Any]) -> Dict[str, Any]:
    """A compose project rendered before the images bridge was started again on exit, with each
    ``sh -c "<bridge> & exec <ComfyUI>"`` entrypoint as it is rendered now (``comfyui.respawned``)."""
    from core.workloads.comfyui import respawned

    for svc in (compose.get("services") or {}).values():
        entry = svc.get("entrypoint") if isinstance(svc, dict) else None
        if (isinstance(entry, list) and len(entry) == 3 and entry[:2] == ["sh", "-c"] and " & exec " in entry[2]
                and not entry[2].startswith("(")):
            side, start = entry[2].replace("$$", "$").rsplit(" & exec ", 1)
            svc["entrypoint"] = ["sh", "-c", f"({respawned(side, 'the images bridge')}) & exec {start}".replace("$", "$$")]
    return compose


def _cloud_init_doc(text: str, upgrade: bool) -> Any:
    """A VM's user-data as data, its compose project parsed too (``upgrade``: brought to today's bridge
    entrypoint); the text itself where it is not YAML."""
    try:
        doc = yaml.safe_load(text)
        for f in doc.get("write_files") or []:
            if f.get("path") == COMPOSE_FILE:
                compose = yaml.safe_load(f["content"])
                f["content"] = _with_bridge_respawned(compose) if upgrade else compose
        return doc
    except (yaml.YAMLError, AttributeError, TypeError):
        return text


def _launch_changed(key: str, old: Any, new: Any) -> bool:
    """Whether the launch's ``key`` changed in what the machine *is*: another image (not the same one pinned
    by digest), or another script once what retired from it is set aside: the boot-time fetch of model
    files (they are resources now; the machine keeps the script it was launched with, whose fetch already
    ran) and a VM's images bridge started once (a machine launched so keeps it until it is replaced)."""
    if old == new:
        return False
    if key == "image":
        return not same_image(old, new)
    if key == "onstart" and isinstance(old, str):
        return without_boot_fetch(key, old) != new
    if key == "cloud_init" and isinstance(old, str) and isinstance(new, str):
        return _cloud_init_doc(without_boot_fetch(key, old), True) != _cloud_init_doc(new, False)
    return True


def replace_reasons(id_: str, olds: Dict[str, Any], news: Dict[str, Any]) -> List[str]:
    """The input keys (``launch.image``, ``request.gpu_count``, ...) whose change makes a new machine."""
    reasons: List[str] = []
    old_launch, new_launch = olds.get("launch") or {}, news.get("launch") or {}
    reasons += [f"launch.{k}" for k in sorted(set(old_launch) | set(new_launch))
                if _launch_changed(k, old_launch.get(k), new_launch.get(k))]
    if olds.get("secrets") != news.get("secrets"):
        reasons.append("secrets")
    old_req, new_req = olds.get("request") or {}, news.get("request") or {}
    reasons += [f"request.{k}" for k in MACHINE_REQUEST_KEYS if old_req.get(k) != new_req.get(k)]
    cloud = (id_ or "").partition(":")[0]
    if cloud in MARKETPLACES and cloud not in (news.get("clouds") or []):
        reasons.append("clouds")  # the machine's own cloud is no longer allowed
    return reasons


def _poll() -> float:
    return env_seconds("ESTATE_POLL_SECONDS", 5)


def _ready_deadline() -> float:
    return within(env_seconds("ESTATE_READY_TIMEOUT_SECONDS", 900))


class GpuInstanceProvider(ResourceProvider):
    """``check`` and ``diff`` judge the raw inputs the engine sends and what a state recorded (an older state
    may lack keys a typed record would fill in); create, read, update and delete turn the props into
    ``GpuInstanceArgs`` and outputs from ``Machine`` and ``Rental`` at their boundary."""

    _placement: Optional[Placement] = None
    """Set only when given: a provider unpickled from a state written before it existed has no such
    attribute of its own and reads this one."""

    def __init__(self, placement: Optional[Placement] = None) -> None:
        super().__init__()
        self._config: Dict[str, str] = {}
        self._placement = placement

    @property
    def placement(self) -> Placement:
        """The claims and adoptions this provider shares with every create of its process (see
        ``providers/placement.py`` for why per process), unless it was given its own."""
        return self._placement or Placement.of_process()

    def configure(self, req: ConfigureRequest) -> None:
        self._config = {k: v for k in CONFIG_KEYS if (v := req.config.get(k))}

    def _client(self, cloud: str) -> GpuCloud:
        return gpu_cloud.client(cloud, self._config)

    # -- check / diff -------------------------------------------------------------------------------
    def check(self, _olds: Dict[str, Any], news: Dict[str, Any]) -> CheckResult:
        failures: List[CheckFailure] = []
        clouds = news.get("clouds") or []
        if not clouds or any(c not in MARKETPLACES for c in clouds):
            failures.append(CheckFailure("clouds", f"one or more of {', '.join(MARKETPLACES)} (got {clouds!r})"))
        if news.get("power") not in POWER_VALUES:
            failures.append(CheckFailure("power", f"one of {', '.join(POWER_VALUES)} (got {news.get('power')!r})"))
        if not news.get("label"):
            failures.append(CheckFailure("label", "a deterministic label is required"))
        try:
            NodeRequest.model_validate(news.get("request") or {})
        except ValidationError as err:
            failures.append(CheckFailure("request", str(err)))
        try:
            LaunchSpec.model_validate({**(news.get("launch") or {}), "label": news.get("label") or "x"})
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
        args = GpuInstanceArgs.from_props(props)
        base = args.launch.spec(args.label, args.bid_per_hour)
        key = args.host_key or {}

        def generated_key(cloud: str) -> Optional[str]:
            """The host key a machine rented on ``cloud`` is launched with: a VM gets the generated one through
            its cloud-init; a container keeps the key its vendor sets."""
            if key.get("private") and base.cloud_init and not Vendor(cloud).is_container:
                return key["public"]
            return None

        def spec_for(cloud: str) -> LaunchSpec:
            if generated_key(cloud) is None:
                return base
            return base.model_copy(update={"cloud_init": install_in_cloud_init(
                base.cloud_init, key["private"], key["public"])})

        def settle(c: GpuCloud, placed: Placed) -> CreateResult:
            inst = placed.adopted or self._wait_running(c, placed.instance_id, args.label)
            inst = self._converge_power(c, inst, args)
            if placed.offer is None:
                rental = Rental(launch_price_per_hour=placed.adopted.price_per_hour)
            else:
                offer, public = placed.offer, generated_key(c.name)
                # Only a machine rented here was launched with the generated key, not one adopted.
                rental = Rental(launch_price_per_hour=offer.price_per_hour, region=offer.region,
                                offer_id=offer.offer_id, host_public_key=bare_key(public) if public else None)
            outs = {**_inputs(props), **Machine.seen(c.name, inst).to_props(), **rental.to_props()}
            return CreateResult(f"{c.name}:{inst.id}", outs)

        return self.placement.place(args.label, args.clouds, self._client, args.request, spec_for, settle)

    def _wait_running(self, c: GpuCloud, iid: str, label: str) -> Instance:
        deadline = _ready_deadline()

        def read() -> Instance:
            inst = c.get(iid)
            if inst is None or inst.status is Status.GONE:
                raise CloudError(f"{label}: {c.name} instance {iid} vanished while starting "
                                 f"({inst.detail if inst else 'not found'})")
            return inst

        try:
            return wait_for(read, lambda i: i.status is Status.RUNNING, deadline, _poll(),
                            f"{label}: {c.name} instance {iid} running",
                            pause=lambda _i: self._await_listing(c, iid, (Status.RUNNING, Status.GONE), deadline))
        except WaitTimeout as late:
            raise CloudError(f"{label}: {c.name} instance {iid} not running after the ready timeout "
                             f"(status {late.last.detail}); it stays in state, run `pulumi up` again") from late

    def _converge_power(self, c: GpuCloud, inst: Instance, args: GpuInstanceArgs) -> Instance:
        """Start or stop the instance to match ``power``; ``idle`` leaves it as its watcher left it."""
        if args.power == "stopped" and inst.status in (Status.RUNNING, Status.PENDING):
            c.stop(inst.id)
            return self._wait_status(c, inst.id, Status.STOPPED)
        if args.power == "running" and inst.status in (Status.STOPPED, Status.STOPPING):
            self._start(c, inst, args)
            return self._wait_running(c, inst.id, inst.label)
        return inst

    @staticmethod
    def _start(c: GpuCloud, inst: Instance, args: GpuInstanceArgs) -> None:
        """Start; a spot instance that was outbid is re-bid at the machine's new minimum when that is within
        the node's ceiling, else the start fails at once saying so (never a wait on a start that cannot
        succeed)."""
        try:
            c.start(inst.id)
        except Outbid as err:
            ceiling = args.request.max_price_per_hour
            bid = round(err.min_bid * 1.01, 4)
            if ceiling is not None and bid > ceiling:
                raise NoCapacity(f"{args.label}: {err}; re-bidding at ${bid}/h would pass the node's ceiling "
                                 f"max_price_per_hour ${ceiling}/h. Raise the ceiling, or destroy the node to "
                                 "rent elsewhere") from err
            pulumi.log.warn(f"{args.label}: outbid; re-bidding at ${bid}/h (ceiling "
                            f"{'none' if ceiling is None else f'${ceiling}/h'}) and starting")
            c.set_bid(inst.id, bid)
            c.start(inst.id)

    def _wait_status(self, c: GpuCloud, iid: str, want: Status) -> Instance:
        """The instance once it shows ``want``, or as it is at the ready timeout; raises when it is gone."""
        deadline = _ready_deadline()

        def read() -> Instance:
            inst = c.get(iid)
            if inst is None or inst.status is Status.GONE:
                raise CloudError(f"{c.name} instance {iid} disappeared")
            return inst

        try:
            return wait_for(read, lambda i: i.status is want, deadline, _poll(), f"{c.name} instance {iid} {want.value}",
                            pause=lambda _i: self._await_listing(c, iid, (want, Status.GONE), deadline))
        except WaitTimeout as late:
            return late.last

    def _await_listing(self, c: GpuCloud, iid: str, wanted: Tuple[Status, ...], deadline: float) -> None:
        """Until the account's listing shows the machine in one of ``wanted`` or without it, or for a few
        poll intervals at most: one listing serves every machine this host waits on
        (providers/status_watch.py)."""
        status_watch.wait_for_news(c, lambda: self._client(c.name), iid, lambda s: s in wanted, deadline)

    # -- read / update / delete ---------------------------------------------------------------------
    def read(self, id_: str, props: Dict[str, Any]) -> ReadResult:
        cloud, iid = split_id(id_)
        with self._client(cloud) as c:
            inst = c.get(iid)
        if inst is None or inst.status is Status.GONE:
            # Deleted or preempted behind the state's back: report it gone so the next up recreates it.
            return ReadResult("", {})
        machine = Machine.seen(cloud, inst)
        if inst.status in (Status.STOPPED, Status.STOPPING) and not inst.address and not inst.ports:
            # A stopped machine has no runtime to report; it keeps the address it had, where the gateway's
            # route and tunnel expect it when it starts again (an idle node woken by a request).
            machine = dataclasses.replace(machine, address=props.get("address"), ssh_host=props.get("ssh_host"),
                                          ssh_port=props.get("ssh_port"), ports=props.get("ports"))
        outs = {**props, **_inputs(props), **machine.to_props()}
        for k in ("launch_price_per_hour", "region", "offer_id"):
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
        args = GpuInstanceArgs.from_props(news)
        with self._client(cloud) as c:
            if args.bid_per_hour != olds.get("bid_per_hour") and args.bid_per_hour:
                try:
                    c.set_bid(iid, float(args.bid_per_hour))
                except NotImplementedError as err:
                    pulumi.log.warn(f"{args.label}: {err}; the new bid applies at the next launch")
            inst = c.get(iid)
            if inst is None or inst.status is Status.GONE:
                raise CloudError(f"{args.label}: {cloud} instance {iid} is gone; run `pulumi refresh` then `pulumi up`")
            inst = self._converge_power(c, inst, args)
        return UpdateResult({**olds, **_inputs(news), **Machine.seen(cloud, inst).to_props()})

    def delete(self, id_: str, props: Dict[str, Any]) -> None:
        cloud, iid = split_id(id_)
        if self.placement.adopted(id_):
            # A resource moved to a new URN (a new parent, a renamed node component or type token, no
            # alias) is created before the old one is deleted; the new one adopted this machine by its
            # label in this same run, so terminating it would destroy the running node it now manages.
            pulumi.log.warn(f"{props.get('label')}: {cloud} instance {iid} was adopted by another resource in this "
                            "run (a moved or renamed resource without an alias); it stays running and this "
                            "resource only leaves the state. Give renames `aliases` to avoid the hand-over.")
            return
        with self._client(cloud) as c:
            terminate_verified(c, iid)


def terminate_verified(c: GpuCloud, iid: str) -> None:
    """Terminate the instance and return once its vendor no longer lists it as billing; CloudError otherwise,
    so whatever holds it in state keeps it for the next try."""
    c.terminate(iid)
    try:
        wait_for(lambda: c.get(iid), lambda i: i is None or i.status is Status.GONE,
                 within(env_seconds("ESTATE_DELETE_TIMEOUT_SECONDS", 300)), _poll(), f"{c.name} instance {iid} gone")
    except WaitTimeout as late:
        raise CloudError(f"{c.name} still lists instance {iid} as {late.last.detail} after delete; "
                         "it stays in state so the next destroy tries again") from late


def _inputs(props: Dict[str, Any]) -> Dict[str, Any]:
    """The inputs as they came, echoed into the outputs."""
    return {k: props.get(k) for k in INPUT_KEYS}


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
