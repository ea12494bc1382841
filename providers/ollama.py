"""The Ollama model library: one dynamic resource per (node, model tag), over Ollama's HTTP API.

- create makes sure the tag is on the node: one ``GET /api/tags`` when it already is, otherwise a
  streamed ``POST /api/pull`` whose every NDJSON line is read. Progress goes to ``pulumi.log`` in steps of
  10 percent; an ``error`` line fails the pull with the server's own message; a stream that ends before
  ``success`` (a dropped connection) is pulled again, since Ollama resumes partial downloads.
- read reports the digest ``/api/tags`` lists now. A model removed behind the state's back is reported
  gone, so the next ``up`` pulls it again; a digest other than the one pulled marks it changed, and the
  next ``up`` pulls the tag again. A node that cannot be reached says nothing about its models: they
  are kept as they were.
- delete removes the model; a model already absent is success. An unreachable node fails the delete, so
  the resource stays in state.
- A model of the operator's own (``source``: a GGUF in the estate's bucket, ``providers/own_models.py``) is
  made instead of pulled: the GGUF is streamed to ``POST /api/blobs/sha256:<digest>`` (skipped when
  ``HEAD`` finds the blob there already; Ollama refuses bytes of another digest), then ``POST /api/create``
  with ``files`` and the Modelfile's template, system prompt and parameters, read to its ``success`` line.
  Refresh, drift and delete are as for a pulled tag; a new ``source`` (another version) makes it again.
  A ``source`` that is ``waiting`` (a job's run that has not succeeded yet) makes nothing new: a model made
  before stays as it is (no change) and its state keeps the source it was made from, so a node's new machine
  (failover, a re-rent) gets that earlier model made again meanwhile; one never made is recorded as waiting,
  and the first `up` whose ``source`` has a GGUF makes it.
- While the node is powered off (``active`` false) nothing is contacted: the models stay on its disk.

Nodes with ``access: ssh`` publish nothing but SSH; the provider then reaches Ollama through an OpenSSH
port forward for the length of each operation (``providers.ssh_forward``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from typing import Any, Callable, Dict, Iterator, List, Optional

import pulumi
import requests
from pulumi.dynamic import (
    CheckFailure, CheckResult, ConfigureRequest, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult,
)

from core.own_models import GGUF_FILE
from providers import ssh_forward
from providers.http import ApiSession, CloudError, json_body
from providers.resource import DynamicResource

PROVIDER_VERSION = "1"


@dataclasses.dataclass(frozen=True)
class SshTarget:
    """How the provider reaches a node's Ollama through an OpenSSH forward."""

    host: str
    port: int
    user: str
    key_env: str
    """Environment variable holding the private key when the config secret is not set."""
    remote_port: int
    """Ollama's port on the node's loopback."""
    host_key: Optional[str] = None
    """The node's pinned SSH host key; the forward refuses a server with another."""


@dataclasses.dataclass(frozen=True)
class OllamaModelArgs:
    """The inputs of ``pulumi-python:dynamic/ollama:Model``: the one place their names are written."""

    node: str
    model: str
    """The Ollama tag."""
    endpoint: pulumi.Input[Optional[str]] = None
    """Ollama's URL on a node reached directly."""
    ssh: pulumi.Input[Optional[Dict[str, Any]]] = None
    """An ``SshTarget`` as a dict, on a node reached over SSH."""
    instance: pulumi.Input[Optional[str]] = None
    """The machine's id: a new machine makes the model be checked again."""
    active: bool = True
    """False while the node is powered off: nothing is contacted."""
    stamps: Dict[str, Any] = dataclasses.field(default_factory=dict)
    insecure: bool = False
    """Pull over plain HTTP (Ollama's ``insecure``): the model's registry is on the node's loopback. Absent
    from the inputs when False, so models pulled before the field existed keep their inputs."""

    source: pulumi.Input[Optional[Dict[str, Any]]] = None
    """A model of the operator's own: its GGUF's ``url`` and ``sha256``, the Modelfile's ``template``, ``system``
    and ``parameters``, the registry ``ref`` and ``version`` it was resolved from, and ``store`` for a bucket at an
    endpoint of its own (its endpoint, region and the names of the config secrets holding its key;
    ``own_models.source_props``). Absent from the inputs when None, as ``insecure``."""
    cache: Optional[str] = None
    """``s3://<bucket>/<prefix>`` the node's pulled models are kept in and a new machine fills from
    (``providers.model_cache``). Absent from the inputs when None."""

    def to_props(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not (f.name in OPTIONAL_KEYS and not getattr(self, f.name))}


OPTIONAL_KEYS = ("insecure", "source", "cache")
REPLACE_KEYS = ("node", "model")
UPDATE_KEYS = tuple(f.name for f in dataclasses.fields(OllamaModelArgs) if f.name not in REPLACE_KEYS) + ("version",)
INPUT_KEYS = REPLACE_KEYS + UPDATE_KEYS
PULL_ATTEMPTS = 3
OLLAMA_PORT = 11434


class OllamaError(CloudError):
    pass


def resource_name(node: str, tag: str) -> str:
    """Pulumi name of a model resource: ``<node>-<tag>`` with ':' and '/' made safe for URNs."""
    return f"{node}-{tag.replace(':', '-').replace('/', '-')}"


class Progress:
    """Turns pull lines into percent of bytes across layers, reported once per 10 percent."""

    def __init__(self, report: Callable[[int], None], step: int = 10):
        self.report, self.step = report, step
        self.layers: Dict[str, tuple] = {}
        self.last = -1

    def feed(self, line: Dict[str, Any]) -> None:
        if "total" not in line or not line.get("digest"):
            return
        self.layers[line["digest"]] = (int(line.get("completed") or 0), int(line["total"] or 0))
        done = sum(c for c, _ in self.layers.values())
        total = sum(t for _, t in self.layers.values())
        if not total:
            return
        pct = min(100, done * 100 // total)
        if pct // self.step > self.last // self.step or self.last < 0:
            self.last = pct
            self.report(pct)


class OllamaClient:
    """The few calls the model library makes, on one Ollama base URL."""

    def __init__(self, base_url: str):
        self.api = ApiSession(base_url, None, "ollama")

    def close(self) -> None:
        self.api.close()

    def tags(self) -> Dict[str, Dict[str, Any]]:
        resp = self.api.request("GET", "/api/tags")
        if resp.status_code != 200:
            raise OllamaError(f"ollama: GET /api/tags answered {resp.status_code}: {resp.text[:200]}", resp.status_code)
        return {m["name"]: m for m in json_body(resp).get("models") or []}

    def digest(self, tag: str) -> Optional[str]:
        model = self.tags().get(tag)
        return model["digest"] if model else None

    def pull(self, tag: str, on_line: Callable[[Dict[str, Any]], None], insecure: bool = False) -> None:
        """Pull with streaming on; raise with the server's message on an error line."""
        body: Dict[str, Any] = {"model": tag, "stream": True, **({"insecure": True} if insecure else {})}
        status: List[Optional[str]] = [None]

        def seen(line: Dict[str, Any]) -> None:
            status[0] = line.get("status")
            on_line(line)
        try:
            last = self._stream("/api/pull", body, f"pull {tag}", seen)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout) as err:
            raise StreamBroken(f"pull {tag}: stream broke after {status[0]!r}: {err}") from err
        if last != "success":
            raise StreamBroken(f"pull {tag}: stream ended after {last!r}, not 'success'")

    def _stream(self, path: str, body: Dict[str, Any], what: str, on_line: Callable[[Dict[str, Any]], None]) -> Optional[str]:
        """POST an NDJSON-streaming call and read every line; the last status, or raise with the server's
        message on an error line (sent under HTTP 200)."""
        last: Optional[str] = None
        with requests.post(f"{self.api.base_url}{path}", json=body, stream=True,
                           timeout=(5.0, float(os.environ.get("ESTATE_HTTP_TIMEOUT", "60")))) as resp:
            if resp.status_code != 200:
                raise OllamaError(f"{what}: {json_body(resp).get('error') or resp.status_code}", resp.status_code)
            for raw in resp.iter_lines():
                if not raw:
                    continue
                line = json.loads(raw)
                if line.get("error"):
                    raise OllamaError(f"{what}: {line['error']}", 200, line)
                last = line.get("status")
                on_line(line)
        return last

    def has_blob(self, sha256: str) -> bool:
        resp = self.api.request("HEAD", f"/api/blobs/sha256:{sha256}")
        if resp.status_code not in (200, 404):
            raise OllamaError(f"ollama: HEAD /api/blobs answered {resp.status_code}", resp.status_code)
        return resp.status_code == 200

    def push_blob(self, sha256: str, chunks: Iterator[bytes]) -> None:
        """Upload a blob; Ollama checks its digest and refuses other bytes."""
        url = f"{self.api.base_url}/api/blobs/sha256:{sha256}"
        resp = requests.post(url, data=chunks, timeout=(5.0, float(os.environ.get("ESTATE_HTTP_TIMEOUT", "60"))))
        if resp.status_code not in (200, 201):
            raise OllamaError(f"upload of sha256:{sha256[:12]}: {json_body(resp).get('error') or resp.status_code}",
                              resp.status_code)

    def create(self, tag: str, body: Dict[str, Any], on_line: Callable[[Dict[str, Any]], None]) -> None:
        """``POST /api/create`` streamed; raise with the server's message on an error line."""
        last = self._stream("/api/create", {"model": tag, "stream": True, **body}, f"create {tag}", on_line)
        if last != "success":
            raise OllamaError(f"create {tag}: ended after {last!r}, not 'success'")

    def delete(self, tag: str) -> bool:
        """Remove ``tag``; False when it was not there."""
        resp = self.api.request("DELETE", "/api/delete", json={"model": tag})
        if resp.status_code == 404:
            return False
        if resp.status_code != 200:
            raise OllamaError(f"delete {tag}: {resp.status_code} {resp.text[:200]}", resp.status_code)
        return True


class StreamBroken(OllamaError):
    """The pull stream stopped before its last line: pulling again resumes it."""


class OllamaModelProvider(ResourceProvider):
    def __init__(self) -> None:
        super().__init__()
        self._private_key: Optional[str] = None
        self._store_config: Dict[str, str] = {}
        self._config: Any = None

    def configure(self, req: ConfigureRequest) -> None:
        from providers import stores

        self._private_key = req.config.get("gpu-estate:sshPrivateKey") or None
        # The buckets' credentials as the stack has them (gcp:credentials, ...), for caches and own models.
        self._store_config = {k: v for k in stores.config_keys() if (v := req.config.get(k))}
        # The stack's config secrets, for the access key a model's bucket at an endpoint of its own names.
        self._config = req.config

    def _config_for(self, access: Optional[Dict[str, Any]]) -> Dict[str, str]:
        """The store config for a source reached through ``access`` (its config secrets read only then)."""
        from providers import stores

        if not access or self._config is None:
            return self._store_config
        return {**self._store_config, **{k: v for k in stores.config_keys(access) if (v := self._config.get(k))}}

    @contextlib.contextmanager
    def _client(self, props: Dict[str, Any]) -> Iterator[OllamaClient]:
        ssh = props.get("ssh")
        if ssh:
            key_env = ssh.get("key_env") or "ESTATE_SSH_PRIVATE_KEY"
            key = self._private_key or os.environ.get(key_env)
            remote = int(ssh.get("remote_port") or OLLAMA_PORT)
            with ssh_forward.forward(ssh["host"], int(ssh["port"]), ssh["user"], remote, key, key_env,
                                     host_key=ssh.get("host_key")) as local:
                client = OllamaClient(f"http://127.0.0.1:{local}")
                try:
                    yield client
                finally:
                    client.close()
            return
        if not props.get("endpoint"):
            raise OllamaError(f"{props['node']}: no Ollama endpoint yet (the node has no address)")
        client = OllamaClient(props["endpoint"])
        try:
            yield client
        finally:
            client.close()

    def check(self, _olds: Dict[str, Any], news: Dict[str, Any]) -> CheckResult:
        failures: List[CheckFailure] = []
        if not news.get("model") or not isinstance(news.get("model"), str):
            failures.append(CheckFailure("model", f"an Ollama tag such as qwen3:8b (got {news.get('model')!r})"))
        if not news.get("node"):
            failures.append(CheckFailure("node", "the node the model lives on"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> DiffResult:
        replaces = [k for k in REPLACE_KEYS if olds.get(k) != news.get(k)]
        # A source that waits (for a job's run to succeed) is no change: what the node holds stays as it is.
        waits = bool((news.get("source") or {}).get("waiting"))
        changed = [k for k in UPDATE_KEYS if olds.get(k) != news.get(k) and not (waits and k == "source")]
        if news.get("active") and olds.get("digest") != olds.get("pulled_digest"):
            changed.append("digest")
        return DiffResult(changes=bool(replaces or changed), replaces=replaces, stables=["node"],
                          delete_before_replace=False)

    def _ensure(self, props: Dict[str, Any], force: bool, made: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The model on the node as ``props`` say; ``made``: the source it was made from before, which a source
        that waits keeps in state and makes the model from again where the node lacks it (a new machine)."""
        node, tag = props["node"], props["model"]
        outs = {k: props.get(k) for k in INPUT_KEYS if k not in OPTIONAL_KEYS or props.get(k)}
        waiting = (props.get("source") or {}).get("waiting")
        if waiting and made:
            outs["source"] = made  # what the node serves until the new run has succeeded
        if not props.get("active"):
            pulumi.log.info(f"{node}: powered off; {tag} stays as it is on the node's disk")
            return {**outs, "digest": props.get("digest"), "pulled_digest": props.get("pulled_digest")}
        if waiting and not props.get("digest") and not made:
            pulumi.log.warn(f"{node}: {tag} waits: {waiting}; nothing is made on the node yet")
            return {**outs, "digest": None, "pulled_digest": None, "pulled": False}
        with self._client(props) as c:
            digest = c.digest(tag)
            if waiting and not (made and (force or not digest)):  # made before: kept as the node holds it
                if not digest:
                    pulumi.log.warn(f"{node}: {tag} is not on the node and waits: {waiting}")
                return {**outs, "digest": digest, "pulled_digest": props.get("pulled_digest") or digest,
                        "pulled": False}
            if waiting:  # a new machine (or a model changed on it): the earlier run's model, made again meanwhile
                pulumi.log.info(f"{node}: {tag} waits: {waiting}; making it again from {made['url']} meanwhile")
                try:
                    self._make(c, node, tag, made)
                except OllamaError as err:  # the earlier bytes may be gone: the new run's model comes once it succeeded
                    pulumi.log.warn(f"{err}; {tag} waits: {waiting}")
                    return {**outs, "digest": None, "pulled_digest": None, "pulled": False}
            elif props.get("source"):
                self._make(c, node, tag, props["source"])
            elif digest and not force:
                self._cache(props, present=True)
                return {**outs, "digest": digest, "pulled_digest": digest, "pulled": False}
            elif digest or not self._restore(c, props):  # changed on the node: pulled again from its registry
                self._pull(c, node, tag, bool(props.get("insecure")))
                self._cache(props, present=False)
            digest = c.digest(tag)
        if not digest:
            raise OllamaError(f"{node}: pull of {tag} reported success but /api/tags does not list it")
        return {**outs, "digest": digest, "pulled_digest": digest, "pulled": True}

    @staticmethod
    def _pull(c: OllamaClient, node: str, tag: str, insecure: bool = False) -> None:
        progress = Progress(lambda pct: pulumi.log.info(f"{node}: pulling {tag}: {pct}%"))
        for attempt in range(1, PULL_ATTEMPTS + 1):
            try:
                c.pull(tag, progress.feed, insecure)
                return
            except StreamBroken as err:
                if attempt == PULL_ATTEMPTS:
                    raise OllamaError(f"{node}: {err} ({attempt} attempts)") from err
                pulumi.log.warn(f"{node}: {err}; pulling again (attempt {attempt + 1} of {PULL_ATTEMPTS})")
            except OllamaError as err:
                raise OllamaError(f"{node}: {err}") from err

    def _restore(self, c: OllamaClient, props: Dict[str, Any]) -> bool:
        """Fill a new machine's Ollama from the node's cache; False (and a pull) when it cannot."""
        if not props.get("cache"):
            return False
        from providers import model_cache

        node, tag = props["node"], props["model"]
        try:
            if model_cache.restore(c, props["cache"], tag, report=lambda m: pulumi.log.info(f"{node}: {m}"),
                                   config=self._store_config):
                pulumi.log.info(f"{node}: {tag} filled from {props['cache']}")
                return True
            pulumi.log.info(f"{node}: {tag} is not in {props['cache']} yet; pulling it")
        except (model_cache.CacheError, OllamaError, requests.RequestException) as err:
            pulumi.log.warn(f"{node}: {err}; pulling {tag} instead")
        return False

    def _cache(self, props: Dict[str, Any], present: bool) -> None:
        """Keep a pulled tag in the node's cache; a cache that fails is a warning, never a failed model."""
        if not props.get("cache"):
            return
        from providers import model_cache

        node, tag = props["node"], props["model"]
        try:
            if model_cache.fill(props["cache"], tag, bool(props.get("insecure")),
                                report=lambda m: pulumi.log.info(f"{node}: {tag}: {m}"), config=self._store_config):
                pulumi.log.info(f"{node}: {tag} kept in {props['cache']}")
        except model_cache.CacheError as err:
            pulumi.log.warn(f"{node}: {err}" + ("" if present else "; a new machine will pull it again"))

    def _make(self, c: OllamaClient, node: str, tag: str, source: Dict[str, Any]) -> None:
        """The GGUF from the bucket to the node's Ollama (unless it holds that blob), then the model."""
        from providers import own_models

        sha, url = source["sha256"], source["url"]
        try:
            if c.has_blob(sha):
                pulumi.log.info(f"{node}: {tag}: the node holds sha256:{sha[:12]} already")
            else:
                size, chunks = own_models.open_gguf(url, config=self._config_for(source.get("store")),
                                                    access=source.get("store"))
                c.push_blob(sha, own_models.counted(
                    chunks, size, lambda pct: pulumi.log.info(f"{node}: copying {url} for {tag}: {pct}%")))
            body = {"files": {GGUF_FILE: f"sha256:{sha}"}, "parameters": source.get("parameters") or {},
                    **{k: source[k] for k in ("template", "system") if source.get(k) is not None}}
            c.create(tag, body, lambda line: None)
        except own_models.SourceError as err:
            raise OllamaError(f"{node}: {tag}: {err}") from err
        except (OllamaError, requests.RequestException) as err:
            raise OllamaError(f"{node}: {tag} from {url}: {err}") from err
        pulumi.log.info(f"{node}: made {tag} from {url}" + (f" ({source['ref']} = version {source['version']})"
                                                            if source.get("version") else ""))

    def create(self, props: Dict[str, Any]) -> CreateResult:
        outs = self._ensure(props, force=False)
        return CreateResult(f"{props['node']}/{props['model']}", outs)

    def update(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> UpdateResult:
        drift = bool(olds.get("digest")) and olds.get("digest") != olds.get("pulled_digest")
        if drift:
            pulumi.log.info(f"{news['node']}: {news['model']} is {str(olds.get('digest'))[:12]} on the node, "
                            f"not the {str(olds.get('pulled_digest'))[:12]} pulled; pulling it again")
        props = {**news, "digest": olds.get("digest"), "pulled_digest": olds.get("pulled_digest")}
        made = olds.get("source") if (olds.get("source") or {}).get("url") else None
        return UpdateResult(self._ensure(props, force=drift, made=made))

    def read(self, id_: str, props: Dict[str, Any]) -> ReadResult:
        if not props.get("active") or ((props.get("source") or {}).get("waiting") and not props.get("digest")):
            return ReadResult(id_, props)  # powered off, or waiting with nothing made yet
        try:
            with self._client(props) as c:
                digest = c.digest(props["model"])
        except (CloudError, ssh_forward.ForwardError) as err:
            # Not seeing the node is not the node saying the model is gone (it may be stopped, booting or
            # behind a broken tunnel): keep the model as it was. If the machine itself is gone, its
            # instance's refresh says so and the next `up` pulls the model onto the new machine.
            pulumi.log.warn(f"{props.get('node')}: cannot reach Ollama ({err}); keeping {props.get('model')} "
                            "in state as it was")
            return ReadResult(id_, props)
        if digest is None:  # Ollama answered and does not list it
            return ReadResult("", {})
        return ReadResult(id_, {**props, "digest": digest})

    def delete(self, _id: str, props: Dict[str, Any]) -> None:
        node, tag = props["node"], props["model"]
        if not props.get("active"):
            pulumi.log.info(f"{node}: powered off; {tag} is left on its disk")
            return
        try:
            with self._client(props) as c:
                if not c.delete(tag):
                    pulumi.log.info(f"{node}: {tag} was already gone")
        except (CloudError, ssh_forward.ForwardError) as err:
            raise OllamaError(
                f"{node}: could not delete {tag}: {err}. It stays in state; if the node itself is gone, "
                "`pulumi refresh` drops its models") from err


class OllamaModel(DynamicResource, module="ollama", name="Model"):
    """One Ollama model on one node: ``pulumi-python:dynamic/ollama:Model``."""

    digest: pulumi.Output[Optional[str]]
    pulled_digest: pulumi.Output[Optional[str]]

    def __init__(self, name: str, args: OllamaModelArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(OllamaModelProvider(), name,
                         {"digest": None, "pulled_digest": None, "pulled": None, "version": PROVIDER_VERSION,
                          **args.to_props()}, opts)
