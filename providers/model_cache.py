"""Warm starts: a node's pulled models kept in a cache the stack names (``model_cache: gs://<bucket>/<prefix>``
or ``s3://<bucket>/<prefix>`` on its Ollama), so a new machine for the node (a failover, a re-rent) fills its
Ollama from the estate's bucket instead of pulling every model from the internet again.

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
The bucket is read and written through its store's own client (``providers/stores``), picked by the scheme.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

import requests

from core import buckets
from core.catalog import registry_of
from providers import stores

OLLAMA_REGISTRY = "registry.ollama.ai"
MEDIA = "application/vnd.ollama.image."
FILES = {"model": "model.gguf", "projector": "projector.gguf", "adapter": "adapter.gguf"}
"""Layers made from blobs, by media type, and the file names ``/api/create`` is given them under."""
TEXTS = ("template", "system", "license")
CHUNK = stores.CHUNK


class CacheError(RuntimeError):
    """The cache could not be read or written: the model is pulled as without it."""


def location(cache: str) -> Tuple[str, str]:
    """(bucket, prefix with a trailing '/' or '') of a cache URL."""
    try:
        where = buckets.parse(cache, "prefix")
    except ValueError as err:
        raise CacheError(f"model_cache: {err}") from None
    return where.bucket, where.key


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


def _store(cache: str, store: Optional[stores.Store], config: Optional[Mapping[str, str]]) -> stores.Store:
    try:
        return store or stores.for_url(cache, config)
    except stores.StoreError as err:
        raise CacheError(f"{cache}: {err}") from err


class _Hashing:
    """A file-like reader over a response that hashes what passes."""

    def __init__(self, raw: Any):
        self.raw, self.sha = raw, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size if size and size > 0 else CHUNK)
        self.sha.update(data)
        return data


def fill(cache: str, tag: str, insecure: bool = False, store: Optional[stores.Store] = None,
         report: Callable[[str], None] = lambda _m: None, config: Optional[Mapping[str, str]] = None) -> bool:
    """Copy ``tag``'s manifest and blobs from its registry into the cache; False when it held them already.
    ``config`` is the stack's, for the store's credentials (``providers/stores``)."""
    bucket, prefix = location(cache)
    store = _store(cache, store, config)
    registry, repo, ref = reference(tag)
    base = f"{'http' if insecure else 'https'}://{registry}/v2/{repo}"
    try:
        key = manifest_key(prefix, tag)
        resp = requests.get(f"{base}/manifests/{ref}", timeout=(5, 60),
                            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        if resp.status_code != 200:
            raise CacheError(f"{registry} answered {resp.status_code} for {repo}:{ref}'s manifest")
        manifest = resp.content
        if store.read(bucket, key) == manifest:
            return False
        doc = json.loads(manifest)
        for layer in [doc.get("config") or {}] + list(doc.get("layers") or []):
            digest = layer.get("digest") or ""
            if not digest.startswith("sha256:") or store.exists(bucket, blob_key(prefix, digest)):
                continue
            report(f"caching {digest[7:19]} ({int(layer.get('size') or 0) >> 20} MiB)")
            with requests.get(f"{base}/blobs/{digest}", stream=True, timeout=(5, 300)) as blob:
                if blob.status_code != 200:
                    raise CacheError(f"{registry} answered {blob.status_code} for blob {digest[:19]}")
                reader = _Hashing(blob.raw)
                store.upload(bucket, blob_key(prefix, digest), reader)
            if f"sha256:{reader.sha.hexdigest()}" != digest:
                store.delete(bucket, blob_key(prefix, digest))
                raise CacheError(f"blob {digest[:19]} from {registry} had another digest; not cached")
        store.write(bucket, key, manifest)
        return True
    except (stores.StoreError, requests.RequestException, ValueError) as err:
        raise CacheError(f"caching {tag} in {cache}: {err}") from err


def restore(ollama: Any, cache: str, tag: str, store: Optional[stores.Store] = None,
            report: Callable[[str], None] = lambda _m: None, config: Optional[Mapping[str, str]] = None) -> bool:
    """Make ``tag`` on ``ollama`` (an ``OllamaClient``) from the cache; False when the cache does not hold it."""
    bucket, prefix = location(cache)
    store = _store(cache, store, config)
    try:
        held = store.read(bucket, manifest_key(prefix, tag))
        if held is None:
            return False
        doc = json.loads(held)
        body: Dict[str, Any] = {"files": {}}
        for layer in doc.get("layers") or []:
            kind, digest = str(layer.get("mediaType", "")).removeprefix(MEDIA), layer["digest"]
            if kind in FILES:
                if not ollama.has_blob(digest.removeprefix("sha256:")):
                    size, chunks = store.stream(bucket, blob_key(prefix, digest))
                    try:
                        ollama.push_blob(digest.removeprefix("sha256:"), _progress(chunks, size, report, tag))
                    except stores.StoreError:
                        raise
                    except RuntimeError as err:  # Ollama refused the bytes: the next pull caches them again
                        for key in (blob_key(prefix, digest), manifest_key(prefix, tag)):
                            store.delete(bucket, key)
                        raise CacheError(f"restoring {tag} from {cache}: {err}") from err
                body["files"][FILES[kind]] = digest
            elif kind in TEXTS or kind == "params":
                data = store.read(bucket, blob_key(prefix, digest))
                if data is None or f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
                    raise CacheError(f"{kind} blob {digest[:19]} in the cache is missing or has another digest")
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
    except (stores.StoreError, ValueError, KeyError) as err:
        raise CacheError(f"restoring {tag} from {cache}: {err}") from err


def _progress(chunks: Iterator[bytes], total: int, report: Callable[[str], None], tag: str) -> Iterator[bytes]:
    from providers.own_models import counted

    return counted(chunks, total, lambda pct: report(f"filling {tag} from the cache: {pct}%"))
