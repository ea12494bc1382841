"""RunPod serverless endpoints: a template and an endpoint through RunPod's GraphQL API, as one dynamic
resource (``pulumi-python:dynamic/runpod:Endpoint``).

- create adopts the template and the endpoint that carry the resource's name (RunPod has no idempotency
  key: a create whose answer was lost, or an earlier `up` that died, never makes a second endpoint), then
  saves both with the stack's values.
- nothing replaces an endpoint: RunPod saves every field in place (``saveTemplate``/``saveEndpoint`` with
  the id), and a new image or env rolls its workers onto the new template.
- read reports what RunPod holds (workers, idle timeout, pools, image, env), so `refresh` shows drift and
  the next `up` puts the stack's values back; an endpoint deleted behind the state's back reads as gone.
- delete scales the endpoint to zero workers (RunPod refuses to delete one that has any), deletes it,
  verifies RunPod no longer lists it, then deletes its template, retrying while RunPod still holds the
  template from the endpoint's last use.

Credentials come from the environment or the provider's config, never from inputs; the template's env
carries RunPod secret references (``{{ RUNPOD_SECRET_<name> }}``), never a secret's value.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional

import pulumi
from pulumi.dynamic import (
    CheckFailure, CheckResult, ConfigureRequest, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult,
)

from core.vendors import (
    RUNPOD_SERVERLESS_DEFAULT_URL, RUNPOD_SERVERLESS_URL_ENV, RUNPOD_SERVERLESS_URL_KEY, VENDORS, Vendor,
)
from providers.gpu_cloud import env_or_config, env_seconds
from providers.http import CloudError, NotFound
from providers.resource import DynamicResource
from providers.runpod import Client
from providers.wait import WaitTimeout, wait_for, within

PROVIDER_VERSION = "1"
CONFIG_KEYS = tuple(f"gpu-estate:{k}" for k in (
    VENDORS[Vendor.RUNPOD].credential_key, VENDORS[Vendor.RUNPOD].url_key, RUNPOD_SERVERLESS_URL_KEY))
TEMPLATE_FIELDS = "id name imageName dockerArgs containerDiskInGb volumeInGb env { key value } isServerless"
ENDPOINT_FIELDS = ("id name templateId gpuIds gpuCount locations idleTimeout scalerType scalerValue workersMin "
                   "workersMax flashBootType")


@dataclasses.dataclass(frozen=True)
class TemplateInputs:
    """What every worker runs: RunPod's serverless template."""

    image: str
    container_disk_gb: int
    env: Dict[str, str] = dataclasses.field(default_factory=dict)
    """Plain values and RunPod secret references only."""
    docker_args: str = ""
    """The worker's command after its image's entrypoint, one string RunPod splits on whitespace."""


@dataclasses.dataclass(frozen=True)
class EndpointInputs:
    """How RunPod scales the workers, and on which GPUs."""

    gpu_ids: str
    gpu_count: int = 1
    locations: str = ""
    idle_timeout: int = 5
    scaler_type: str = "QUEUE_DELAY"
    scaler_value: int = 4
    workers_min: int = 0
    workers_max: int = 3
    flashboot: bool = True


@dataclasses.dataclass(frozen=True)
class ServerlessEndpointArgs:
    """The inputs of ``pulumi-python:dynamic/runpod:Endpoint``: the one place their names are written."""

    name: str
    """The endpoint's and its template's name at RunPod (``<project>-<stack>-<endpoint>``): the adoption key."""
    template: TemplateInputs
    endpoint: EndpointInputs
    stamps: Dict[str, Any] = dataclasses.field(default_factory=dict)
    """What the policy pack and the cost diff read (the node-shaped cost figures of the endpoint)."""

    def to_props(self) -> Dict[str, Any]:
        return {"name": self.name, "template": dataclasses.asdict(self.template),
                "endpoint": dataclasses.asdict(self.endpoint), "stamps": dict(self.stamps)}


INPUT_KEYS = ("name", "template", "endpoint", "stamps", "version")


class ServerlessApi(Client):
    """The serverless half of RunPod's GraphQL API, on the pod client's session, retries and error mapping."""

    def __init__(self, config: Dict[str, str]):
        super().__init__(config)
        self.serverless_url = (env_or_config(config, RUNPOD_SERVERLESS_URL_ENV, f"gpu-estate:{RUNPOD_SERVERLESS_URL_KEY}")
                               or RUNPOD_SERVERLESS_DEFAULT_URL).rstrip("/")

    def openai_base(self, endpoint_id: str) -> str:
        """The endpoint's OpenAI-compatible route (RunPod's vLLM worker answers under it)."""
        return f"{self.serverless_url}/{endpoint_id}/openai/v1"

    def templates(self) -> List[Dict[str, Any]]:
        data = self._gql(f"query {{ myself {{ podTemplates {{ {TEMPLATE_FIELDS} }} }} }}")
        return list((data.get("myself") or {}).get("podTemplates") or [])

    def endpoints(self) -> List[Dict[str, Any]]:
        data = self._gql(f"query {{ myself {{ endpoints {{ {ENDPOINT_FIELDS} }} }} }}")
        return list((data.get("myself") or {}).get("endpoints") or [])

    def find_template(self, name: str) -> Optional[Dict[str, Any]]:
        return next((t for t in self.templates() if t.get("name") == name), None)

    def find_endpoint(self, *, name: Optional[str] = None, id_: Optional[str] = None) -> Optional[Dict[str, Any]]:
        return next((e for e in self.endpoints() if (id_ and e.get("id") == id_) or (name and e.get("name") == name)),
                    None)

    def _save(self, what: str, input_type: str, fields: str, name: str, inp: Dict[str, Any],
              id_: Optional[str]) -> Dict[str, Any]:
        """``save<What>`` with ``inp`` (an update when ``id_`` is given: only then is it safe to resend). The
        variable is declared non-null: valid whether RunPod's argument is nullable or not."""
        if id_:
            inp = {**inp, "id": id_}
        data = self._gql(f"mutation Save($input: {input_type}) {{ save{what}(input: $input) {{ {fields} }} }}",
                         {"input": inp}, idempotent=bool(id_))
        saved = data.get(f"save{what}") or {}
        if not saved.get("id"):
            raise CloudError(f"RunPod: save{what} returned no {what.lower()} for {name}")
        return saved

    def save_template(self, name: str, t: TemplateInputs, template_id: Optional[str] = None) -> Dict[str, Any]:
        return self._save("Template", "SaveTemplateInput!", TEMPLATE_FIELDS, name, {
            "name": name, "imageName": t.image, "dockerArgs": t.docker_args, "containerDiskInGb": t.container_disk_gb,
            # Serverless workers take no pod volume (RunPod requires 0) and no public ports.
            "volumeInGb": 0, "ports": "", "isServerless": True, "startSsh": False, "isPublic": False, "readme": "",
            "env": [{"key": k, "value": v} for k, v in sorted(t.env.items())],
        }, template_id)

    def save_endpoint(self, name: str, template_id: str, e: EndpointInputs,
                      endpoint_id: Optional[str] = None) -> Dict[str, Any]:
        return self._save("Endpoint", "EndpointInput!", ENDPOINT_FIELDS, name, {
            "name": name, "templateId": template_id, "gpuIds": e.gpu_ids, "gpuCount": e.gpu_count,
            "locations": e.locations, "networkVolumeId": "", "idleTimeout": e.idle_timeout,
            "scalerType": e.scaler_type, "scalerValue": e.scaler_value,
            "workersMin": e.workers_min, "workersMax": e.workers_max,
            "flashBootType": "FLASHBOOT" if e.flashboot else "OFF",
        }, endpoint_id)

    def scale_to_zero(self, endpoint: Dict[str, Any]) -> None:
        self._save("Endpoint", "EndpointInput!", ENDPOINT_FIELDS, endpoint["name"],
                   {"name": endpoint["name"], "templateId": endpoint["templateId"], "gpuIds": endpoint["gpuIds"],
                    "workersMin": 0, "workersMax": 0}, endpoint["id"])

    def delete_endpoint(self, endpoint_id: str) -> None:
        self._gql("mutation Delete($id: String!) { deleteEndpoint(id: $id) }", {"id": endpoint_id})

    def delete_template(self, name: str) -> None:
        self._gql("mutation Delete($name: String!) { deleteTemplate(templateName: $name) }", {"name": name})


def _template_outs(t: Dict[str, Any]) -> Dict[str, Any]:
    """A template as RunPod holds it, in the resource's input shape."""
    return {"image": t.get("imageName"), "container_disk_gb": int(t.get("containerDiskInGb") or 0),
            "env": {kv["key"]: kv["value"] for kv in t.get("env") or []}, "docker_args": t.get("dockerArgs") or ""}


def _endpoint_outs(e: Dict[str, Any], flashboot_default: bool) -> Dict[str, Any]:
    """An endpoint as RunPod holds it, in the resource's input shape."""
    flash = e.get("flashBootType")
    return {"gpu_ids": e.get("gpuIds") or "", "gpu_count": int(e.get("gpuCount") or 1),
            "locations": e.get("locations") or "", "idle_timeout": int(e.get("idleTimeout") or 0),
            "scaler_type": e.get("scalerType") or "", "scaler_value": int(e.get("scalerValue") or 0),
            "workers_min": int(e.get("workersMin") or 0), "workers_max": int(e.get("workersMax") or 0),
            "flashboot": flashboot_default if flash is None else flash == "FLASHBOOT"}


class ServerlessEndpointProvider(ResourceProvider):
    def __init__(self) -> None:
        super().__init__()
        self._config: Dict[str, str] = {}

    def configure(self, req: ConfigureRequest) -> None:
        self._config = {k: v for k in CONFIG_KEYS if (v := req.config.get(k))}

    def _api(self) -> ServerlessApi:
        return ServerlessApi(self._config)

    def check(self, _olds: Dict[str, Any], news: Dict[str, Any]) -> CheckResult:
        failures: List[CheckFailure] = []
        if not news.get("name"):
            failures.append(CheckFailure("name", "a deterministic name is required"))
        try:
            t = TemplateInputs(**(news.get("template") or {}))
            if not t.image:
                failures.append(CheckFailure("template", "an image is required"))
        except TypeError as err:
            failures.append(CheckFailure("template", str(err)))
        try:
            e = EndpointInputs(**(news.get("endpoint") or {}))
            if not e.gpu_ids:
                failures.append(CheckFailure("endpoint", "gpu_ids: one or more RunPod GPU pools (got none)"))
            if not 0 <= e.workers_min <= e.workers_max:
                failures.append(CheckFailure("endpoint", f"0 <= workers_min <= workers_max (got {e.workers_min}, "
                                                         f"{e.workers_max})"))
        except TypeError as err:
            failures.append(CheckFailure("endpoint", str(err)))
        return CheckResult({**news, "version": PROVIDER_VERSION}, failures)

    def diff(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> DiffResult:
        changed = [k for k in INPUT_KEYS if olds.get(k) != news.get(k)]
        # RunPod saves every field in place: no change ever makes a second endpoint.
        return DiffResult(changes=bool(changed), replaces=[], stables=[], delete_before_replace=False)

    def _save(self, api: ServerlessApi, props: Dict[str, Any], template_id: Optional[str],
              endpoint_id: Optional[str]) -> Dict[str, Any]:
        name = props["name"]
        t, e = TemplateInputs(**props["template"]), EndpointInputs(**props["endpoint"])
        template = api.save_template(name, t, template_id)
        pulumi.log.info(f"{name}: template {template['id']} saved ({t.image})")
        endpoint = api.save_endpoint(name, template["id"], e, endpoint_id)
        pulumi.log.info(f"{name}: endpoint {endpoint['id']} saved ({e.workers_min}-{e.workers_max} workers on "
                        f"{e.gpu_ids}, idle timeout {e.idle_timeout} s)")
        return {**props, "endpoint_id": endpoint["id"], "template_id": template["id"],
                "openai_base": api.openai_base(endpoint["id"])}

    def create(self, props: Dict[str, Any]) -> CreateResult:
        with self._api() as api:
            name = props["name"]
            template = api.find_template(name)
            endpoint = api.find_endpoint(name=name)
            if template or endpoint:
                pulumi.log.info(f"{name}: adopting what RunPod already holds under this name "
                                f"(template {template and template['id']}, endpoint {endpoint and endpoint['id']})")
            outs = self._save(api, props, template and template["id"], endpoint and endpoint["id"])
        return CreateResult(outs["endpoint_id"], outs)

    def read(self, id_: str, props: Dict[str, Any]) -> ReadResult:
        with self._api() as api:
            endpoint = api.find_endpoint(id_=id_)
            if endpoint is None:
                # Deleted behind the state's back: nothing bills; the next up makes it again.
                return ReadResult("", {})
            template = next((t for t in api.templates() if t.get("id") == endpoint.get("templateId")), None)
        seen_endpoint = _endpoint_outs(endpoint, bool((props.get("endpoint") or {}).get("flashboot", True)))
        seen_template = _template_outs(template) if template else props.get("template")
        outs = {**props, "endpoint": seen_endpoint, "template": seen_template, "endpoint_id": id_,
                "template_id": endpoint.get("templateId"), "name": endpoint.get("name") or props.get("name")}
        inputs = {k: outs.get(k) for k in INPUT_KEYS if k in props}
        return ReadResult(id_, outs, inputs)

    def update(self, id_: str, olds: Dict[str, Any], news: Dict[str, Any]) -> UpdateResult:
        with self._api() as api:
            if api.find_endpoint(id_=id_) is None:
                raise NotFound(f"{news['name']}: RunPod no longer lists endpoint {id_}; run `pulumi refresh` "
                               "then `pulumi up`")
            outs = self._save(api, news, olds.get("template_id"), id_)
        return UpdateResult(outs)

    def delete(self, id_: str, props: Dict[str, Any]) -> None:
        name = props.get("name") or ""
        deadline = within(env_seconds("ESTATE_DELETE_TIMEOUT_SECONDS", 300))
        with self._api() as api:
            endpoint = api.find_endpoint(id_=id_)
            if endpoint is not None:
                if endpoint.get("workersMin") or endpoint.get("workersMax"):
                    api.scale_to_zero(endpoint)  # RunPod deletes only an endpoint with no workers
                _until(lambda: _endpoint_deleted(api, id_), deadline, f"{name}: RunPod keeps endpoint {id_}")
            # The template bills nothing, but is ours: RunPod lets it go a while after its last use.
            _until(lambda: _refusal(lambda: api.delete_template(name)), deadline,
                   f"{name}: the endpoint is deleted, but RunPod keeps its template")


def _refusal(call: Callable[[], Any]) -> Optional[str]:
    """Why RunPod refused a delete (None: done, or already gone)."""
    try:
        call()
    except NotFound:
        return None
    except CloudError as err:
        return str(err)
    return None


def _endpoint_deleted(api: ServerlessApi, endpoint_id: str) -> Optional[str]:
    """None once RunPod no longer lists the endpoint, else why not yet."""
    why = _refusal(lambda: api.delete_endpoint(endpoint_id))
    if why is None and api.find_endpoint(id_=endpoint_id) is not None:
        why = "still listed after delete"
    return why


def _until(step: Callable[[], Optional[str]], deadline: float, what: str) -> None:
    """Run ``step`` until it reports done (None), polling; past ``deadline`` raise, saying why it was not."""
    try:
        wait_for(step, lambda why: why is None, deadline, env_seconds("ESTATE_POLL_SECONDS", 5), what,
                 on_retry=lambda why: pulumi.log.info(f"{what} ({why}); trying again"))
    except WaitTimeout as late:
        raise CloudError(f"{what} ({late.last}); it stays in state so the next destroy tries again") from late


class ServerlessEndpoint(DynamicResource, module="runpod", name="Endpoint"):
    """A RunPod serverless endpoint and its template: ``pulumi-python:dynamic/runpod:Endpoint``."""

    endpoint_id: pulumi.Output[str]
    template_id: pulumi.Output[str]
    openai_base: pulumi.Output[str]
    """Where its OpenAI-compatible route answers (the RunPod API key is its bearer token)."""

    def __init__(self, name: str, args: ServerlessEndpointArgs, opts: Optional[pulumi.ResourceOptions] = None):
        outs = {"endpoint_id": None, "template_id": None, "openai_base": None}
        super().__init__(ServerlessEndpointProvider(), name, {**outs, "version": PROVIDER_VERSION, **args.to_props()},
                         opts)


__all__ = ["ServerlessApi", "ServerlessEndpoint", "ServerlessEndpointArgs", "ServerlessEndpointProvider",
           "TemplateInputs", "EndpointInputs"]
