"""A Fly.io app with one always-on Machine, its volume and its app secret, through Fly's Machines REST API
(``https://api.machines.dev/v1``), as one dynamic resource (``pulumi-python:dynamic/fly:Machine``).

- create adopts by name: the app is the stack's (``services.<name>.app``), the volume is named after it,
  the Machine carries the app's name and ``-llm``; an app, volume or Machine an earlier `up` left (or a
  create whose answer was lost: a 5xx, a cut connection) is found and used, never made twice. 429s are
  retried after Fly's Retry-After (``providers/http.py``). A create that fails after making something (a
  Machine that never starts) keeps no state, so it tears down what it made itself, as delete does and
  verified, before it fails: the app if it made the app, else only its own Machine and volume; if that
  fails too, its error names what is left and ``scripts/leftovers.py``.
- the bearer llama.cpp checks is generated here at create (kept in state as a secret output, which the
  gateway's env file reads) and set through Fly's app secrets API (``LLAMA_API_KEY``), never in the
  Machine's config (which Fly shows to anyone with read access to the app); the Machine's env carries only
  llama.cpp's options.
- the Machine restarts always and is never auto-stopped (``autostop: false``, ``min_machines_running: 1``):
  it is the gateway's last self-hosted fallback and must answer when the GPU clouds do not (fly.toml's
  ``auto_stop_machines = false``).
- a new app, org or region replaces (a Fly app and its volume live in one region); size, memory, image and
  env update the Machine in place; a bigger volume is extended.
- read (refresh): an app Fly no longer knows (404) is gone and leaves the state; a destroyed Machine in a
  live app reads as such, so the next `up` launches it again; anything else failing raises, and the state
  keeps the resource (an operation that cannot see it keeps it).
- delete destroys the Machine (force) and waits until Fly shows it destroyed, deletes the volume and
  waits until it is gone, then deletes the app and waits until Fly no longer knows it. What fails is said,
  and the resource stays in state for the next destroy.
"""
from __future__ import annotations

import os
import re
import secrets
from typing import Any, Dict, List, Optional

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, ConfigureRequest, CreateResult, DiffResult, ReadResult, \
    ResourceProvider, UpdateResult

from core.vendors import FLY_APPS_URL_ENV, FLY_API_TOKEN_ENV, FLY_API_TOKEN_KEY, FLY_API_URL_ENV, FLY_API_URL_KEY, FLY_DEFAULT_URL
from providers.gpu_cloud import env_or_config, env_seconds
from providers.http import ApiSession, CloudError, LostResponse, NotFound, json_body
from providers.resource import DynamicResource
# The same verified-delete steps as RunPod's endpoints: refused deletes retried until the deadline.
from providers.runpod_serverless import _refusal, _until
from providers.wait import WaitTimeout, wait_for, within

PROVIDER_VERSION = "1"
CONFIG_KEYS = (f"gpu-estate:{FLY_API_TOKEN_KEY}", f"gpu-estate:{FLY_API_URL_KEY}")
INPUT_KEYS = ("app", "org", "region", "guest", "image", "env", "volume_gb", "port", "secret_name", "stamps",
              "version")
REPLACE_KEYS = ("app", "org", "region")
MACHINE_KEYS = ("guest", "image", "env", "volume_gb", "port", "secret_name")
"""What the Machine is: a change of these updates it (Fly restarts it on the new config); any other (its
stamps) changes the state alone and leaves the always-on Machine running."""
DOWN_STATES = ("stopped", "suspended", "destroyed")
"""A Machine in one of these does not answer: the next `up` starts (or launches) it again."""
MOUNT_PATH = "/models"


def volume_name(app: str) -> str:
    """Fly volume names are lower-case letters, digits and underscores, at most 30."""
    return (re.sub(r"[^a-z0-9_]", "_", app)[:24] + "_model").strip("_")


def app_url(app: str) -> str:
    """The app's public address: Fly's proxy at ``https://<app>.fly.dev`` (``FLY_APPS_URL`` points it
    elsewhere: the sandbox's loopback Fly)."""
    base = os.environ.get(FLY_APPS_URL_ENV)
    return f"{base.rstrip('/')}/{app}" if base else f"https://{app}.fly.dev"


def machine_name(app: str) -> str:
    return f"{app}-llm"


class FlyApi:
    """The few calls of Fly's Machines API the resource needs, on the estate's session (timeouts, retries of
    429 and 5xx on reads, LostResponse on a create whose answer never came)."""

    def __init__(self, config: Dict[str, str]):
        url = env_or_config(config, FLY_API_URL_ENV, f"gpu-estate:{FLY_API_URL_KEY}") or FLY_DEFAULT_URL
        token = env_or_config(config, FLY_API_TOKEN_ENV, f"gpu-estate:{FLY_API_TOKEN_KEY}")
        if not token:
            raise CloudError(f"Fly.io: no API token: set `pulumi config set --secret gpu-estate:{FLY_API_TOKEN_KEY} ...` "
                             f"(or {FLY_API_TOKEN_ENV})")
        self.http = ApiSession(url, token, "Fly.io")

    def __enter__(self) -> "FlyApi":
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def _call(self, method: str, path: str, *, idempotent: bool = True, ok_missing: bool = False,
              **kw: Any) -> Any:
        resp = self.http.request(method, path, idempotent=idempotent, **kw)
        if resp.status_code == 404:
            if ok_missing:
                return None
            raise NotFound(f"Fly.io: {method} {path}: not found", 404, resp.text[:500])
        if resp.status_code >= 400:
            raise CloudError(f"Fly.io: {method} {path} answered {resp.status_code}: "
                             f"{json_body(resp).get('error') if isinstance(json_body(resp), dict) else resp.text[:200]}",
                             resp.status_code, resp.text[:500])
        return json_body(resp) if resp.content else None

    # apps
    def app(self, app: str) -> Optional[Dict[str, Any]]:
        return self._call("GET", f"/apps/{app}", ok_missing=True)

    def create_app(self, app: str, org: str) -> None:
        try:
            self._call("POST", "/apps", idempotent=False, json={"app_name": app, "org_slug": org})
        except LostResponse:
            pulumi.log.info(f"{app}: Fly.io's answer to the app's create was lost; looking it up by name")
        except CloudError as err:
            if err.status not in (409, 422):
                raise
        if self.app(app) is None:
            raise CloudError(f"Fly.io: app {app} was not created (nor is it there); try `pulumi up` again")

    def delete_app(self, app: str) -> None:
        self._call("DELETE", f"/apps/{app}", ok_missing=True)

    def set_secret(self, app: str, name: str, value: str) -> None:
        # Setting a secret to a value is the same however often it is sent.
        self._call("POST", f"/apps/{app}/secrets/{name}", json={"value": value})

    def secret_names(self, app: str) -> List[str]:
        return [s["name"] for s in (self._call("GET", f"/apps/{app}/secrets") or {}).get("secrets", [])]

    # volumes
    def volumes(self, app: str) -> List[Dict[str, Any]]:
        return [v for v in self._call("GET", f"/apps/{app}/volumes") or [] if v.get("state") != "destroyed"]

    def volume(self, app: str, volume_id: str) -> Optional[Dict[str, Any]]:
        v = self._call("GET", f"/apps/{app}/volumes/{volume_id}", ok_missing=True)
        return None if v is None or v.get("state") == "destroyed" else v

    def create_volume(self, app: str, region: str, size_gb: int) -> Dict[str, Any]:
        name = volume_name(app)
        found = [v for v in self.volumes(app) if v.get("name") == name]
        if found:
            return found[0]
        try:
            return self._call("POST", f"/apps/{app}/volumes", idempotent=False,
                              json={"name": name, "region": region, "size_gb": size_gb, "encrypted": True})
        except LostResponse:
            found = [v for v in self.volumes(app) if v.get("name") == name]
            if found:
                return found[0]
            raise

    def extend_volume(self, app: str, volume_id: str, size_gb: int) -> None:
        self._call("PUT", f"/apps/{app}/volumes/{volume_id}/extend", json={"size_gb": size_gb})

    def delete_volume(self, app: str, volume_id: str) -> None:
        self._call("DELETE", f"/apps/{app}/volumes/{volume_id}", ok_missing=True)

    # machines
    def machines(self, app: str) -> List[Dict[str, Any]]:
        return [m for m in self._call("GET", f"/apps/{app}/machines") or [] if m.get("state") != "destroyed"]

    def machine(self, app: str, machine_id: str) -> Optional[Dict[str, Any]]:
        return self._call("GET", f"/apps/{app}/machines/{machine_id}", ok_missing=True)

    def launch(self, app: str, name: str, region: str, config: Dict[str, Any]) -> Dict[str, Any]:
        found = [m for m in self.machines(app) if m.get("name") == name]
        if found:
            return self.update(app, found[0]["id"], config)
        try:
            return self._call("POST", f"/apps/{app}/machines", idempotent=False,
                              json={"name": name, "region": region, "config": config})
        except LostResponse:
            found = [m for m in self.machines(app) if m.get("name") == name]
            if found:
                return found[0]
            raise

    def update(self, app: str, machine_id: str, config: Dict[str, Any]) -> Dict[str, Any]:
        return self._call("POST", f"/apps/{app}/machines/{machine_id}", json={"config": config})

    def start(self, app: str, machine_id: str) -> None:
        self._call("POST", f"/apps/{app}/machines/{machine_id}/start")

    def destroy(self, app: str, machine_id: str) -> None:
        self._call("DELETE", f"/apps/{app}/machines/{machine_id}", params={"force": "true"}, ok_missing=True)


def machine_config(props: Dict[str, Any], volume_id: str) -> Dict[str, Any]:
    """The Machine's config (fly-go's ``MachineConfig``): llama.cpp's image and options, its size, the model's
    volume, restart always, and Fly's proxy on 443/80 to its port with autostop off."""
    port = int(props["port"])
    return {
        "image": props["image"],
        "env": dict(props.get("env") or {}),
        "guest": dict(props["guest"]),
        "mounts": [{"volume": volume_id, "path": MOUNT_PATH}],
        "restart": {"policy": "always"},
        "services": [{
            # Autostop off, written as fly-go writes it (``false``; Fly reads "off" too).
            "protocol": "tcp", "internal_port": port, "autostop": False, "autostart": True,
            "min_machines_running": 1,
            "ports": [{"port": 443, "handlers": ["tls", "http"]}, {"port": 80, "handlers": ["http"], "force_https": True}],
            "checks": [{"type": "http", "method": "GET", "path": "/health", "interval": "15s", "timeout": "5s",
                        "grace_period": "120s"}],
        }],
        "metadata": {"gpu-estate": props["app"]},
    }


class FlyMachineProvider(ResourceProvider):
    def __init__(self) -> None:
        super().__init__()
        self._config: Dict[str, str] = {}

    def configure(self, req: ConfigureRequest) -> None:
        self._config = {k: v for k in CONFIG_KEYS if (v := req.config.get(k))}

    def _api(self) -> FlyApi:
        return FlyApi(self._config)

    def check(self, _olds: Dict[str, Any], news: Dict[str, Any]) -> CheckResult:
        failures: List[CheckFailure] = []
        for key in ("app", "org", "region", "image", "secret_name"):
            if not news.get(key):
                failures.append(CheckFailure(key, f"{key} is required"))
        guest = news.get("guest") or {}
        if not (guest.get("cpu_kind") and int(guest.get("cpus") or 0) > 0 and int(guest.get("memory_mb") or 0) > 0):
            failures.append(CheckFailure("guest", f"cpu_kind, cpus and memory_mb are required (got {guest})"))
        if "LLAMA_API_KEY" in (news.get("env") or {}):
            failures.append(CheckFailure("env", "the bearer goes through Fly's secrets API, never the Machine's env"))
        return CheckResult({**news, "version": PROVIDER_VERSION}, failures)

    def diff(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> DiffResult:
        changed = [k for k in INPUT_KEYS if olds.get(k) != news.get(k)]
        replaces = [k for k in REPLACE_KEYS if k in changed]
        # A machine stopped or lost behind the state's back (refresh read it so) is started again by update.
        if olds.get("machine_state") in DOWN_STATES:
            changed.append("machine_state")
        return DiffResult(changes=bool(changed), replaces=replaces, stables=[], delete_before_replace=True)

    def _apply(self, api: FlyApi, props: Dict[str, Any], api_key: str,
               made: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Make (or adopt by name) the app, its secret, volume and Machine; ``made`` records what this call
        made itself, not what it adopted, for a failed create to tear down."""
        app = props["app"]
        track, made = made is not None, made if made is not None else {}
        if api.app(app) is None:
            api.create_app(app, props["org"])
            made["app"] = True
            pulumi.log.info(f"{app}: Fly app created in {props['org']}")
        else:
            pulumi.log.info(f"{app}: the Fly app exists; adopting it")
        api.set_secret(app, props["secret_name"], api_key)
        adopted = track and not made.get("app")  # an app that was there: what of it was there before is not ours
        before = {v["id"] for v in api.volumes(app)} if adopted else set()
        volume = api.create_volume(app, props["region"], int(props["volume_gb"]))
        if volume["id"] not in before:
            made["volume"] = volume["id"]
        if int(volume.get("size_gb") or 0) < int(props["volume_gb"]):
            api.extend_volume(app, volume["id"], int(props["volume_gb"]))
        before = {m["id"] for m in api.machines(app)} if adopted else set()
        machine = api.launch(app, machine_name(app), props["region"], machine_config(props, volume["id"]))
        if machine["id"] not in before:
            made["machine"] = machine["id"]
        pulumi.log.info(f"{app}: machine {machine['id']} {machine.get('state')} ({props['guest']}, "
                        f"volume {volume['id']})")
        started = _until_started(api, app, machine["id"])
        return {**props, "machine_id": machine["id"], "volume_id": volume["id"], "machine_state": started,
                "url": app_url(app), "api_key": api_key}

    def create(self, props: Dict[str, Any]) -> CreateResult:
        # The bearer is made here, kept in state as a secret output, and sent only to Fly's secrets API.
        made: Dict[str, Any] = {}
        with self._api() as api:
            try:
                outs = self._apply(api, props, secrets.token_urlsafe(36), made)
            except Exception as err:
                # A failed create leaves nothing in state: what this call made would bill behind its back.
                if not made:
                    raise
                raise _undo_create(api, props["app"], made, err) from err
        return CreateResult(props["app"], outs)

    def update(self, id_: str, olds: Dict[str, Any], news: Dict[str, Any]) -> UpdateResult:
        try:
            return self._update(olds, news)
        except CloudError as err:
            # A failed update keeps the state as it was: the app and its Machine stay known to it.
            raise CloudError(f"{err}; {id_} stays in state, and the next `up` looks again") from err

    def _update(self, olds: Dict[str, Any], news: Dict[str, Any]) -> UpdateResult:
        state = olds.get("machine_state")
        if all(olds.get(k) == news.get(k) for k in MACHINE_KEYS) and olds.get("machine_id"):
            if state not in DOWN_STATES:
                # Stamps alone: nothing at Fly changes, and the Machine is not restarted for them.
                return UpdateResult({**olds, **news})
            if state in ("stopped", "suspended"):
                with self._api() as api:
                    api.start(news["app"], olds["machine_id"])
                    pulumi.log.info(f"{news['app']}: machine {olds['machine_id']} was {state}; started again")
                    started = _until_started(api, news["app"], olds["machine_id"])
                return UpdateResult({**olds, **news, "machine_state": started})
        with self._api() as api:
            return UpdateResult(self._apply(api, news, olds.get("api_key") or secrets.token_urlsafe(36)))

    def read(self, id_: str, props: Dict[str, Any]) -> ReadResult:
        with self._api() as api:
            if api.app(id_) is None:
                return ReadResult("", {})  # Fly no longer knows the app: nothing of it bills
            machine = api.machine(id_, props.get("machine_id") or "") if props.get("machine_id") else None
        state = (machine or {}).get("state") or "destroyed"
        config = (machine or {}).get("config") or {}
        outs = {**props, "machine_state": state}
        if machine is not None and state != "destroyed":
            outs.update(image=config.get("image", props.get("image")), env=config.get("env", props.get("env")),
                        guest={k: config.get("guest", {}).get(k) for k in ("cpu_kind", "cpus", "memory_mb")}
                        if config.get("guest") else props.get("guest"))
        return ReadResult(id_, outs, {k: outs.get(k) for k in INPUT_KEYS if k in props})

    def delete(self, id_: str, props: Dict[str, Any]) -> None:
        with self._api() as api:
            if api.app(id_) is None:
                return
            _teardown(api, id_, {"app": True})


def _teardown(api: FlyApi, app: str, made: Dict[str, Any]) -> None:
    """Destroy and verify gone: with ``made["app"]`` the whole app (its machines, volumes, then the app), as
    delete does; else only ``made``'s Machine and volume in an app this stack adopted."""
    deadline = within(env_seconds("ESTATE_DELETE_TIMEOUT_SECONDS", 300))
    if made.get("app"):
        _until(lambda: _machines_left(api, app), deadline, f"{app}: Fly keeps machines")
        _until(lambda: _volumes_left(api, app), deadline, f"{app}: Fly keeps the volume")
        _until(lambda: _app_left(api, app), deadline, f"{app}: Fly keeps the app")
        return
    if made.get("machine"):
        _until(lambda: _machines_left(api, app, {made["machine"]}), deadline, f"{app}: Fly keeps machine {made['machine']}")
    if made.get("volume"):
        _until(lambda: _volumes_left(api, app, {made["volume"]}), deadline, f"{app}: Fly keeps volume {made['volume']}")


def _made_text(app: str, made: Dict[str, Any]) -> str:
    if made.get("app"):
        return f"the Fly app {app} with its volume and Machine"
    return " and ".join(f"{kind} {made[kind]}" for kind in ("machine", "volume") if made.get(kind)) + f" in app {app}"


def _undo_create(api: FlyApi, app: str, made: Dict[str, Any], err: Exception) -> CloudError:
    """Tear down what a failed create made (verified gone), and the error that says what became of it."""
    what = _made_text(app, made)
    try:
        _teardown(api, app, made)
    except Exception as late:  # noqa: BLE001 - said, with what is left
        return CloudError(f"{app}: create failed ({err}), and tearing down what it made failed too ({late}): "
                          f"{what} may still bill at Fly outside the state; `python scripts/leftovers.py` lists it")
    return CloudError(f"{app}: create failed ({err}); {what} it made was destroyed and verified gone, so nothing "
                      "of it bills; the next `up` creates it again")


def _only(listed: List[Dict[str, Any]], only: Optional[set]) -> List[Dict[str, Any]]:
    return [x for x in listed if only is None or x["id"] in only]


def _machines_left(api: FlyApi, app: str, only: Optional[set] = None) -> Optional[str]:
    """None once Fly lists no machine of the app (of ``only``, if given) but destroyed ones; destroys what it
    still lists."""
    why = [w for m in _only(api.machines(app), only) if (w := _refusal(lambda m=m: api.destroy(app, m["id"])))]
    left = [m["id"] for m in _only(api.machines(app), only)]
    return "; ".join(why) or (f"machines {', '.join(left)} not destroyed yet" if left else None)


def _volumes_left(api: FlyApi, app: str, only: Optional[set] = None) -> Optional[str]:
    """None once the app has no volume left (of ``only``, if given); deletes what it still lists (Fly refuses
    an attached one)."""
    why = [w for v in _only(api.volumes(app), only) if (w := _refusal(lambda v=v: api.delete_volume(app, v["id"])))]
    left = [v["id"] for v in _only(api.volumes(app), only)]
    return "; ".join(why) or (f"volumes {', '.join(left)} not deleted yet" if left else None)


def _app_left(api: FlyApi, app: str) -> Optional[str]:
    """None once Fly no longer knows the app."""
    why = _refusal(lambda: api.delete_app(app))
    return why or ("still there after delete" if api.app(app) is not None else None)


def _until_started(api: FlyApi, app: str, machine_id: str) -> str:
    deadline = within(env_seconds("ESTATE_BOOT_TIMEOUT_SECONDS", 600))
    try:
        m = wait_for(lambda: api.machine(app, machine_id) or {}, lambda m: m.get("state") == "started", deadline,
                     env_seconds("ESTATE_POLL_SECONDS", 5), f"{app}: machine {machine_id} starting")
    except WaitTimeout as late:
        raise CloudError(f"{app}: machine {machine_id} did not start "
                         f"({late.last.get('state') if late.last else '?'})") from late
    return m["state"]


class FlyMachine(DynamicResource, module="fly", name="Machine"):
    """A Fly.io app, its model volume, its bearer secret and one always-on Machine."""

    SECRET_OUTPUTS = ("api_key",)
    api_key: pulumi.Output[str]
    """The bearer llama.cpp checks (generated at create, a secret): the gateway sends it."""
    machine_id: pulumi.Output[str]
    volume_id: pulumi.Output[str]
    url: pulumi.Output[str]
    machine_state: pulumi.Output[str]

    def __init__(self, name: str, props: Dict[str, Any], opts: Optional[pulumi.ResourceOptions] = None):
        outs = {"machine_id": None, "volume_id": None, "url": None, "machine_state": None, "api_key": None}
        super().__init__(FlyMachineProvider(), name, {**outs, "version": PROVIDER_VERSION, **props}, opts)


__all__ = ["FlyApi", "FlyMachine", "FlyMachineProvider", "machine_config", "machine_name", "volume_name"]
