"""A RunPod GraphQL API on loopback: GPU types, on-demand and interruptible pods, stop/resume/terminate,
and serverless: templates, endpoints and each endpoint's OpenAI route (``/v2/<id>/openai/v1``).

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
from loopback.openai_server import chat_completion

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
        self.templates: Dict[str, Dict[str, Any]] = {}
        self.endpoints: Dict[str, Dict[str, Any]] = {}
        self.api_key: Optional[str] = None
        """When set, the serverless OpenAI route answers 401 to any other bearer token, as RunPod does."""
        self.template_release_calls = 0
        """deleteTemplate calls refused after the endpoint using a template is deleted (RunPod documents up
        to two minutes before a template's last use lets it go)."""
        self._refusals_left = 0
        """What is left of ``template_release_calls`` since the last endpoint was deleted."""
        self.chats: List[Tuple[str, str]] = []
        """(endpoint id, model) of every chat a serverless endpoint answered."""
        self.http_ports_public = False
        """RunPod serves ``/http`` ports only through its proxy; True also maps them on the public IP, as
        the loopback did before (for a test that replays code written against that)."""

    def alive(self) -> List[Dict[str, Any]]:
        """Everything that bills: pods, and serverless endpoints (their workers bill while they run)."""
        with self.lock:
            return list(self.pods.values()) + [dict(e) for e in self.endpoints.values()]

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

    def bill(self, instance_id, per_hour: float) -> None:
        """Drive what the instance bills by the hour from now on, as the vendor reports it ('costPerHr')."""
        with self.lock:
            self.pods[instance_id]["costPerHr"] = per_hour

    def route(self, method: str, path: str, query: Dict[str, str], body: Any) -> Reply:
        if path.startswith("/v2/"):
            return self._serverless_openai(method, path, body)
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
                return 200, {"data": {"myself": {"pods": [self._view(p) for p in self.pods.values()],
                                                 "endpoints": [dict(e) for e in self.endpoints.values()],
                                                 "podTemplates": [dict(t) for t in self.templates.values()]}}}
            if name in ("saveTemplate", "saveEndpoint", "updateEndpointTemplate", "deleteEndpoint", "deleteTemplate"):
                return self._serverless(name, args)
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

    # -- serverless ---------------------------------------------------------------------------------
    POOLS = ("AMPERE_16", "AMPERE_24", "ADA_24", "ADA_32_PRO", "AMPERE_48", "ADA_48_PRO", "AMPERE_80", "ADA_80_PRO",
             "HOPPER_141")
    """RunPod's serverless GPU pool ids, as its GraphQL reference lists them."""

    def _serverless(self, name: str, args: Dict[str, Any]) -> Reply:
        inp = args.get("input") or {}
        if name == "saveTemplate":
            tid = inp.get("id")
            if tid and tid not in self.templates:
                return self._err("Template not found")
            if not tid and any(t["name"] == inp.get("name") for t in self.templates.values()):
                return self._err("Template name must be unique")
            if not inp.get("imageName") or inp.get("containerDiskInGb") is None or inp.get("volumeInGb") is None:
                return self._err("name, imageName, containerDiskInGb and volumeInGb are required")
            tid = tid or f"tpl{self.next_id()}"
            t = {"id": tid, "name": inp.get("name"), "imageName": inp.get("imageName"),
                 "dockerArgs": inp.get("dockerArgs") or "", "containerDiskInGb": int(inp["containerDiskInGb"]),
                 "volumeInGb": int(inp["volumeInGb"]), "ports": inp.get("ports") or "",
                 "env": [{"key": e["key"], "value": e["value"]} for e in inp.get("env") or []],
                 "isServerless": bool(inp.get("isServerless"))}
            self.templates[tid] = t
            return 200, {"data": {"saveTemplate": dict(t)}}
        if name == "saveEndpoint":
            eid = inp.get("id")
            if eid and eid not in self.endpoints:
                return self._err("Endpoint not found")
            for key in ("name", "templateId", "gpuIds"):
                if not inp.get(key):
                    return self._err(f"{key} is required")
            template = self.templates.get(inp["templateId"])
            if template is None or not template["isServerless"]:
                return self._err("a serverless endpoint needs a serverless template")
            pools = [p.strip() for p in str(inp["gpuIds"]).split(",") if p.strip()]
            if any(p.lstrip("-") not in self.POOLS for p in pools):
                return self._err(f"invalid gpuIds {inp['gpuIds']!r}")
            old = self.endpoints.get(eid, {}) if eid else {}
            e = {**old, "id": eid or f"ep{self.next_id()}", "name": inp["name"], "templateId": inp["templateId"],
                 "gpuIds": inp["gpuIds"], "locations": inp.get("locations") or None,
                 "idleTimeout": int(inp.get("idleTimeout", old.get("idleTimeout", 5))),
                 "scalerType": inp.get("scalerType", old.get("scalerType", "QUEUE_DELAY")),
                 "scalerValue": int(inp.get("scalerValue", old.get("scalerValue", 4))),
                 "workersMin": int(inp.get("workersMin", old.get("workersMin", 0))),
                 "workersMax": int(inp.get("workersMax", old.get("workersMax", 3))),
                 "gpuCount": int(inp.get("gpuCount") or old.get("gpuCount") or 1),
                 "flashBootType": inp.get("flashBootType", old.get("flashBootType", "OFF")),
                 "networkVolumeId": inp.get("networkVolumeId") or None}
            if e["workersMin"] > e["workersMax"]:
                return self._err("workersMin cannot be greater than workersMax")
            self.endpoints[e["id"]] = e
            return 200, {"data": {"saveEndpoint": dict(e)}}
        if name == "updateEndpointTemplate":
            e = self.endpoints.get(inp.get("endpointId"))
            if e is None:
                return self._err("Endpoint not found")
            if inp.get("templateId") not in self.templates:
                return self._err("Template not found")
            e["templateId"] = inp["templateId"]
            return 200, {"data": {"updateEndpointTemplate": {"id": e["id"], "templateId": e["templateId"]}}}
        if name == "deleteEndpoint":
            e = self.endpoints.get(args.get("id"))
            if e is None:
                return self._err("Endpoint not found")
            if e["workersMin"] or e["workersMax"]:
                return self._err("Endpoint must have 0 min and max workers before it can be deleted")
            del self.endpoints[e["id"]]
            self._refusals_left = self.template_release_calls
            return 200, {"data": {"deleteEndpoint": None}}
        # deleteTemplate
        t = next((t for t in self.templates.values() if t["name"] == args.get("templateName")), None)
        if t is None:
            return self._err("Template not found")
        if any(e["templateId"] == t["id"] for e in self.endpoints.values()):
            return self._err("Template is in use by an endpoint")
        if self._refusals_left > 0:
            self._refusals_left -= 1
            return self._err("Template was used recently; try again in a few minutes")
        del self.templates[t["id"]]
        return 200, {"data": {"deleteTemplate": None}}

    def served_name(self, endpoint_id: str) -> Optional[str]:
        """The model an endpoint's vLLM worker answers to: ``OPENAI_SERVED_MODEL_NAME_OVERRIDE`` or
        ``MODEL_NAME`` in its template's env."""
        e = self.endpoints.get(endpoint_id)
        env = {kv["key"]: kv["value"] for kv in (self.templates.get(e["templateId"], {}).get("env") or [])} if e else {}
        return env.get("OPENAI_SERVED_MODEL_NAME_OVERRIDE") or env.get("MODEL_NAME")

    def _serverless_openai(self, method: str, path: str, body: Any) -> Reply:
        """``/v2/<endpoint id>/openai/v1/...`` as RunPod's vLLM worker answers it: the RunPod API key as the
        bearer token, ``/models`` and non-streamed ``/chat/completions`` for the served model only."""
        parts = path.split("/")  # '', 'v2', id, 'openai', 'v1', ...
        with self.lock:
            if len(parts) < 6 or parts[3:5] != ["openai", "v1"] or parts[2] not in self.endpoints:
                return 404, {"error": f"no route {method} {path}"}
            if self.api_key and self.request_headers().get("authorization") != f"Bearer {self.api_key}":
                return 401, {"error": "Unauthorized"}
            eid, rest = parts[2], "/".join(parts[5:])
            served = self.served_name(eid)
            if (method, rest) == ("GET", "models"):
                return 200, {"object": "list", "data": [{"id": served, "object": "model", "owned_by": "runpod"}]}
            if (method, rest) != ("POST", "chat/completions") or not isinstance(body, dict):
                return 404, {"error": f"no route {method} {path}"}
            if body.get("model") != served:
                return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                       "type": "NotFoundError", "code": 404}}
            self.chats.append((eid, served))
        return 200, chat_completion(self.next_id(), served, f"serverless {eid} answers with {served}")
