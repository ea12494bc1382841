"""Vast.ai REST client: container instances on marketplace offers, on-demand or interruptible bids."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict

from core.vendors import Vendor
from core import catalog
from core.pricing import NodeRequest, Offer
from providers.gpu_cloud import GpuCloud, Instance, LaunchSpec, Status, api_session, env_seconds
from providers.http import (CloudError, InsufficientCredit, NoCapacity, NotFound, OfferTaken, Outbid,
                            json_body)
from providers.wait import WaitTimeout, wait_for, within

__all__ = ["Client"]


_STATUS = {
    None: Status.PENDING,
    "loading": Status.PENDING,
    "created": Status.PENDING,
    "scheduling": Status.PENDING,
    "running": Status.RUNNING,
    "stopping": Status.STOPPING,
    "stopped": Status.STOPPED,
    "exited": Status.STOPPED,
    "frozen": Status.STOPPED,
    "offline": Status.STOPPED,
    "deleted": Status.GONE,
    "destroyed": Status.GONE,
}


class _Offer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int
    dph_total: float
    min_bid: Optional[float] = None
    geolocation: Optional[str] = ""
    gpu_name: str
    num_gpus: int
    gpu_ram: float = 0  # MB per GPU
    cpu_cores_effective: Optional[float] = None
    cpu_ram: float = 0  # MB
    disk_space: float = 0
    reliability: Optional[float] = None
    reliability2: Optional[float] = None


def _error(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("error") or "") + (f": {body.get('msg')}" if body.get("msg") else "")
    return str(body)


def _stripped(value: Any) -> Any:
    """Vast.ai's strings may carry whitespace (``public_ipaddr`` has come with a trailing newline)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return {k: _stripped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stripped(v) for v in value]
    return value


def _ports(raw: Any) -> Dict[int, int]:
    """``ports`` as a map ``{"11434/tcp": [{"HostPort": "41234"}]}`` or as a list of such entries."""
    out: Dict[int, int] = {}
    items = raw.items() if isinstance(raw, dict) else (
        (e.get("PrivatePort") or e.get("port") or e.get("key"), [e]) for e in raw or [] if isinstance(e, dict))
    for key, binds in items:
        if key is None:
            continue
        binds = binds if isinstance(binds, list) else [binds]
        host = next((b.get("HostPort") or b.get("PublicPort") for b in binds if isinstance(b, dict)), None)
        if host:
            out[int(str(key).split("/")[0])] = int(host)
    return out


def _outbid(raw: Dict[str, Any]) -> Optional[float]:
    """The machine's current minimum bid when this bid instance's bid is below it, else None."""
    if not raw.get("is_bid") or raw.get("min_bid") is None or raw.get("dph_base") is None:
        return None
    return float(raw["min_bid"]) if float(raw["dph_base"]) < float(raw["min_bid"]) else None


def _not_scheduling(raw: Dict[str, Any]) -> bool:
    """A start is past ``scheduling``: the machine's GPUs were free (or the instance is gone)."""
    return (str(raw.get("actual_status") or "") != "scheduling"
            and "scheduling" not in str(raw.get("status_msg") or "").lower())


def _instance(raw: Dict[str, Any]) -> Instance:
    raw = _stripped(raw)
    actual = raw.get("actual_status")
    intended = raw.get("intended_status")
    status = _STATUS.get(actual, Status.PENDING)
    if intended == "stopped" and status is Status.RUNNING:
        status = Status.STOPPING
    if _outbid(raw) is not None and status is not Status.RUNNING:
        # Outbid: Vast.ai pauses the instance (it stays listed, billing its disk) until the bid is raised.
        status = Status.STOPPED
        raw = {**raw, "status_msg": f"outbid: bid ${raw['dph_base']}/h below the machine's ${raw['min_bid']}/h"}
    ports = _ports(raw.get("ports"))
    ssh_port = raw.get("ssh_port")
    return Instance(
        id=str(raw["id"]),
        label=str(raw.get("label") or ""),
        status=status,
        address=raw.get("public_ipaddr"),
        ssh_host=raw.get("ssh_host"),
        ssh_port=int(ssh_port) if ssh_port else None,
        ports=ports,
        price_per_hour=raw.get("dph_total"),
        detail=str(raw.get("status_msg") or actual or ""),
    )


class Client(GpuCloud):
    name = Vendor.VASTAI.value
    single_rental_offers = True

    def __init__(self, config: Dict[str, str]):
        self.http = api_session(Vendor.VASTAI, config, "Vast.ai")

    def close(self) -> None:
        self.http.close()

    def offers(self, request: NodeRequest) -> List[Offer]:
        names = catalog.vendor_gpu_names(self.name, request.gpu_model)
        if not names:
            return []  # Vast.ai does not rent this GPU (core/rules refuses such a node at preview)
        query: Dict[str, Any] = {
            "gpu_name": {"in": names} if len(names) > 1 else {"eq": names[0]},
            "num_gpus": {"eq": request.gpu_count},
            "disk_space": {"gte": request.disk_gb},
            "cpu_ram": {"gte": request.ram_gb * 1000},
            "rentable": {"eq": True},
            "rented": {"eq": False},
            "verified": {"eq": True},
            "external": {"eq": False},
            # As the official CLI does: with the disk named, dph_total includes its price.
            "allocated_storage": request.disk_gb,
            "order": [["dph_total", "asc"]],
            "type": "bid" if request.spot else "on-demand",
            "limit": 64,
        }
        if request.min_reliability is not None:
            query["reliability2"] = {"gte": request.min_reliability}
        if request.regions:
            query["geolocation"] = {"in": list(request.regions)}
        resp = self.http.request("POST", "/bundles/", json=query)
        if resp.status_code != 200:
            raise CloudError(f"Vast.ai: offer search failed ({resp.status_code}): {_error(json_body(resp))}")
        out = []
        for raw in json_body(resp).get("offers", []):
            o = _Offer.model_validate(raw)
            canon = catalog.canonical_gpu(o.gpu_name, o.gpu_ram / 1024.0 if o.gpu_ram else None)
            if canon != request.gpu_model:
                continue
            price = o.dph_total
            if request.spot:
                price = max(o.min_bid or o.dph_total, 0.0)
            out.append(Offer(
                provider=self.name,
                offer_id=str(o.id),
                region=o.geolocation or "",
                gpu_model=canon,
                gpu_count=o.num_gpus,
                vram_gb=int(round(o.gpu_ram / 1024.0)) * o.num_gpus if o.gpu_ram else 0,
                vcpu=int(o.cpu_cores_effective or 0),
                ram_gb=int(o.cpu_ram // 1000),
                disk_gb=int(o.disk_space),
                price_per_hour=round(price, 4),
                reliability=o.reliability2 if o.reliability2 is not None else o.reliability,
                spot=request.spot,
                min_bid=o.min_bid,
            ))
        return out

    def launch(self, offer: Offer, spec: LaunchSpec) -> str:
        env: Dict[str, str] = {f"-p {p}:{p}": "1" for p in spec.ports}
        env.update(spec.env)
        body: Dict[str, Any] = {
            "client_id": "me",
            "image": spec.image,
            "disk": spec.disk_gb,
            "label": spec.label,
            "env": env,
            "runtype": "ssh_direc ssh_proxy",
            "onstart": spec.onstart,
            "cancel_unavail": True,
        }
        if offer.spot:
            body["price"] = spec.bid_per_hour or offer.min_bid or offer.price_per_hour
        resp = self.http.request("PUT", f"/asks/{offer.offer_id}/", idempotent=False, json=body)
        data = json_body(resp)
        if resp.status_code == 200 and data.get("success") and data.get("new_contract"):
            return str(data["new_contract"])
        if isinstance(data, dict) and data.get("new_contract"):
            # A failed bid can still leave an instance behind: never let it bill behind the state's back.
            self.terminate(str(data["new_contract"]))
        err = str(data.get("error", "")) if isinstance(data, dict) else ""
        msg = _error(data)
        if err == "no_such_ask" or resp.status_code in (404, 410):
            raise OfferTaken(f"Vast.ai: offer {offer.offer_id} is no longer available ({msg})", resp.status_code)
        if err == "insufficient_credit" or "credit" in msg.lower():
            raise InsufficientCredit(f"Vast.ai: not enough credit to rent offer {offer.offer_id}; add credit ({msg})",
                                     resp.status_code)
        raise CloudError(f"Vast.ai: create failed ({resp.status_code}): {msg}", resp.status_code, data)

    def _raw(self, instance_id: str) -> Optional[Dict[str, Any]]:
        """The instance as Vast.ai lists it (strings stripped), or None when it no longer knows it."""
        resp = self.http.request("GET", f"/instances/{instance_id}/")
        if resp.status_code == 404:
            return None
        body = json_body(resp)
        if resp.status_code != 200:
            if _error(body).startswith("no_such_instance"):
                return None
            raise CloudError(f"Vast.ai: reading instance {instance_id} failed ({resp.status_code}): {_error(body)}")
        raw = body.get("instances")
        return _stripped(raw) if raw else None

    def get(self, instance_id: str) -> Optional[Instance]:
        raw = self._raw(instance_id)
        return _instance(raw) if raw else None

    def listed(self) -> List[Instance]:
        resp = self.http.request("GET", "/instances/", params={"owner": "me"})
        if resp.status_code != 200:
            raise CloudError(f"Vast.ai: listing instances failed ({resp.status_code})")
        return [_instance(r) for r in json_body(resp).get("instances", [])]

    def _put(self, instance_id: str, body: Dict[str, Any], what: str) -> None:
        resp = self.http.request("PUT", f"/instances/{instance_id}/", json=body)
        data = json_body(resp)
        if resp.status_code == 404 or _error(data).startswith("no_such_instance"):
            raise NotFound(f"Vast.ai: instance {instance_id} is gone")
        if resp.status_code != 200 or (isinstance(data, dict) and data.get("success") is False):
            msg = _error(data)
            if what == "start" and ("unavail" in msg.lower() or "resources" in msg.lower()):
                raise NoCapacity(f"Vast.ai: cannot start {instance_id}: its machine's GPUs are taken ({msg})")
            raise CloudError(f"Vast.ai: {what} {instance_id} failed ({resp.status_code}): {msg}")

    def start(self, instance_id: str) -> None:
        """Start, or say at once why it cannot: an outbid bid instance (``Outbid``: raise the bid), or a
        machine whose GPUs are taken, where Vast.ai accepts the start and leaves it in ``scheduling``
        (given ``ESTATE_SCHEDULING_SECONDS``, then put back to stopped: ``NoCapacity``)."""
        raw = self._raw(instance_id)
        min_bid = _outbid(raw) if raw else None
        if min_bid is not None:
            raise Outbid(f"Vast.ai: instance {instance_id} is outbid (its bid ${raw['dph_base']}/h, the machine "
                         f"now asks ${min_bid}/h); it cannot start until the bid is raised", min_bid)
        self._put(instance_id, {"state": "running"}, "start")
        try:
            wait_for(lambda: self._raw(instance_id) or {}, _not_scheduling,
                     within(env_seconds("ESTATE_SCHEDULING_SECONDS", 120)), env_seconds("ESTATE_POLL_SECONDS", 5),
                     f"Vast.ai instance {instance_id} out of scheduling")
        except WaitTimeout as late:
            self._put(instance_id, {"state": "stopped"}, "stop")
            raise NoCapacity(f"Vast.ai: instance {instance_id} stayed in scheduling: its machine's GPUs are "
                             "taken by others; it is left stopped (its disk kept). Try again later, or "
                             "destroy and re-create the node to place it elsewhere") from late

    def stop(self, instance_id: str) -> None:
        self._put(instance_id, {"state": "stopped"}, "stop")

    def attach_ssh_key(self, instance_id: str, public_key: str) -> None:
        """The key into the instance's SSH, as ``vastai attach ssh`` does (``POST /instances/<id>/ssh/``)."""
        resp = self.http.request("POST", f"/instances/{instance_id}/ssh/", json={"ssh_key": public_key})
        data = json_body(resp)
        if resp.status_code == 404 or _error(data).startswith("no_such_instance"):
            raise NotFound(f"Vast.ai: instance {instance_id} is gone")
        if resp.status_code != 200 or (isinstance(data, dict) and data.get("success") is False):
            raise CloudError(f"Vast.ai: attaching an SSH key to {instance_id} failed ({resp.status_code}): {_error(data)}")

    def set_bid(self, instance_id: str, bid_per_hour: float) -> None:
        resp = self.http.request("PUT", f"/instances/bid_price/{instance_id}/",
                                 json={"client_id": "me", "price": bid_per_hour})
        if resp.status_code != 200:
            raise CloudError(f"Vast.ai: changing the bid of {instance_id} failed ({resp.status_code}): "
                             f"{_error(json_body(resp))}")

    def terminate(self, instance_id: str) -> None:
        resp = self.http.request("DELETE", f"/instances/{instance_id}/")
        data = json_body(resp)
        if resp.status_code in (200, 204) and not (isinstance(data, dict) and data.get("success") is False):
            return
        if resp.status_code == 404 or _error(data).startswith("no_such_instance"):
            return
        raise CloudError(f"Vast.ai: destroy {instance_id} failed ({resp.status_code}): {_error(data)}")
