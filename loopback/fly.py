"""A loopback Fly.io Machines API (``https://api.machines.dev/v1``): apps, app secrets, volumes, machines.

Each shape is Fly's, as its Machines API reference gives it (https://fly.io/docs/machines/api/: the
apps, machines, volumes and secrets resources) and as its own Go client sends and reads it
(github.com/superfly/fly-go v0.1.55, package ``flaps``: ``CreateApp`` posts ``{app_name, org_slug}`` to
``/v1/apps``; ``Launch`` posts ``LaunchMachineInput`` ``{name, region, config}`` to
``/v1/apps/<app>/machines`` and reads a ``Machine`` ``{id, name, state, region, instance_id, private_ip,
config}``; ``Stop`` posts to ``.../<id>/stop``; ``Destroy`` deletes ``.../<id>?kill=``; ``CreateVolume``
posts ``CreateVolumeRequest`` ``{name, region, size_gb}`` to ``/v1/apps/<app>/volumes`` and reads a
``Volume`` ``{id, name, state, size_gb, region, attached_machine_id}``; ``SetAppSecret`` posts
``{value}`` to ``/v1/apps/<app>/secrets/<name>`` and ``ListAppSecrets`` reads ``{secrets: [{name,
digest}]}``). tests/contract/test_fly_contract.py drives fly-go's client against it. Errors are Fly's
``{"error": "..."}`` with its statuses: 404 for an unknown app, machine or volume, 409 for an app name
taken, 412 for a volume still attached, 401 without the bearer.

Machines boot (``created`` -> ``started``) after ``boot_polls`` reads; a destroyed machine stays listed as
``destroyed`` for a while, as Fly's do; ``serve_openai`` makes a started machine's app answer OpenAI's
chat API under ``/apps-proxy/<app>/v1`` with the bearer set as its ``LLAMA_API_KEY`` secret (what
``<app>.fly.dev`` is in the sandbox).
"""
from __future__ import annotations

import hashlib
from typing import Any, Dict, Optional

from loopback.base import FakeServer, Reply
from loopback.openai_server import chat_completion


class FakeFly(FakeServer):
    vendor = "fly"

    def __init__(self, token: str = "fly-token", boot_polls: int = 1, **kw: Any):
        super().__init__(**kw)
        self.token = token
        self.boot_polls = boot_polls
        self.apps: Dict[str, Dict[str, Any]] = {}
        self.chats = []

    # -- helpers -------------------------------------------------------------------------------------
    def _authorized(self) -> bool:
        auth = self.request_headers().get("authorization", "")
        # fly-go sends "Bearer <token>" for a plain token and "FlyV1 <macaroons>" for macaroon tokens.
        return auth in (f"Bearer {self.token}", f"FlyV1 {self.token}")

    def app_url(self, app: str) -> str:
        """Where the sandbox reaches ``<app>.fly.dev``: Fly's proxy in front of the app's machines."""
        return f"{self.url}/apps-proxy/{app}"

    def _machine_view(self, m: Dict[str, Any]) -> Dict[str, Any]:
        if m["state"] == "created":
            m["polls"] += 1
            if m["polls"] >= self.boot_polls:
                m["state"] = "started"
        return {k: v for k, v in m.items() if k != "polls"}

    @staticmethod
    def _err(status: int, message: str) -> Reply:
        return status, {"error": message}

    # -- routes --------------------------------------------------------------------------------------
    def route(self, method: str, path: str, query: Dict[str, str], body: Any) -> Reply:
        if path.startswith("/apps-proxy/"):
            return self._proxy(method, path, body)
        if not path.startswith("/v1/apps"):
            return self._err(404, f"no route {method} {path}")
        if not self._authorized():
            return self._err(401, "You must be authenticated to view this.")
        parts = [p for p in path.split("/") if p][2:]  # after 'v1', 'apps'
        with self.lock:
            if not parts:
                if method == "POST":
                    return self._create_app(body)
                return 200, {"total_apps": len(self.apps), "apps": [
                    {"id": a["id"], "name": a["name"], "machine_count": len(a["machines"])} for a in self.apps.values()]}
            app = self.apps.get(parts[0])
            if app is None:
                return self._err(404, f"app not found: {parts[0]}")
            if len(parts) == 1:
                if method == "DELETE":
                    if any(m["state"] != "destroyed" for m in app["machines"].values()):
                        return self._err(412, "app has machines; destroy them first")
                    del self.apps[parts[0]]
                    return 202, None
                return 200, {"id": app["id"], "name": app["name"], "status": "deployed",
                             "organization": {"slug": app["org"]}}
            what, rest = parts[1], parts[2:]
            if what == "secrets":
                return self._secrets(app, method, rest, body)
            if what == "volumes":
                return self._volumes(app, method, rest, body)
            if what == "machines":
                return self._machines(app, method, rest, body, query)
        return self._err(404, f"no route {method} {path}")

    def _create_app(self, body: Dict[str, Any]) -> Reply:
        name, org = body.get("app_name"), body.get("org_slug")
        if not name or not org:
            return self._err(400, "app_name and org_slug are required")
        if name in self.apps:
            return self._err(409, f"app {name} already exists")  # Fly: names are global
        self.apps[name] = {"id": f"app{self.next_id()}", "name": name, "org": org, "secrets": {}, "volumes": {},
                           "machines": {}}
        return 201, None

    def _secrets(self, app: Dict[str, Any], method: str, rest: list, body: Any) -> Reply:
        if not rest and method == "GET":
            return 200, {"secrets": [{"name": n, "digest": hashlib.sha256(v.encode()).hexdigest()[:16]}
                                     for n, v in sorted(app["secrets"].items())]}
        if len(rest) == 1 and method == "POST":
            if not isinstance(body, dict) or not isinstance(body.get("value"), str):
                return self._err(400, "value is required")
            app["secrets"][rest[0]] = body["value"]
            app["secrets_version"] = app.get("secrets_version", 0) + 1
            return 200, {"name": rest[0], "digest": hashlib.sha256(body["value"].encode()).hexdigest()[:16],
                         "Version": app["secrets_version"]}
        if len(rest) == 1 and method == "DELETE":
            app["secrets"].pop(rest[0], None)
            return 200, {"Version": app.get("secrets_version", 0)}
        return self._err(404, "no such secrets route")

    def _volumes(self, app: Dict[str, Any], method: str, rest: list, body: Any) -> Reply:
        vols = app["volumes"]
        if not rest:
            if method == "GET":
                return 200, [dict(v) for v in vols.values() if v["state"] != "destroyed"]
            if not body.get("name") or not body.get("region") or not body.get("size_gb"):
                return self._err(400, "name, region and size_gb are required")
            vid = f"vol_{self.next_id()}"
            vols[vid] = {"id": vid, "name": body["name"], "state": "created", "size_gb": int(body["size_gb"]),
                         "region": body["region"], "zone": "a1b2", "encrypted": True, "attached_machine_id": None,
                         "attached_alloc_id": None, "created_at": "2026-12-05T00:00:00Z", "snapshot_retention": 5,
                         "auto_backup_enabled": True}
            return 200, dict(vols[vid])
        v = vols.get(rest[0])
        if v is None or v["state"] == "destroyed":
            return self._err(404, f"volume not found: {rest[0]}")
        if method == "DELETE":
            if v["attached_machine_id"]:
                return self._err(412, f"volume {v['id']} is attached to machine {v['attached_machine_id']}")
            v["state"] = "destroyed"
            return 200, dict(v)
        if method == "PUT" and rest[1:] == ["extend"]:
            v["size_gb"] = max(v["size_gb"], int(body.get("size_gb") or 0))
            return 200, {"volume": dict(v), "needs_restart": False}
        return 200, dict(v)

    def _machines(self, app: Dict[str, Any], method: str, rest: list, body: Any, query: Dict[str, str]) -> Reply:
        machines = app["machines"]
        if not rest:
            if method == "GET":
                return 200, [self._machine_view(m) for m in machines.values()
                             if m["state"] != "destroyed" or query.get("include_deleted") == "true"]
            return self._launch(app, body)
        m = machines.get(rest[0])
        if m is None:
            return self._err(404, f"machine not found: {rest[0]}")
        action = rest[1] if len(rest) > 1 else ""
        if method == "DELETE" and not action:
            if m["state"] == "started" and query.get("force") != "true" and query.get("kill") != "true":
                return self._err(412, "machine is started; stop it or destroy with force=true")
            m["state"] = "destroyed"
            self._detach(app, m)
            return 200, {"ok": True}
        if m["state"] == "destroyed" and method == "POST":
            return self._err(404, f"machine not found: {rest[0]}")
        if method == "POST" and action == "stop":
            m["state"] = "stopped"
            return 200, {"ok": True}
        if method == "POST" and action == "start":
            previous, m["state"], m["polls"] = m["state"], "created", 0
            return 200, {"previous_state": previous, "migrated": False, "new_host": ""}
        if method == "POST" and not action:
            return self._update(app, m, body)
        if method == "GET" and action == "wait":
            return 200, {"ok": True}
        if method == "GET" and not action:
            return 200, self._machine_view(m)
        return self._err(404, f"no machine route {method} {action}")

    def _mounts(self, app: Dict[str, Any], config: Dict[str, Any], machine_id: str) -> Optional[Reply]:
        for mount in config.get("mounts") or []:
            v = app["volumes"].get(mount.get("volume"))
            if v is None or v["state"] == "destroyed":
                return self._err(400, f"volume {mount.get('volume')} not found")
            if v["attached_machine_id"] not in (None, machine_id):
                return self._err(412, f"volume {v['id']} is attached to machine {v['attached_machine_id']}")
            v["attached_machine_id"] = machine_id
        return None

    @staticmethod
    def _detach(app: Dict[str, Any], m: Dict[str, Any]) -> None:
        for v in app["volumes"].values():
            if v["attached_machine_id"] == m["id"]:
                v["attached_machine_id"] = None

    def _launch(self, app: Dict[str, Any], body: Dict[str, Any]) -> Reply:
        config = body.get("config") or {}
        if not config.get("image"):
            return self._err(400, "config.image is required")
        if body.get("name") and any(m["name"] == body["name"] and m["state"] != "destroyed"
                                    for m in app["machines"].values()):
            return self._err(409, f"a machine named {body['name']} already exists")
        mid = f"{self.next_id():014x}"
        failed = self._mounts(app, config, mid)
        if failed:
            return failed
        m = {"id": mid, "name": body.get("name") or f"machine-{mid}", "state": "created",
             "region": body.get("region") or "iad", "instance_id": f"inst{self.next_id()}",
             "private_ip": f"fdaa:0:1::{len(app['machines']) + 2}", "config": config, "image_ref": {
                 "registry": "registry-1.docker.io", "repository": config["image"].split(":")[0],
                 "tag": config["image"].rpartition(":")[2]},
             "created_at": "2026-12-05T00:00:00Z", "updated_at": "2026-12-05T00:00:00Z", "host_status": "ok",
             "polls": 0}
        app["machines"][mid] = m
        return 200, self._machine_view(m)

    def _update(self, app: Dict[str, Any], m: Dict[str, Any], body: Dict[str, Any]) -> Reply:
        config = body.get("config") or {}
        if not config.get("image"):
            return self._err(400, "config.image is required")
        self._detach(app, m)
        failed = self._mounts(app, config, m["id"])
        if failed:
            return failed
        m.update(config=config, instance_id=f"inst{self.next_id()}", state="created", polls=0)
        return 200, self._machine_view(m)

    # -- the app's public address --------------------------------------------------------------------
    def _proxy(self, method: str, path: str, body: Any) -> Reply:
        """``https://<app>.fly.dev/v1/...``: Fly's proxy to the app's started machine, where llama.cpp's
        server answers OpenAI's API with the bearer in its ``LLAMA_API_KEY`` secret."""
        parts = path.split("/")  # '', 'apps-proxy', app, 'v1', ...
        with self.lock:
            app = self.apps.get(parts[2]) if len(parts) > 3 else None
            started = [m for m in (app or {}).get("machines", {}).values() if m["state"] == "started"]
            if app is None or not started:
                return 503, {"error": "no started machine to route to"}
            key = app["secrets"].get("LLAMA_API_KEY")
            if key and self.request_headers().get("authorization") != f"Bearer {key}":
                return 401, {"error": {"message": "Invalid API Key", "type": "authentication_error", "code": 401}}
            served = started[0]["config"].get("env", {}).get("LLAMA_ARG_ALIAS", "model")
            rest = "/".join(parts[4:])
            if (method, rest) == ("GET", "models"):
                return 200, {"object": "list", "data": [{"id": served, "object": "model", "owned_by": "llamacpp"}]}
            if (method, rest) != ("POST", "chat/completions") or not isinstance(body, dict):
                return 404, {"error": f"no route {method} {path}"}
            self.chats.append((parts[2], body.get("model")))
        return 200, chat_completion(self.next_id(), served, f"fly app {parts[2]} answers with {served}")
