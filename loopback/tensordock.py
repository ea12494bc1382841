"""A TensorDock v2 API on loopback: host nodes, VM instances with power states, balance."""
from __future__ import annotations

from typing import Any, Callable, Dict, List

from loopback.base import FakeServer, Reply


class FakeTensorDock(FakeServer):
    vendor = "tensordock"

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.token = "td-test-token"
        self.balance = 50.0
        self.boot_polls = 1
        self.instances: Dict[str, Dict[str, Any]] = {}
        self.on_delete: List[Callable[[Dict[str, Any]], None]] = []
        """Called with each instance as it is deleted (the sandbox wipes the machine that stood for it)."""
        self.on_create: List[Callable[[Dict[str, Any]], None]] = []
        """Called with each instance as it is created (the sandbox boots the machine that stands for it)."""
        self.hostnodes: List[Dict[str, Any]] = [
            self.hostnode("hn-fra-1", "Frankfurt", "Germany", "geforcertx4090-pcie-24gb", 0.35, 4, uptime=99.5),
            self.hostnode("hn-ams-1", "Amsterdam", "Netherlands", "geforcertx4090-pcie-24gb", 0.33, 2, uptime=98.0),
            self.hostnode("hn-nyc-1", "New York", "United States", "geforcertx3090-pcie-24gb", 0.20, 2, uptime=99.0),
        ]

    @staticmethod
    def hostnode(hid: str, city: str, country: str, gpu: str, price: float, count: int, uptime: float = 99.0) -> Dict[str, Any]:
        return {
            "id": hid, "location_id": f"loc-{hid}", "uptime_percentage": uptime,
            "available_resources": {
                "gpus": [{"v0Name": gpu, "availableCount": count, "price_per_hr": price}],
                "max_vcpus": 32, "max_ram_gb": 128, "max_storage_gb": 2000,
                # High ports handed out per host; without a dedicated IP each external_port must be one of them.
                "available_ports": list(range(20000, 20010)), "has_public_ip_available": True,
            },
            "pricing": {"per_vcpu_hr": 0.003, "per_gb_ram_hr": 0.002, "per_gb_storage_hr": 0.00005},
            "location": {"city": city, "stateprovince": "", "country": country},
        }

    def alive(self) -> List[Dict[str, Any]]:
        with self.lock:
            return [i for i in self.instances.values() if i["status"] not in ("deleted",)]

    def _view(self, inst: Dict[str, Any]) -> Dict[str, Any]:
        if inst["status"] == "starting":
            inst["polls"] += 1
            if inst["polls"] >= self.boot_polls:
                inst["status"] = "running"
        return {k: v for k, v in inst.items() if k not in ("polls", "asked_ports")}

    def bill(self, instance_id, per_hour: float) -> None:
        """Drive what the instance bills by the hour from now on, as the vendor reports it ('rateHourly')."""
        with self.lock:
            self.instances[instance_id]["rateHourly"] = per_hour

    def route(self, method: str, path: str, query: Dict[str, str], body: Any) -> Reply:
        if path.startswith("/api/v2"):
            path = path[len("/api/v2"):]
        with self.lock:
            if method == "GET" and path == "/locations":
                return 200, {"data": {"locations": []}}
            if method == "GET" and path == "/hostnodes":
                return 200, {"data": {"hostnodes": self.hostnodes}}
            if method == "GET" and path == "/instances":
                # The list carries only type, id, name and status: address, ports and rate need a GET by id.
                return 200, {"data": {"instances": [
                    {"type": "virtualmachine", "id": v["id"], "name": v["name"], "status": v["status"]}
                    for v in (self._view(i) for i in self.instances.values() if i["status"] != "deleted")]}}
            if method == "POST" and path == "/instances":
                return self._create(body)
            parts = path.strip("/").split("/")
            if len(parts) >= 2 and parts[0] == "instances":
                inst = self.instances.get(parts[1])
                if inst is None or inst["status"] == "deleted":
                    return 404, {"errors": [{"status": 404, "title": "Not Found", "detail": "instance not found"}]}
                if method == "GET" and len(parts) == 2:
                    return 200, {"data": self._view(inst)}
                if method == "DELETE" and len(parts) == 2:
                    inst["status"] = "deleted"
                    self._release(inst)
                    for hook in self.on_delete:
                        hook(inst)
                    return 200, {"data": {"id": inst["id"], "status": "deleting"}}
                if method == "POST" and parts[2:] == ["stop"]:
                    inst["status"] = "stopped"
                    return 200, {"data": {"id": inst["id"], "status": "stopping"}}
                if method == "POST" and parts[2:] == ["start"]:
                    inst["status"] = "running"
                    return 200, {"data": {"id": inst["id"], "status": "starting"}}
        return 404, {"errors": [{"status": 404, "title": "Not Found", "detail": path}]}

    def _release(self, inst: Dict[str, Any]) -> None:
        """A deleted machine's GPUs and forwarded ports go back to its host node, to be rented again."""
        node = next((n for n in self.hostnodes if n["id"] == inst["hostnode_id"]), None)
        if node is None:
            return
        for name, spec in (inst["resources"].get("gpus") or {}).items():
            for gpu in node["available_resources"]["gpus"]:
                if gpu["v0Name"] == name:
                    gpu["availableCount"] += spec.get("count", 1)
        node["available_resources"]["available_ports"] += inst["asked_ports"]

    def _create(self, body: Dict[str, Any]) -> Reply:
        attrs = (body.get("data") or {}).get("attributes") or {}
        res = attrs.get("resources") or {}
        if res.get("storage_gb", 0) < 100:
            return 400, {"errors": [{"status": 400, "title": "Bad Request", "detail": "storage_gb must be >= 100"}]}
        if not attrs.get("ssh_key"):
            return 400, {"errors": [{"status": 400, "title": "Bad Request", "detail": "ssh_key required"}]}
        if self.balance < 1.0:
            return 402, {"errors": [{"status": 402, "title": "Payment Required", "detail": "Insufficient balance"}]}
        node = next((n for n in self.hostnodes if n["id"] == attrs.get("hostnode_id")), None)
        (gpu_name, spec), = (res.get("gpus") or {"?": {"count": 1}}).items()
        gpu = next((g for g in (node or {}).get("available_resources", {}).get("gpus", []) if g["v0Name"] == gpu_name), None)
        if node is None or gpu is None or gpu["availableCount"] < spec.get("count", 1):
            return 409, {"errors": [{"status": 409, "title": "Conflict", "detail": "Resources not available on host node"}]}
        free = node["available_resources"]["available_ports"]
        forwards = attrs.get("port_forwards") or []
        for pf in forwards:
            if pf.get("external_port") not in free:
                return 400, {"errors": [{"status": 400, "title": "Bad Request",
                                         "detail": f"external_port {pf.get('external_port')} is not available on host node {node['id']}"}]}
        if len({pf["external_port"] for pf in forwards}) != len(forwards):
            return 400, {"errors": [{"status": 400, "title": "Bad Request", "detail": "duplicate external_port"}]}
        for pf in forwards:
            free.remove(pf["external_port"])
        gpu["availableCount"] -= spec.get("count", 1)
        iid = f"td-{self.next_id()}"
        self.instances[iid] = {
            "id": iid, "name": attrs["name"], "status": "starting", "polls": 0,
            "ipAddress": self.public_address,
            # As asked; where the sandbox maps an internal port to a loopback server, that port is reported.
            "portForwards": [{"internal_port": pf["internal_port"],
                              "external_port": self.port_map.get(pf["internal_port"], pf["external_port"])}
                             for pf in forwards],
            "resources": res, "rateHourly": gpu["price_per_hr"] * spec.get("count", 1),
            "hostnode_id": node["id"], "cloud_init": attrs.get("cloud_init"),
            "asked_ports": [pf["external_port"] for pf in forwards],
        }
        for hook in self.on_create:
            hook(self.instances[iid])
        return 201, {"data": {"type": "virtualmachine", "id": iid, "name": attrs["name"], "status": "starting"}}
