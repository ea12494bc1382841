"""RunPod GraphQL client: GPU pods, on-demand or interruptible (spot) with a bid per GPU."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from core.vendors import Vendor
from core import catalog
from core.pricing import NodeRequest, Offer
from providers.gpu_cloud import GpuCloud, Instance, LaunchSpec, Status, api_session
from providers.http import CloudError, InsufficientCredit, NoCapacity, NotFound, json_body

__all__ = ["Client"]

NO_CAPACITY = "no longer any instances available"
POD_FIELDS = ("id name desiredStatus podType costPerHr gpuCount "
              "runtime { ports { ip isIpPublic privatePort publicPort type } }")
SPOT_POD_TYPE = "INTERRUPTABLE"


def _instance(pod: Dict[str, Any]) -> Instance:
    desired = str(pod.get("desiredStatus") or "").upper()
    runtime = pod.get("runtime")
    if desired == "RUNNING":
        status = Status.RUNNING if runtime else Status.PENDING
    elif desired in ("EXITED", "STOPPED"):
        status = Status.STOPPED
    elif desired == "TERMINATED":
        status = Status.GONE
    else:
        status = Status.PENDING
    ports: Dict[int, int] = {}
    address = ssh_host = None
    ssh_port = None
    for p in (runtime or {}).get("ports") or []:
        if p.get("isIpPublic") and p.get("publicPort"):
            ports[int(p["privatePort"])] = int(p["publicPort"])
            address = address or p.get("ip")
            if int(p["privatePort"]) == 22:
                ssh_host, ssh_port = p.get("ip"), int(p["publicPort"])
    return Instance(
        id=str(pod["id"]),
        label=str(pod.get("name") or ""),
        status=status,
        address=address,
        ssh_host=ssh_host,
        ssh_port=ssh_port,
        ports=ports,
        price_per_hour=pod.get("costPerHr"),
        detail=desired.lower(),
    )


class Client(GpuCloud):
    name = Vendor.RUNPOD.value

    def __init__(self, config: Dict[str, str]):
        self.http = api_session(Vendor.RUNPOD, config, "RunPod")

    def close(self) -> None:
        self.http.close()

    def _gql(self, query: str, variables: Optional[Dict[str, Any]] = None, *, idempotent: bool = True) -> Dict[str, Any]:
        resp = self.http.request("POST", "", idempotent=idempotent, json={"query": query, "variables": variables or {}})
        body = json_body(resp)
        if resp.status_code != 200:
            raise CloudError(f"RunPod: GraphQL call failed ({resp.status_code}): {body}", resp.status_code, body)
        errors = body.get("errors") or []
        if errors:
            msg = "; ".join(str(e.get("message", e)) for e in errors)
            low = msg.lower()
            if NO_CAPACITY in low or "not enough free gpus" in low:
                raise NoCapacity(f"RunPod: no capacity ({msg}); try another data center, GPU or price")
            if "balance" in low or "credit" in low:
                raise InsufficientCredit(f"RunPod: balance too low ({msg}); add credit")
            if "not found" in low:
                raise NotFound(f"RunPod: {msg}")
            raise CloudError(f"RunPod: {msg}", 200, body)
        return body.get("data") or {}

    def offers(self, request: NodeRequest) -> List[Offer]:
        names = catalog.vendor_gpu_names(self.name, request.gpu_model)
        if not names:
            return []  # RunPod does not rent this GPU (core/rules refuses such a node at preview)
        type_id = names[0]
        data = self._gql(
            "query GpuTypes($id: String, $n: Int) { gpuTypes(input: {id: $id}) { id displayName memoryInGb "
            "securePrice communityPrice secureSpotPrice communitySpotPrice "
            "lowestPrice(input: {gpuCount: $n}) { minimumBidPrice uninterruptablePrice } } }",
            {"id": type_id, "n": request.gpu_count},
        )
        out = []
        for gt in data.get("gpuTypes") or []:
            lowest = gt.get("lowestPrice") or {}
            per_gpu = lowest.get("minimumBidPrice") if request.spot else lowest.get("uninterruptablePrice")
            if per_gpu is None:
                continue  # RunPod lists the type but has none free at this count
            regions = request.regions or ("",)
            for region in regions:
                out.append(Offer(
                    provider=self.name,
                    offer_id=f"{gt['id']}@{region}" if region else gt["id"],
                    region=region,
                    gpu_model=request.gpu_model,
                    gpu_count=request.gpu_count,
                    vram_gb=int(gt.get("memoryInGb") or 0) * request.gpu_count,
                    price_per_hour=round(float(per_gpu) * request.gpu_count, 4),
                    spot=request.spot,
                    min_bid=float(per_gpu) if request.spot else None,
                ))
        return out

    def launch(self, offer: Offer, spec: LaunchSpec) -> str:
        # A pod runs its image's own entrypoint with the command given (dockerArgs); the pod API has no
        # start script. ``onstart`` is a Vast.ai node's (Vast.ai replaces every image's entrypoint, so its
        # script starts the workload itself): on RunPod the image's entrypoint does that. core/rules
        # refuses a RunPod failover for a node whose script does more than start its workload.
        type_id, _, region = offer.offer_id.partition("@")
        # /tcp, not /http: RunPod serves /http ports only through its HTTPS proxy
        # (https://<podId>-<port>.proxy.runpod.net), never on the pod's public IP, so an /http port has
        # no public port for the gateway and the model library to reach.
        port_list = ",".join(f"{p}/tcp" for p in (22, *spec.ports))
        inp: Dict[str, Any] = {
            "name": spec.label,
            "imageName": spec.image,
            "gpuTypeId": type_id,
            "gpuCount": offer.gpu_count,
            "cloudType": "ALL",
            "containerDiskInGb": spec.disk_gb,
            "volumeInGb": 0,
            "minVcpuCount": spec.vcpu,
            "minMemoryInGb": spec.ram_gb,
            "ports": port_list,
            "env": [{"key": k, "value": v} for k, v in sorted(spec.env.items())],
            "startSsh": True,
            "supportPublicIp": True,
        }
        if region:
            inp["dataCenterId"] = region
        if spec.args:
            # One string, split by RunPod on whitespace: core/rules refuses an argument holding any.
            inp["dockerArgs"] = " ".join(spec.args)
        if offer.spot:
            # The node's bid_per_hour is already per GPU-hour, as RunPod's bidPerGpu is.
            inp["bidPerGpu"] = spec.bid_per_hour if spec.bid_per_hour else offer.min_bid
            mutation = "mutation Rent($input: PodRentInterruptableInput!) { podRentInterruptable(input: $input) { id imageName machineId } }"
            key = "podRentInterruptable"
        else:
            mutation = "mutation Deploy($input: PodFindAndDeployOnDemandInput!) { podFindAndDeployOnDemand(input: $input) { id imageName machineId } }"
            key = "podFindAndDeployOnDemand"
        data = self._gql(mutation, {"input": inp}, idempotent=False)
        pod = data.get(key)
        if not pod or not pod.get("id"):
            raise NoCapacity(f"RunPod: deploy returned no pod for {type_id}")
        return str(pod["id"])

    def _pod(self, pod_id: str) -> Optional[Dict[str, Any]]:
        try:
            data = self._gql(f"query Pod($id: String!) {{ pod(input: {{podId: $id}}) {{ {POD_FIELDS} }} }}", {"id": pod_id})
        except NotFound:
            return None
        return data.get("pod")

    def get(self, instance_id: str) -> Optional[Instance]:
        pod = self._pod(instance_id)
        return _instance(pod) if pod else None

    def listed(self) -> List[Instance]:
        data = self._gql(f"query {{ myself {{ pods {{ {POD_FIELDS} }} }} }}")
        return [_instance(p) for p in ((data.get("myself") or {}).get("pods")) or []]

    def start(self, instance_id: str) -> None:
        pod = self._pod(instance_id)
        if not pod:
            raise NotFound(f"RunPod: pod {instance_id} is gone")
        n = int(pod.get("gpuCount") or 1)
        if str(pod.get("podType") or "").upper() == SPOT_POD_TYPE:
            # RunPod refuses podResume for a spot pod; podBidResume bids again, at the bid it was
            # rented at (its cost per hour over its GPUs): within the ceiling it was placed under.
            bid = round(float(pod.get("costPerHr") or 0) / n, 4)
            self._gql("mutation BidResume($id: String!, $n: Int!, $bid: Float!) { podBidResume(input: "
                      "{podId: $id, gpuCount: $n, bidPerGpu: $bid}) { id desiredStatus } }",
                      {"id": instance_id, "n": n, "bid": bid})
            return
        self._gql("mutation Resume($id: String!, $n: Int!) { podResume(input: {podId: $id, gpuCount: $n}) { id desiredStatus } }",
                  {"id": instance_id, "n": n})

    def stop(self, instance_id: str) -> None:
        self._gql("mutation Stop($id: String!) { podStop(input: {podId: $id}) { id desiredStatus } }", {"id": instance_id})

    def terminate(self, instance_id: str) -> None:
        try:
            self._gql("mutation Term($id: String!) { podTerminate(input: {podId: $id}) }", {"id": instance_id})
        except NotFound:
            return
