"""A Vast.ai API on loopback: offer search, asks, instances, bids, credit and preemption.

It takes what the official ``vastai`` CLI/SDK sends (the v0 paths and the paginated v1 instance list) and
prices as Vast.ai does: a search that names ``allocated_storage`` quotes the disk in ``dph_total``, and an
instance bills its offer's price plus the disk it was created with. Strings come back as Vast.ai has
sent them, ``public_ipaddr`` with a trailing newline.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional

from loopback.base import FakeServer, Reply

_OPS = {
    "eq": lambda a, b: a == b, "neq": lambda a, b: a != b, "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b, "in": lambda a, b: a in b, "notin": lambda a, b: a not in b,
}


def _like(field_value: Any, value: Any) -> Any:
    """The query value in the field's type: the CLI sends numbers from its query string as strings
    (``num_gpus: {"eq": "2"}``), which Vast.ai compares as numbers."""
    if isinstance(field_value, bool) or not isinstance(field_value, (int, float)):
        return value
    if isinstance(value, list):
        return [_like(field_value, v) for v in value]
    try:
        return float(value) if isinstance(value, str) else value
    except ValueError:
        return value


class FakeVast(FakeServer):
    vendor = "vastai"

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.credit = 100.0
        self.ipaddr_suffix = "\n"
        """What Vast.ai has appended to ``public_ipaddr`` (a client must strip it)."""
        self.boot_polls = 1
        self.boot_seconds: Optional[float] = None
        """When set, an instance loads for this long from when it is first read loading, however often it
        is read (a booting machine's clock), instead of for ``boot_polls`` reads."""
        self.instances: Dict[int, Dict[str, Any]] = {}
        self.on_create: List[Callable[[Dict[str, Any]], None]] = []
        """Called with each instance as it is created (before its create answers): what the sandbox runs as the
        machine (a container of its image) and where its SSH is."""
        self.on_stop: List[Callable[[Dict[str, Any]], None]] = []
        """Called with an instance its machine stops under it (outbid): its container stops."""
        self.on_ssh_key: List[Callable[[Dict[str, Any]], None]] = []
        """Called with an instance once a key is attached to it (``ssh_keys``): its SSH lets the key in."""
        self.on_delete: List[Callable[[Dict[str, Any]], None]] = []
        """Called with an instance once it is destroyed or taken back: its container goes."""
        self.offers: List[Dict[str, Any]] = [
            self.offer(5001, "RTX 3090", 2, 0.32, 0.18, "SE", 0.98),
            self.offer(5002, "RTX 3090", 2, 0.28, 0.15, "US", 0.93),
            self.offer(5003, "RTX 4090", 1, 0.34, 0.22, "DE", 0.99),
            self.offer(5004, "RTX 4090", 1, 0.30, 0.20, "US", 0.97),
        ]

    @staticmethod
    def offer(oid: int, gpu: str, n: int, dph: float, min_bid: float, geo: str, rel: float) -> Dict[str, Any]:
        return {"id": oid, "gpu_name": gpu, "num_gpus": n, "dph_total": dph, "dph_base": dph * 0.9, "min_bid": min_bid,
                "storage_cost": 0.1, "geolocation": geo, "gpu_ram": 24576, "cpu_ram": 64000, "cpu_cores_effective": 16,
                "disk_space": 500, "reliability2": rel, "reliability": rel, "rentable": True, "rented": False,
                "verified": True, "inet_down": 800, "direct_port_count": 20, "cuda_max_good": 12.4}

    def alive(self) -> List[Dict[str, Any]]:
        with self.lock:
            return list(self.instances.values())

    def outbid(self, iid: int, min_bid: float) -> None:
        """Someone bids ``min_bid`` for the machine: as on Vast.ai the bid instance is paused, not deleted
        (it stays listed and bills its disk) and no start runs it until its bid is raised."""
        with self.lock:
            inst = self.instances[int(iid)]
            self._offer_of(inst)["min_bid"] = min_bid
            inst["actual_status"], inst["cur_state"] = "stopped", "stopped"
            for hook in self.on_stop:
                hook(inst)

    def busy(self, iid: int, busy: bool = True) -> None:
        """Other renters hold the machine's GPUs: a start is accepted and sits in ``scheduling``."""
        with self.lock:
            self._offer_of(self.instances[int(iid)])["busy"] = busy

    def _offer_of(self, inst: Dict[str, Any]) -> Dict[str, Any]:
        return next(o for o in self.offers if o["id"] == inst["offer_id"])

    def _runnable(self, inst: Dict[str, Any]) -> str:
        """What a start makes of the instance: loading (it will run), stopped (outbid) or scheduling."""
        offer = self._offer_of(inst)
        if inst["bid"] is not None and inst["bid"] < offer["min_bid"]:
            return "stopped"
        return "scheduling" if offer.get("busy") else "loading"

    def preempt(self, iid: int) -> None:
        """An outbid interruptible instance: the machine is taken back and the instance disappears."""
        with self.lock:
            inst = self.instances.pop(int(iid))
            self._return_offer(inst)
            for hook in self.on_delete:
                hook(inst)

    def _return_offer(self, inst: Dict[str, Any]) -> None:
        for o in self.offers:
            if o["id"] == inst["offer_id"]:
                o["rented"] = False

    def _view(self, inst: Dict[str, Any]) -> Dict[str, Any]:
        if inst["actual_status"] in (None, "loading"):
            inst["polls"] += 1
            since = inst.setdefault("loading_since", time.monotonic())
            if (self.boot_seconds is None and inst["polls"] >= self.boot_polls) or (
                    self.boot_seconds is not None and time.monotonic() - since >= self.boot_seconds):
                inst["actual_status"] = "running" if inst["intended_status"] == "running" else "stopped"
                del inst["loading_since"]
            else:
                inst["actual_status"] = "loading"
        view = {k: v for k, v in inst.items() if k not in ("polls", "loading_since", "ssh_keys")}
        if inst["bid"] is not None:
            view.update(is_bid=True, dph_base=inst["bid"], min_bid=self._offer_of(inst)["min_bid"])
        return view

    def bill(self, instance_id, per_hour: float) -> None:
        """Drive what the instance bills by the hour from now on, as the vendor reports it ('dph_total')."""
        with self.lock:
            self.instances[int(instance_id)]["dph_total"] = per_hour

    def route(self, method: str, path: str, query: Dict[str, str], body: Any) -> Reply:
        if path.startswith("/api/v0"):
            path = path[len("/api/v0"):]
        parts = [p for p in path.split("/") if p]
        with self.lock:
            if method == "GET" and parts == ["api", "v1", "instances"]:
                views = [self._view(i) for i in self.instances.values()]
                return 200, {"instances": views, "next_token": None, "total_instances": len(views)}
            if method == "POST" and parts == ["bundles"]:
                return 200, {"offers": self._search(body)}
            if method == "PUT" and len(parts) == 2 and parts[0] == "asks":
                return self._create(int(parts[1]), body)
            if method == "GET" and parts == ["instances"]:
                return 200, {"instances": [self._view(i) for i in self.instances.values()]}
            if method == "PUT" and len(parts) == 3 and parts[:2] == ["instances", "bid_price"]:
                inst = self.instances.get(int(parts[2]))
                if inst is None:
                    return 404, {"success": False, "error": "no_such_instance", "msg": "Instance not found"}
                inst["bid"] = body.get("price")
                if inst["intended_status"] == "running" and inst["actual_status"] in ("stopped", "scheduling"):
                    state = self._runnable(inst)
                    inst["actual_status"], inst["polls"] = (None, 0) if state == "loading" else (state, 0)
                return 200, {"success": True}
            if method == "POST" and len(parts) == 3 and parts[0] == "instances" and parts[2] == "ssh":
                # What `vastai attach ssh` sends (vastai/api/keys.py: attach_ssh): the key into the instance's SSH.
                inst = self.instances.get(int(parts[1]))
                if inst is None:
                    return 404, {"success": False, "error": "no_such_instance", "msg": "Instance not found"}
                inst.setdefault("ssh_keys", []).append(str(body.get("ssh_key") or "").strip())
                for hook in self.on_ssh_key:
                    hook(inst)
                return 200, {"success": True}
            if len(parts) == 2 and parts[0] == "instances":
                inst = self.instances.get(int(parts[1]))
                if inst is None:
                    return 404, {"success": False, "error": "no_such_instance", "msg": "Instance not found"}
                if method == "GET":
                    return 200, {"instances": self._view(inst)}
                if method == "DELETE":
                    self.instances.pop(inst["id"])
                    self._return_offer(inst)
                    for hook in self.on_delete:
                        hook(inst)
                    return 200, {"success": True}
                if method == "PUT":
                    if body.get("state") == "running":
                        inst["intended_status"] = "running"
                        state = self._runnable(inst)
                        inst["actual_status"], inst["polls"] = (None, 0) if state == "loading" else (state, 0)
                    elif "state" in body:
                        inst["intended_status"] = inst["actual_status"] = body["state"]
                    if "label" in body:
                        inst["label"] = body["label"]
                    return 200, {"success": True}
        return 404, {"success": False, "error": "not_found", "msg": path}

    @staticmethod
    def storage_per_hour(offer: Dict[str, Any], disk_gb: Any) -> float:
        """What the disk adds per hour: ``storage_cost`` is $/GB per month."""
        return float(offer["storage_cost"]) * float(disk_gb or 0) / 730.0

    def _search(self, q: Dict[str, Any]) -> List[Dict[str, Any]]:
        out = []
        for o in self.offers:
            ok = True
            for field, cond in q.items():
                if field in ("order", "type", "limit", "allocated_storage") or not isinstance(cond, dict):
                    continue
                for op, val in cond.items():
                    if field in o and not _OPS[op](o[field], _like(o[field], val)):
                        ok = False
            if ok:
                out.append({**o, "dph_total": round(o["dph_total"] + self.storage_per_hour(o, q.get("allocated_storage")), 6)})
        key = (q.get("order") or [["dph_total", "asc"]])[0][0]
        return sorted(out, key=lambda o: o.get(key, 0))[: int(q.get("limit", 64))]

    def _create(self, oid: int, body: Dict[str, Any]) -> Reply:
        offer = next((o for o in self.offers if o["id"] == oid and not o["rented"]), None)
        if offer is None:
            return 404, {"success": False, "error": "no_such_ask", "msg": f"Instance type {oid} no longer available"}
        if not body.get("cancel_unavail"):
            return 400, {"success": False, "error": "invalid_args", "msg": "test server requires cancel_unavail"}
        if self.credit <= 0:
            return 400, {"success": False, "error": "insufficient_credit", "msg": "Insufficient credit"}
        price = body.get("price")
        if price is not None and price < offer["min_bid"]:
            return 400, {"success": False, "error": "invalid_args", "msg": f"bid {price} below min_bid {offer['min_bid']}"}
        offer["rented"] = True
        iid = self.next_id()
        ports = sorted(int(k.split()[1].split(":")[0]) for k in (body.get("env") or {}) if k.startswith("-p "))
        self.instances[iid] = {
            "id": iid, "label": body.get("label"), "actual_status": None, "intended_status": "running",
            "cur_state": "running", "next_state": "running", "status_msg": "", "image": body.get("image"),
            "ssh_host": self.public_address, "ssh_port": 22000 + iid % 1000, "public_ipaddr": self.public_address + self.ipaddr_suffix,
            "dph_total": round((price if price is not None else offer["dph_total"])
                               + self.storage_per_hour(offer, body.get("disk")), 6),
            "bid": price, "offer_id": oid, "disk": body.get("disk"),
            "ports": {f"{p}/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(h)}] for p, h in self.ports_for(ports).items()},
            "env": body.get("env"), "onstart": body.get("onstart"), "polls": 0, "start_date": time.time(),
            # As Vast.ai lists them (readable by anyone holding the account's API key).
            "extra_env": [[k, v] for k, v in (body.get("env") or {}).items() if not k.startswith("-")],
        }
        for hook in self.on_create:
            hook(self.instances[iid])
        return 200, {"success": True, "new_contract": iid}
