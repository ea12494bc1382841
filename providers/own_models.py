"""Where the operator's own models come from (``core/own_models.py``): an MLflow alias resolved to its
version, and the GGUF's bytes read from the estate's bucket.

- ``resolve`` runs when the program does (so at preview): a ``models:/<name>@<alias>`` source is asked of the
  tracking server's REST API, ``GET /api/2.0/mlflow/registered-models/alias?name=&alias=`` (MLflow's
  ``GetModelVersionByAlias``), whose ``model_version`` gives the ``version``, its ``source`` (the GGUF, or
  the folder holding ``model.gguf``) and its ``sha256`` tag. The model resource's inputs then name the
  version, so moving the alias is a change of that one model in the preview.
- a ``job:<job>[/<file>]`` source is resolved at the same time against the job's current run: its status
  object in the job's bucket (``estate-jobs/<label>/status.json``, written by the runner) must say
  ``succeeded``; the GGUF is then ``<outputs>/<file>`` and its digest the ``<file>.sha256`` the job wrote
  beside it. Before that the model's ``source`` says what it waits for (``waiting``), and the model library's
  provider makes nothing (a model made from an earlier run stays as it is).
- ``open_gguf`` streams a ``gs://`` or ``s3://`` object through its store's own client
  (``providers/stores``: google-cloud-storage with the stack's GCP credentials, boto3 with the operator's
  AWS ones). A GGUF (or a job's status) in an existing bucket of the stack at an S3-compatible endpoint (R2,
  MinIO) is read at that endpoint with the access key in the config secrets the bucket names: the model's
  ``source`` carries the endpoint, region and the secrets' names (``store``), never the keys, which the
  program reads from its stack config and the provider from the stack config the engine hands it. The bytes go from the bucket through the operator's machine to the node's Ollama
  (``POST /api/blobs/sha256:<digest>``), which checks the digest.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

import requests

from core import jobs as core_jobs
from core.errors import ConfigError
from core.jobs import JobState
from core.own_models import DIGEST_SUFFIX, SHA256_TAG, GgufModel, gguf_location, job_file, read_digest, version_file
from providers import stores

MLFLOW_TIMEOUT = (5.0, 30.0)


class SourceError(RuntimeError):
    """The bucket would not give the GGUF."""


@dataclasses.dataclass(frozen=True)
class Resolved:
    url: str
    sha256: str
    version: Optional[str] = None
    """The registered version an alias names now, or the run of the job that made it."""
    waiting: Optional[str] = None
    """Why the model cannot be made yet (a job source whose run has not succeeded); ``url`` and ``sha256`` are
    then empty."""


@dataclasses.dataclass(frozen=True)
class JobOutputs:
    """Where a job of the stack leaves what it made: its bucket (the name at the store), outputs prefix, run and
    the run's status object."""

    job: str
    bucket: str
    outputs: str
    run: str
    status_key: str
    access: Optional[Mapping[str, str]] = None
    """How the bucket is reached when it is an existing one at an S3-compatible endpoint (``stores.access_of``)."""

    @classmethod
    def of(cls, spec: Any, project: str, stack: str, name: str) -> "JobOutputs":
        job = spec.jobs[name]
        bucket = spec.storage[job.bucket].store_name(project, stack, job.bucket)
        label = core_jobs.label(project, stack, name, job.run)
        return cls(name, bucket, job.outputs, job.run, f"{core_jobs.status_prefix(label)}/status.json",
                   stores.access_of(spec.storage[job.bucket]))


def accesses(spec: Any) -> Dict[str, Dict[str, str]]:
    """Bucket name at its store -> how it is reached, for the stack's buckets at an endpoint of their own."""
    return {name: access for name, bucket in spec.storage.items() if (access := stores.access_of(bucket))}


def resolve_job(model: GgufModel, key: str, where: JobOutputs, store: Optional[stores.Store] = None,
                config: Optional[Mapping[str, str]] = None) -> Resolved:
    """What a ``job:`` source names now: the file and its digest once the job's run has succeeded, else why it
    waits. A run that succeeded without the digest beside its file is a ConfigError naming ``key``. A job's
    bucket is an S3 one (its runner writes through the S3 API), read at its endpoint with the access key
    ``config`` (the stack's) holds where it has one."""
    _job, file = model.job() or ("", "")
    url = f"s3://{where.bucket}/{job_file(where.outputs, file)}"
    what = f"job {where.job} run {where.run}"
    try:
        store = store or stores.for_url(url, config, where.access)
        raw = store.read(where.bucket, where.status_key)
        status = json.loads(raw) if raw else None
    except (stores.StoreError, ValueError) as err:
        return Resolved("", "", where.run, f"{what}: its status cannot be read ({err})")
    state = (status or {}).get("state") if isinstance(status, dict) and status.get("run") == where.run else None
    if state != JobState.SUCCEEDED.value:
        said = {None: "has not started", JobState.STARTING.value: "is starting", JobState.RUNNING.value: "is running"}
        why = said.get(state) or f"ended {state}" + (f" (exit {status.get('exit_code')})" if status.get("exit_code")
                                                     is not None else "") + "; change its run id to run it again"
        return Resolved("", "", where.run, f"{what} {why}")
    try:
        text = store.read(where.bucket, job_file(where.outputs, file) + DIGEST_SUFFIX)
    except stores.StoreError as err:
        return Resolved("", "", where.run, f"{what} succeeded; its digest cannot be read ({err})")
    digest = read_digest(text.decode("utf-8", "replace")) if text else None
    if not digest:
        raise ConfigError([(f"{key}.source", f"{model.source}: {what} succeeded but left no sha256 in "
                                              f"{url}{DIGEST_SUFFIX}: have the job write sha256sum's line for "
                                              f"{file} beside it (got {text[:80]!r})")])
    return Resolved(url, digest, where.run)


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


def resolve(model: GgufModel, key: str, jobs: Optional[Dict[str, JobOutputs]] = None,
            config: Optional[Mapping[str, str]] = None) -> Resolved:
    """Where ``model``'s GGUF is and its digest; a ConfigError naming ``key`` when that cannot be known. ``jobs``
    gives the stack's jobs' outputs, for a ``job:`` source; ``config`` the stack's config secrets their buckets'
    access keys are in."""
    job = model.job()
    if job is not None:
        if job[0] not in (jobs or {}):
            known = ", ".join(sorted(jobs or {})) or "none"
            raise ConfigError([(f"{key}.source", f"no job {job[0]!r} in the stack's jobs (known: {known}) "
                                                  f"(got {model.source!r})")])
        return resolve_job(model, key, (jobs or {})[job[0]], config=config)
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


def source_props(model: GgufModel, key: str, jobs: Optional[Dict[str, JobOutputs]] = None,
                 config: Optional[Mapping[str, str]] = None,
                 buckets: Optional[Mapping[str, Mapping[str, str]]] = None) -> Dict[str, Any]:
    """The model resource's ``source`` input: where the GGUF is, its digest and the Modelfile's parts, or (a job
    source whose run has not succeeded) ``waiting``: why it cannot be made yet. ``buckets`` (``accesses``): a
    GGUF in one of them is read at its endpoint (``store``: the endpoint, region and the config secrets' names)."""
    r = resolve(model, key, jobs, config)
    props: Dict[str, Any] = ({"waiting": r.waiting} if r.waiting else {"url": r.url, "sha256": r.sha256})
    where = gguf_location(r.url) if r.url else None
    if where is not None and where.scheme == "s3" and where.bucket in (buckets or {}):
        props["store"] = dict((buckets or {})[where.bucket])
    props["parameters"] = dict(model.parameters)
    for k, v in (("ref", model.source if r.version else None), ("version", r.version),
                 ("template", model.template), ("system", model.system)):
        if v is not None:
            props[k] = v
    return props


def sources(spec: Any, project: str = "", stack: str = "",
            config: Optional[Mapping[str, str]] = None) -> Dict[Tuple[str, str], Dict[str, Any]]:
    """(node, tag) -> ``source_props`` of every model of the operator's own in the stack (an ``EstateSpec`` of
    ``project``/``stack``; ``config``: its config secrets, ``gpu-estate:<NAME>`` -> value, for the access keys of
    its buckets at an endpoint); every problem at once, as one ConfigError."""
    from core.fields import NAMESPACE

    jobs = {name: JobOutputs.of(spec, project, stack, name) for name, job in spec.jobs.items()
            if job.bucket in spec.storage}
    out: Dict[Tuple[str, str], Dict[str, Any]] = {}
    problems = []
    for node_name, node in spec.nodes.items():
        for wname, w in node.workloads.items():
            for tag, model in w.own_models().items():
                try:
                    out[(node_name, tag)] = source_props(model, f"{NAMESPACE}:nodes.{node_name}.workloads.{wname}."
                                                                f"gguf_models.{tag}", jobs, config,
                                                   accesses(spec))
                except ConfigError as err:
                    problems += err.problems
    if problems:
        raise ConfigError(problems)
    return out


def open_gguf(url: str, store: Optional[stores.Store] = None, config: Optional[Mapping[str, str]] = None,
              access: Optional[Mapping[str, str]] = None) -> Tuple[int, Iterator[bytes]]:
    """(size, chunks) of the GGUF at ``url``, read through its store (``config``: the stack's, for credentials;
    ``access``: the source's ``store``, a bucket at an endpoint of its own)."""
    where = gguf_location(url)
    if where is None:
        raise SourceError(f"{url}: not a gs://<bucket>/<path>.gguf or s3://<bucket>/<path>.gguf")
    try:
        return (store or stores.for_url(url, config, access)).stream(where.bucket, where.key)
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
