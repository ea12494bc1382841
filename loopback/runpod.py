"""A RunPod GraphQL API on loopback: GPU types, on-demand and interruptible pods, stop/resume/terminate.

It answers the operations the client sends by recognising the root field in the query text, with the
variables; client errors come back as HTTP 200 with ``errors[]`` as RunPod does.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List

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
                pod["runtime"] = {"ports": [
                    {"ip": self.public_address, "isIpPublic": True, "privatePort": p, "publicPort": h, "type": "tcp"}
                    for p, h in self.ports_for(pod["port_list"]).items()]}
        return {k: v for k, v in pod.items() if k not in ("polls", "port_list")}

    @staticmethod
    def _err(msg: str) -> Reply:
        return 200, {"errors": [{"message": msg, "path": ["x"]}], "data": None}

    def route(self, method: str, path: str, query: Dict[str, str], body: Any) -> Reply:
        q = body.get("query", "") if isinstance(body, dict) else ""
        v = body.get("variables") or {}
        with self.lock:
            if "gpuTypes" in q:
                p = self.prices.get(v.get("id"))
                if p is None:
                    return 200, {"data": {"gpuTypes": []}}
                free = self.capacity.get(v["id"], 0) >= v.get("n", 1)
                return 200, {"data": {"gpuTypes": [{
                    "id": v["id"], "displayName": v["id"].replace("NVIDIA GeForce ", ""), "memoryInGb": p["memoryInGb"],
                    "lowestPrice": {"minimumBidPrice": p["minimumBidPrice"] if free else None,
                                    "uninterruptablePrice": p["uninterruptablePrice"] if free else None}}]}}
            if "podFindAndDeployOnDemand" in q or "podRentInterruptable" in q:
                return self._deploy(v["input"], spot="podRentInterruptable" in q)
            if "myself" in q:
                return 200, {"data": {"myself": {"pods": [self._view(p) for p in self.pods.values()]}}}
            m = re.search(r"\b(pod|podStop|podResume|podTerminate)\(", q)
            if not m:
                return 400, {"errors": [{"message": "unsupported operation"}]}
            pod = self.pods.get(v.get("id"))
            op = m.group(1)
            if pod is None:
                return self._err("pod not found to terminate" if op == "podTerminate" else "pod not found")
            if op == "pod":
                return 200, {"data": {"pod": self._view(pod)}}
            if op == "podStop":
                pod["desiredStatus"], pod["runtime"] = "EXITED", None
                self.capacity[pod["gpuTypeId"]] += pod["gpuCount"]
                return 200, {"data": {"podStop": {"id": pod["id"], "desiredStatus": "EXITED"}}}
            if op == "podResume":
                if self.capacity.get(pod["gpuTypeId"], 0) < pod["gpuCount"]:
                    return self._err("There are not enough free GPUs on the host machine to start this pod.")
                self.capacity[pod["gpuTypeId"]] -= pod["gpuCount"]
                pod["desiredStatus"], pod["polls"] = "RUNNING", 0
                return 200, {"data": {"podResume": {"id": pod["id"], "desiredStatus": "RUNNING"}}}
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
        ports = [int(p.split("/")[0]) for p in str(inp.get("ports", "")).split(",") if p]
        per_gpu = float(inp["bidPerGpu"]) if spot else self.prices[gpu]["uninterruptablePrice"]
        self.pods[pid] = {
            "id": pid, "name": inp.get("name"), "desiredStatus": "RUNNING", "costPerHr": round(per_gpu * n, 4),
            "gpuCount": n, "gpuTypeId": gpu, "imageName": inp.get("imageName"), "runtime": None, "polls": 0,
            "port_list": ports, "env": inp.get("env"), "interruptible": spot,
        }
        key = "podRentInterruptable" if spot else "podFindAndDeployOnDemand"
        return 200, {"data": {key: {"id": pid, "imageName": inp.get("imageName"), "machineId": "m-1"}}}
