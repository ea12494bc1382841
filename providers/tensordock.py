"""TensorDock v2 REST client: VM instances rented by the hour, configured by cloud-init."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field

from core.vendors import Vendor
from core import catalog
from core.pricing import NodeRequest, Offer
from providers.gpu_cloud import GpuCloud, Instance, LaunchSpec, Status, api_session
from providers.http import CloudError, InsufficientCredit, NoCapacity, NotFound, OfferTaken, json_body

__all__ = ["Client"]

MIN_STORAGE_GB = 100

_STATUS = {
    "running": Status.RUNNING,
    "starting": Status.PENDING,
    "creating": Status.PENDING,
    "provisioning": Status.PENDING,
    "stopping": Status.STOPPING,
    "stopped": Status.STOPPED,
    "stoppeddisassociated": Status.STOPPED,
    "deleting": Status.GONE,
    "deleted": Status.GONE,
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _GpuAvail(_Model):
    v0Name: str
    availableCount: int = 0
    price_per_hr: float = 0.0


class _Pricing(_Model):
    per_vcpu_hr: float = 0.0
    per_gb_ram_hr: float = 0.0
    per_gb_storage_hr: float = 0.0


class _Resources(_Model):
    gpus: List[_GpuAvail] = Field(default_factory=list)
    available_ports: List[int] = Field(default_factory=list)
    max_vcpus: int = 0
    max_ram_gb: int = 0
    max_storage_gb: int = 0
    has_public_ip_available: bool = True


class _Location(_Model):
    city: str = ""
    stateprovince: str = ""
    country: str = ""


class _Hostnode(_Model):
    id: str
    location_id: str = ""
    uptime_percentage: float = 0.0
    available_resources: _Resources
    pricing: _Pricing = Field(default_factory=_Pricing)
    location: _Location = Field(default_factory=_Location)


def _errors(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return "; ".join(str(e.get("detail") or e.get("title") or e) for e in body["errors"] if isinstance(e, dict))
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or body)
    return str(body)


def _ports(raw: Any) -> Dict[int, int]:
    """portForwards comes as a list of {internal_port, external_port} or as a map: accept both."""
    out: Dict[int, int] = {}
    if isinstance(raw, dict):
        for k, v in raw.items():
            out[int(k)] = int(v)
    elif isinstance(raw, list):
        for pf in raw:
            out[int(pf["internal_port"])] = int(pf["external_port"])
    return out


def _instance(raw: Dict[str, Any]) -> Instance:
    data = raw.get("data", raw) if isinstance(raw.get("data"), dict) else raw
    attrs = data.get("attributes") if isinstance(data.get("attributes"), dict) else {}
    merged = {**attrs, **data}
    status = _STATUS.get(str(merged.get("status", "")).lower(), Status.PENDING)
    ports = _ports(merged.get("portForwards") or merged.get("port_forwards"))
    address = merged.get("ipAddress") or merged.get("ip_address")
    return Instance(
        id=str(merged["id"]),
        label=str(merged.get("name", "")),
        status=status,
        address=address,
        ssh_host=address,
        ssh_port=ports.get(22, 22) if address else None,
        ports=ports,
        price_per_hour=merged.get("rateHourly"),
        detail=str(merged.get("status", "")),
    )


class Client(GpuCloud):
    name = Vendor.TENSORDOCK.value

    def __init__(self, config: Dict[str, str]):
        self.http = api_session(Vendor.TENSORDOCK, config, "TensorDock")

    def close(self) -> None:
        self.http.close()

    def offers(self, request: NodeRequest) -> List[Offer]:
        resp = self.http.request("GET", "/hostnodes")
        if resp.status_code != 200:
            raise CloudError(f"TensorDock: listing host nodes failed ({resp.status_code}): {_errors(json_body(resp))}")
        body = json_body(resp)
        nodes = (body.get("data") or {}).get("hostnodes", [])
        disk = max(request.disk_gb, MIN_STORAGE_GB)
        out = []
        for raw in nodes:
            node = _Hostnode.model_validate(raw)
            res = node.available_resources
            for gpu in res.gpus:
                canon = catalog.canonical_gpu(gpu.v0Name)
                if canon != request.gpu_model or gpu.availableCount < request.gpu_count:
                    continue
                p = node.pricing
                price = (
                    gpu.price_per_hr * request.gpu_count
                    + p.per_vcpu_hr * request.vcpu
                    + p.per_gb_ram_hr * request.ram_gb
                    + p.per_gb_storage_hr * disk
                )
                loc = node.location
                out.append(Offer(
                    provider=self.name,
                    offer_id=f"{node.id}/{gpu.v0Name}",
                    region=", ".join(x for x in (loc.city, loc.stateprovince, loc.country) if x),
                    gpu_model=canon,
                    gpu_count=request.gpu_count,
                    vram_gb=catalog.gpu_vram_gb(canon) * request.gpu_count,
                    vcpu=res.max_vcpus,
                    ram_gb=res.max_ram_gb,
                    disk_gb=res.max_storage_gb,
                    price_per_hour=round(price, 4),
                    reliability=node.uptime_percentage / 100.0 if node.uptime_percentage > 1 else node.uptime_percentage,
                    spot=False,
                ))
        return out

    def _hostnode(self, hostnode_id: str) -> Optional[_Hostnode]:
        resp = self.http.request("GET", "/hostnodes")
        if resp.status_code != 200:
            raise CloudError(f"TensorDock: listing host nodes failed ({resp.status_code}): {_errors(json_body(resp))}")
        for raw in (json_body(resp).get("data") or {}).get("hostnodes", []):
            if raw.get("id") == hostnode_id:
                return _Hostnode.model_validate(raw)
        return None

    def _port_forwards(self, hostnode_id: str, internal: List[int]) -> List[Dict[str, int]]:
        """22 and each published port, each on a distinct port the host hands out (``available_ports``):
        without a dedicated IP, ``external_port == internal_port`` is generally not free."""
        node = self._hostnode(hostnode_id)
        free = sorted(node.available_resources.available_ports) if node else []
        if len(free) < len(internal):
            raise OfferTaken(f"TensorDock: host node {hostnode_id} has {len(free)} free ports, the node needs "
                             f"{len(internal)}")
        return [{"internal_port": p, "external_port": e} for p, e in zip(internal, free)]

    def launch(self, offer: Offer, spec: LaunchSpec) -> str:
        hostnode_id, _, v0name = offer.offer_id.partition("/")
        if not spec.ssh_public_key:
            raise CloudError("TensorDock needs an SSH key: set ssh.public_key on the node")
        attributes: Dict[str, Any] = {
            "name": spec.label,
            "type": "virtualmachine",
            "image": spec.image,
            "resources": {
                "vcpu_count": spec.vcpu,
                "ram_gb": spec.ram_gb,
                "storage_gb": max(spec.disk_gb, MIN_STORAGE_GB),
                # The number of GPUs rented (and billed), not what the host has free.
                "gpus": {v0name: {"count": offer.gpu_count}},
            },
            "hostnode_id": hostnode_id,
            "useDedicatedIp": False,
            "port_forwards": self._port_forwards(hostnode_id, [22, *spec.ports]),
            "ssh_key": spec.ssh_public_key,
        }
        if spec.cloud_init:
            import yaml

            ci = yaml.safe_load(spec.cloud_init) or {}
            attributes["cloud_init"] = {k: ci[k] for k in ("runcmd", "packages", "write_files") if k in ci}
        resp = self.http.request(
            "POST", "/instances", idempotent=False,
            json={"data": {"type": "virtualmachine", "attributes": attributes}},
        )
        body = json_body(resp)
        if resp.status_code in (200, 201, 202):
            data = body.get("data") or {}
            return str(data["id"])
        msg = _errors(body)
        low = msg.lower()
        if "balance" in low or "insufficient" in low or resp.status_code == 402:
            raise InsufficientCredit(f"TensorDock: balance too low ({msg}); add at least $1 of credit", resp.status_code)
        if "not available" in low or "no longer" in low or "capacity" in low or resp.status_code == 409:
            raise OfferTaken(f"TensorDock: host node {hostnode_id} cannot take this ({msg})", resp.status_code)
        raise CloudError(f"TensorDock: create failed ({resp.status_code}): {msg}", resp.status_code, body)

    def get(self, instance_id: str) -> Optional[Instance]:
        resp = self.http.request("GET", f"/instances/{instance_id}")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise CloudError(f"TensorDock: reading instance {instance_id} failed ({resp.status_code})")
        return _instance(json_body(resp))

    def listed(self) -> List[Instance]:
        resp = self.http.request("GET", "/instances")
        if resp.status_code != 200:
            raise CloudError(f"TensorDock: listing instances failed ({resp.status_code})")
        body = json_body(resp)
        raws = (body.get("data") or {}).get("instances", []) if isinstance(body.get("data"), dict) else body.get("data", [])
        return [_instance(r) for r in raws or []]

    def find(self, label: str) -> List[Instance]:
        # List items may carry only id, name and status: read each match for its address, ports and rate.
        found = [self.get(i.id) for i in self.listed() if i.label == label]
        return [i for i in found if i is not None and i.status is not Status.GONE]

    def _action(self, instance_id: str, action: str) -> None:
        resp = self.http.request("POST", f"/instances/{instance_id}/{action}")
        if resp.status_code == 404:
            raise NotFound(f"TensorDock: instance {instance_id} is gone")
        if resp.status_code >= 300:
            raise CloudError(f"TensorDock: {action} {instance_id} failed ({resp.status_code}): {_errors(json_body(resp))}")

    def start(self, instance_id: str) -> None:
        try:
            self._action(instance_id, "start")
        except CloudError as err:
            if "not enough" in str(err).lower() or "unavailable" in str(err).lower():
                raise NoCapacity(f"TensorDock: cannot restart {instance_id}: its host has no free GPU ({err})") from err
            raise

    def stop(self, instance_id: str) -> None:
        self._action(instance_id, "stop")

    def terminate(self, instance_id: str) -> None:
        resp = self.http.request("DELETE", f"/instances/{instance_id}")
        if resp.status_code in (200, 202, 204, 404):
            return
        raise CloudError(f"TensorDock: delete {instance_id} failed ({resp.status_code}): {_errors(json_body(resp))}")
