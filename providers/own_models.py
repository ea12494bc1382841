"""Where the operator's own models come from (``core/own_models.py``): an MLflow alias resolved to its
version, and the GGUF's bytes read from the estate's bucket.

- ``resolve`` runs when the program does (so at preview): a ``models:/<name>@<alias>`` source is asked of the
  tracking server's REST API, ``GET /api/2.0/mlflow/registered-models/alias?name=&alias=`` (MLflow's
  ``GetModelVersionByAlias``), whose ``model_version`` gives the ``version``, its ``source`` (the GGUF, or
  the folder holding ``model.gguf``) and its ``sha256`` tag. The model resource's inputs then name the
  version, so moving the alias is a change of that one model in the preview.
- ``open_gguf`` streams a ``gs://`` or ``s3://`` object through its store's own client
  (``providers/stores``: google-cloud-storage with the stack's GCP credentials, boto3 with the operator's
  AWS ones). The bytes go from the bucket through the operator's machine to the node's Ollama
  (``POST /api/blobs/sha256:<digest>``), which checks the digest.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

import requests

from core.errors import ConfigError
from core.own_models import SHA256_TAG, GgufModel, gguf_location, version_file
from providers import stores

MLFLOW_TIMEOUT = (5.0, 30.0)


class SourceError(RuntimeError):
    """The bucket would not give the GGUF."""


@dataclasses.dataclass(frozen=True)
class Resolved:
    url: str
    sha256: str
    version: Optional[str] = None
    """The registered version an alias names now."""


def resolve_alias(tracking_uri: str, name: str, alias: str) -> Tuple[str, str, Optional[str]]:
    """(version, GGUF url, sha256 or None) of the version ``name@alias`` names; raises ValueError saying why."""
    url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/registered-models/alias"
    try:
        resp = requests.get(url, params={"name": name, "alias": alias}, timeout=MLFLOW_TIMEOUT)
    except requests.RequestException as err:
        raise ValueError(f"the MLflow tracking server at {tracking_uri} did not answer: {err}") from err
    if resp.status_code != 200:
        try:
            said = resp.json().get("message") or resp.text
        except ValueError:
            said = resp.text
        raise ValueError(f"MLflow at {tracking_uri} has no version for {name}@{alias}: {resp.status_code} {said[:300]}")
    version = resp.json().get("model_version") or {}
    tags = {t.get("key"): t.get("value") for t in version.get("tags") or []}
    source = version.get("storage_location") or version.get("source") or ""
    return str(version.get("version")), version_file(source), tags.get(SHA256_TAG)


def resolve(model: GgufModel, key: str) -> Resolved:
    """Where ``model``'s GGUF is and its digest; a ConfigError naming ``key`` when that cannot be known."""
    named = model.alias()
    if named is None:
        return Resolved(url=model.source, sha256=model.sha256 or "")
    try:
        version, url, sha256 = resolve_alias(model.tracking_uri or "", *named)
    except ValueError as err:
        raise ConfigError([(f"{key}.source", f"{model.source}: {err}")]) from None
    if gguf_location(url) is None:
        raise ConfigError([(f"{key}.source", f"{model.source} is version {version}, whose source {url!r} is not a "
                                              "GGUF in a gs:// or s3:// bucket")])
    if not sha256:
        raise ConfigError([(f"{key}.source", f"{model.source} is version {version}, which has no {SHA256_TAG!r} tag: "
                                              f"tag it with its GGUF's sha256 (mlflow's set_model_version_tag)")])
    return Resolved(url=url, sha256=sha256, version=version)


def source_props(model: GgufModel, key: str) -> Dict[str, Any]:
    """The model resource's ``source`` input: where the GGUF is, its digest and the Modelfile's parts."""
    r = resolve(model, key)
    props: Dict[str, Any] = {"url": r.url, "sha256": r.sha256, "parameters": dict(model.parameters)}
    for k, v in (("ref", model.source if r.version else None), ("version", r.version),
                 ("template", model.template), ("system", model.system)):
        if v is not None:
            props[k] = v
    return props


def sources(spec: Any) -> Dict[Tuple[str, str], Dict[str, Any]]:
    """(node, tag) -> ``source_props`` of every model of the operator's own in the stack (an ``EstateSpec``);
    every problem at once, as one ConfigError."""
    from core.fields import NAMESPACE

    out: Dict[Tuple[str, str], Dict[str, Any]] = {}
    problems = []
    for node_name, node in spec.nodes.items():
        for wname, w in node.workloads.items():
            for tag, model in w.own_models().items():
                try:
                    out[(node_name, tag)] = source_props(model, f"{NAMESPACE}:nodes.{node_name}.workloads.{wname}."
                                                                f"gguf_models.{tag}")
                except ConfigError as err:
                    problems += err.problems
    if problems:
        raise ConfigError(problems)
    return out


def open_gguf(url: str, store: Optional[stores.Store] = None,
              config: Optional[Mapping[str, str]] = None) -> Tuple[int, Iterator[bytes]]:
    """(size, chunks) of the GGUF at ``url``, read through its store (``config``: the stack's, for credentials)."""
    where = gguf_location(url)
    if where is None:
        raise SourceError(f"{url}: not a gs://<bucket>/<path>.gguf or s3://<bucket>/<path>.gguf")
    try:
        return (store or stores.for_url(url, config)).stream(where.bucket, where.key)
    except stores.StoreError as err:
        raise SourceError(f"{url}: {err}") from err


def counted(chunks: Iterator[bytes], total: int, report: Callable[[int], None], step: int = 10) -> Iterator[bytes]:
    """``chunks`` passed on, reporting the percent sent once per ``step``."""
    sent, last = 0, -1
    for chunk in chunks:
        sent += len(chunk)
        pct = min(100, sent * 100 // total) if total else 100
        if last < 0 or pct // step > last // step:
            last = pct
            report(pct)
        yield chunk
