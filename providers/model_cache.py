"""Warm starts: a node's pulled models kept in a cache the stack names (``model_cache: s3://<bucket>/<prefix>``
on its Ollama), so a new machine for the node (a failover, a re-rent) fills its Ollama from the estate's
bucket instead of pulling every model from the internet again.

- ``fill``: once a tag is on the node, its manifest and blobs are copied from the registry the node pulled
  them from (Ollama's own, or the one the tag names) into ``<prefix>/blobs/sha256-<hex>`` and
  ``<prefix>/manifests/<registry>/<namespace>/<model>/<tag>``, each blob checked against its digest on the
  way; a blob the cache holds is not copied again. Ollama has no API that hands a blob back, so the copy
  is read from the registry by the operator's machine: once per model version, not once per machine.
- ``restore``: on a machine whose Ollama lacks the tag, the GGUF (and a projector or adapter, if any) is
  streamed from the cache to ``POST /api/blobs/sha256:<digest>`` (Ollama refuses bytes of another digest),
  then ``POST /api/create`` makes the tag with the manifest's template, system prompt, parameters and
  license. A cache that does not hold the tag, or fails, says so and the model is pulled as before.

The made model's manifest is Ollama's own (its config blob differs from the registry's), so its digest is
not the registry's: what the state records as pulled is what the node holds, and refresh compares with that.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import requests

from core.catalog import registry_of

OLLAMA_REGISTRY = "registry.ollama.ai"
CACHE_PATTERN = r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/((?:[A-Za-z0-9_=+-][A-Za-z0-9._=+-]*/)*[A-Za-z0-9_=+-][A-Za-z0-9._=+-]*))?/?$"
"""An S3 bucket and an optional prefix: where a node's models are cached."""
MEDIA = "application/vnd.ollama.image."
FILES = {"model": "model.gguf", "projector": "projector.gguf", "adapter": "adapter.gguf"}
"""Layers made from blobs, by media type, and the file names ``/api/create`` is given them under."""
TEXTS = ("template", "system", "license")
CHUNK = 1 << 20


class CacheError(RuntimeError):
    """The cache could not be read or written: the model is pulled as without it."""


def location(cache: str) -> Tuple[str, str]:
    """(bucket, prefix with a trailing '/' or '') of a cache URL."""
    m = re.fullmatch(CACHE_PATTERN, cache)
    if not m:
        raise CacheError(f"model_cache {cache!r}: not s3://<bucket>[/<prefix>]")
    return m.group(1), f"{m.group(2)}/" if m.group(2) else ""


def reference(tag: str) -> Tuple[str, str, str]:
    """(registry, repository, tag) of an Ollama model name, as Ollama reads it."""
    registry = registry_of(tag) or OLLAMA_REGISTRY
    rest = tag[len(registry) + 1:] if registry_of(tag) else tag
    name, _, ref = rest.partition(":")
    repo = name if "/" in name else f"library/{name}"
    return registry, repo, ref or "latest"


def manifest_key(prefix: str, tag: str) -> str:
    registry, repo, ref = reference(tag)
    return f"{prefix}manifests/{registry}/{repo}/{ref}"


def blob_key(prefix: str, digest: str) -> str:
    return f"{prefix}blobs/{digest.replace(':', '-')}"


def s3() -> Any:
    import boto3

    return boto3.client("s3")


def _exists(client: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


class _Hashing:
    """A file-like reader over a response that hashes what passes."""

    def __init__(self, raw: Any):
        self.raw, self.sha = raw, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size if size and size > 0 else CHUNK)
        self.sha.update(data)
        return data


def fill(cache: str, tag: str, insecure: bool = False, client: Any = None,
         report: Callable[[str], None] = lambda _m: None) -> bool:
    """Copy ``tag``'s manifest and blobs from its registry into the cache; False when it held them already."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = location(cache)
    client = client or s3()
    registry, repo, ref = reference(tag)
    base = f"{'http' if insecure else 'https'}://{registry}/v2/{repo}"
    try:
        key = manifest_key(prefix, tag)
        resp = requests.get(f"{base}/manifests/{ref}", timeout=(5, 60),
                            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        if resp.status_code != 200:
            raise CacheError(f"{registry} answered {resp.status_code} for {repo}:{ref}'s manifest")
        manifest = resp.content
        try:
            held = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError:
            held = None
        if held == manifest:
            return False
        doc = json.loads(manifest)
        for layer in [doc.get("config") or {}] + list(doc.get("layers") or []):
            digest = layer.get("digest") or ""
            if not digest.startswith("sha256:") or _exists(client, bucket, blob_key(prefix, digest)):
                continue
            report(f"caching {digest[7:19]} ({int(layer.get('size') or 0) >> 20} MiB)")
            with requests.get(f"{base}/blobs/{digest}", stream=True, timeout=(5, 300)) as blob:
                if blob.status_code != 200:
                    raise CacheError(f"{registry} answered {blob.status_code} for blob {digest[:19]}")
                reader = _Hashing(blob.raw)
                client.upload_fileobj(reader, bucket, blob_key(prefix, digest))
            if f"sha256:{reader.sha.hexdigest()}" != digest:
                client.delete_object(Bucket=bucket, Key=blob_key(prefix, digest))
                raise CacheError(f"blob {digest[:19]} from {registry} had another digest; not cached")
        client.put_object(Bucket=bucket, Key=key, Body=manifest)
        return True
    except (ClientError, BotoCoreError, requests.RequestException, ValueError) as err:
        raise CacheError(f"caching {tag} in {cache}: {err}") from err


def restore(ollama: Any, cache: str, tag: str, client: Any = None,
            report: Callable[[str], None] = lambda _m: None) -> bool:
    """Make ``tag`` on ``ollama`` (an ``OllamaClient``) from the cache; False when the cache does not hold it."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = location(cache)
    client = client or s3()
    try:
        try:
            doc = json.loads(client.get_object(Bucket=bucket, Key=manifest_key(prefix, tag))["Body"].read())
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return False
            raise
        body: Dict[str, Any] = {"files": {}}
        for layer in doc.get("layers") or []:
            kind, digest = str(layer.get("mediaType", "")).removeprefix(MEDIA), layer["digest"]
            if kind in FILES:
                if not ollama.has_blob(digest.removeprefix("sha256:")):
                    size, chunks = _stream(client, bucket, blob_key(prefix, digest))
                    try:
                        ollama.push_blob(digest.removeprefix("sha256:"), _progress(chunks, size, report, tag))
                    except RuntimeError as err:  # Ollama refused the bytes: the next pull caches them again
                        for key in (blob_key(prefix, digest), manifest_key(prefix, tag)):
                            client.delete_object(Bucket=bucket, Key=key)
                        raise CacheError(f"restoring {tag} from {cache}: {err}") from err
                body["files"][FILES[kind]] = digest
            elif kind in TEXTS or kind == "params":
                data = client.get_object(Bucket=bucket, Key=blob_key(prefix, digest))["Body"].read()
                if f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
                    raise CacheError(f"{kind} blob {digest[:19]} in the cache has another digest")
                text = data.decode()
                if kind == "params":
                    body["parameters"] = json.loads(text)
                elif kind == "license":
                    body.setdefault("license", []).append(text)
                else:
                    body[kind] = text
            else:
                raise CacheError(f"{tag} has a {kind!r} layer, which is pulled rather than made")
        if "model.gguf" not in body["files"]:
            raise CacheError(f"{tag}'s cached manifest has no model layer")
        ollama.create(tag, body, lambda _line: None)
        return True
    except (ClientError, BotoCoreError, ValueError, KeyError) as err:
        raise CacheError(f"restoring {tag} from {cache}: {err}") from err


def _stream(client: Any, bucket: str, key: str) -> Tuple[int, Iterator[bytes]]:
    obj = client.get_object(Bucket=bucket, Key=key)
    return int(obj["ContentLength"]), obj["Body"].iter_chunks(CHUNK)


def _progress(chunks: Iterator[bytes], total: int, report: Callable[[str], None], tag: str) -> Iterator[bytes]:
    from providers.own_models import counted

    return counted(chunks, total, lambda pct: report(f"filling {tag} from the cache: {pct}%"))
