"""A RunPod GraphQL API on loopback: GPU types, on-demand and interruptible pods, stop/resume/terminate.

It reads each request as a GraphQL document (graphql-core), so it takes the operations in either form
they arrive in: with variables (the project's client) or with inline literals (RunPod's own SDK).
Client errors come back as HTTP 200 with ``errors[]`` as RunPod does. Where money is at stake it
behaves as RunPod does: ``/http`` ports are served through the HTTPS proxy
(``https://<podId>-<port>.proxy.runpod.net``), never on the pod's public IP, only ``/tcp`` ports get a
public port; an interruptible pod cannot be resumed with ``podResume`` (``podBidResume`` with a bid at
or above the minimum does it).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from graphql import FieldNode, GraphQLError, OperationDefinitionNode, parse, value_from_ast_untyped

from loopback.base import FakeServer, Reply

NO_CAPACITY = ("There are no longer any instances available with the requested specifications. "
               "Please refresh and try again.")


class FakeRunPod(FakeServer):
    vendor = "runpod"

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.boot_polls = 1
        self.capacity: Dict[str, int] = {"NVIDIA GeForce RTX 4090": 4, "NVIDIA GeForce RTX 3090": 4}
        self.prices: Dict[str, Dict[str, float]] = {
            "NVIDIA GeForce RTX 4090": {"uninterruptablePrice": 0.44, "minimumBidPrice": 0.24, "memoryInGb": 24},
            "NVIDIA GeForce RTX 3090": {"uninterruptablePrice": 0.22, "minimumBidPrice": 0.12, "memoryInGb": 24},
        }
        self.pods: Dict[str, Dict[str, Any]] = {}
        self.http_ports_public = False
        """RunPod serves ``/http`` ports only through its proxy; True also maps them on the public IP, as
        the loopback did before (for a test that replays code written against that)."""

    def alive(self) -> List[Dict[str, Any]]:
        with self.lock:
            return list(self.pods.values())

    def preempt(self, pod_id: str) -> None:
        with self.lock:
            pod = self.pods.pop(pod_id)
            self.capacity[pod["gpuTypeId"]] += pod["gpuCount"]

    def _view(self, pod: Dict[str, Any]) -> Dict[str, Any]:
        if pod["desiredStatus"] == "RUNNING" and pod["runtime"] is None:
            pod["polls"] += 1
            if pod["polls"] >= self.boot_polls:
                tcp = [p for p, kind in pod["port_list"] if kind == "tcp" or self.http_ports_public]
                public = self.ports_for(tcp)
                pod["runtime"] = {"ports": [
                    {"ip": self.public_address, "isIpPublic": True, "privatePort": p, "publicPort": public[p], "type": "tcp"}
                    for p in tcp] + [
                    # Served by the proxy only: the pod's private address, no public port.
                    {"ip": "10.65.0.2", "isIpPublic": False, "privatePort": p, "publicPort": p, "type": "http"}
                    for p, kind in pod["port_list"] if kind == "http" and not self.http_ports_public]}
        return {k: v for k, v in pod.items() if k not in ("polls", "port_list")}

    @staticmethod
    def proxy_url(pod_id: str, port: int) -> str:
        """Where RunPod serves a pod's ``/http`` port."""
        return f"https://{pod_id}-{port}.proxy.runpod.net"

    @staticmethod
    def operation(query: str, variables: Dict[str, Any]) -> Tuple[str, Dict[str, Any], Optional[FieldNode]]:
        """(root field, its arguments with variables resolved, the field node) of a GraphQL document."""
        doc = parse(query)
        op = next(d for d in doc.definitions if isinstance(d, OperationDefinitionNode))
        field = next(f for f in op.selection_set.selections if isinstance(f, FieldNode))
        args = {a.name.value: value_from_ast_untyped(a.value, variables) for a in field.arguments}
        return field.name.value, args, field

    @staticmethod
    def _nested_args(field: FieldNode, name: str, variables: Dict[str, Any]) -> Dict[str, Any]:
        for sel in (field.selection_set.selections if field.selection_set else []):
            if isinstance(sel, FieldNode) and sel.name.value == name:
                return {a.name.value: value_from_ast_untyped(a.value, variables) for a in sel.arguments}
        return {}

    @staticmethod
    def _err(msg: str) -> Reply:
        return 200, {"errors": [{"message": msg, "path": ["x"]}], "data": None}

    def route(self, method: str, path: str, query: Dict[str, str], body: Any) -> Reply:
        q = body.get("query", "") if isinstance(body, dict) else ""
        v = (body.get("variables") if isinstance(body, dict) else None) or {}
        try:
            name, args, field = self.operation(q, v)
        except (GraphQLError, StopIteration) as err:
            return 400, {"errors": [{"message": f"Syntax Error: {err}"}]}
        inp = args.get("input") or {}
        with self.lock:
            if name == "gpuTypes":
                gpu_id = inp.get("id")
                n = int(self._nested_args(field, "lowestPrice", v).get("input", {}).get("gpuCount") or 1)
                kinds = [gpu_id] if gpu_id else list(self.prices)
                out = []
                for gid in kinds:
                    p = self.prices.get(gid)
                    if p is None:
                        continue
                    free = self.capacity.get(gid, 0) >= n
                    out.append({"id": gid, "displayName": gid.replace("NVIDIA GeForce ", ""), "memoryInGb": p["memoryInGb"],
                                "lowestPrice": {"minimumBidPrice": p["minimumBidPrice"] if free else None,
                                                "uninterruptablePrice": p["uninterruptablePrice"] if free else None}})
                return 200, {"data": {"gpuTypes": out}}
            if name in ("podFindAndDeployOnDemand", "podRentInterruptable"):
                return self._deploy(inp, spot=name == "podRentInterruptable")
            if name == "myself":
                return 200, {"data": {"myself": {"pods": [self._view(p) for p in self.pods.values()]}}}
            if name not in ("pod", "podStop", "podResume", "podBidResume", "podTerminate"):
                return 200, {"errors": [{"message": f"Cannot query field \"{name}\" on type \"Mutation\"."}]}
            pod = self.pods.get(inp.get("podId"))
            if pod is None:
                return self._err("pod not found to terminate" if name == "podTerminate" else "pod not found")
            if name == "pod":
                return 200, {"data": {"pod": self._view(pod)}}
            if name == "podStop":
                if pod["desiredStatus"] == "RUNNING":
                    self.capacity[pod["gpuTypeId"]] += pod["gpuCount"]
                pod["desiredStatus"], pod["runtime"] = "EXITED", None
                return 200, {"data": {"podStop": {"id": pod["id"], "desiredStatus": "EXITED"}}}
            if name in ("podResume", "podBidResume"):
                if name == "podResume" and pod["interruptible"]:
                    return self._err("Cannot resume a spot pod as an on demand pod.")
                if name == "podBidResume":
                    bid = float(inp.get("bidPerGpu") or 0)
                    if bid < self.prices[pod["gpuTypeId"]]["minimumBidPrice"]:
                        return self._err(f"bid per GPU below the minimum {self.prices[pod['gpuTypeId']]['minimumBidPrice']}")
                    pod["costPerHr"] = round(bid * pod["gpuCount"], 4)
                if pod["desiredStatus"] != "RUNNING":
                    if self.capacity.get(pod["gpuTypeId"], 0) < pod["gpuCount"]:
                        return self._err("There are not enough free GPUs on the host machine to start this pod.")
                    self.capacity[pod["gpuTypeId"]] -= pod["gpuCount"]
                pod["desiredStatus"], pod["polls"] = "RUNNING", 0
                return 200, {"data": {name: {"id": pod["id"], "desiredStatus": "RUNNING"}}}
            self.pods.pop(pod["id"])
            if pod["desiredStatus"] == "RUNNING":
                self.capacity[pod["gpuTypeId"]] += pod["gpuCount"]
            return 200, {"data": {"podTerminate": None}}

    def _deploy(self, inp: Dict[str, Any], spot: bool) -> Reply:
        gpu = inp.get("gpuTypeId")
        n = int(inp.get("gpuCount", 1))
        if self.capacity.get(gpu, 0) < n:
            return self._err(NO_CAPACITY)
        if spot and float(inp.get("bidPerGpu") or 0) < self.prices[gpu]["minimumBidPrice"]:
            return self._err(f"bid per GPU below the minimum {self.prices[gpu]['minimumBidPrice']}")
        self.capacity[gpu] -= n
        pid = f"pod{self.next_id()}"
        ports = [(int(p.split("/")[0]), (p.split("/") + ["http"])[1].strip()) for p in str(inp.get("ports") or "").split(",") if p.strip()]
        per_gpu = float(inp["bidPerGpu"]) if spot else self.prices[gpu]["uninterruptablePrice"]
        self.pods[pid] = {
            "id": pid, "name": inp.get("name"), "desiredStatus": "RUNNING", "costPerHr": round(per_gpu * n, 4),
            "gpuCount": n, "gpuTypeId": gpu, "imageName": inp.get("imageName"), "runtime": None, "polls": 0,
            "port_list": ports, "env": inp.get("env"), "interruptible": spot, "dockerArgs": inp.get("dockerArgs"),
            "podType": "INTERRUPTABLE" if spot else "RESERVED",
        }
        key = "podRentInterruptable" if spot else "podFindAndDeployOnDemand"
        return 200, {"data": {key: {"id": pid, "imageName": inp.get("imageName"), "machineId": "m-1"}}}
