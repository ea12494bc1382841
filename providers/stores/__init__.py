"""The estate's bucket stores as the operator's machine reads and writes them: one module per URL scheme
(``s3.py``, ``gs.py``), each through its vendor's own client library, picked by the URL's scheme.

    store = stores.for_url("gs://acme-models/cache/qwen", config)   # config: the stack's config, for credentials
    store = stores.for_url("s3://r2-models/x.gguf", config, access)  # an existing bucket at an S3-compatible endpoint
    store.read(bucket, key)       # the object's bytes, or None where there is none
    store.exists(bucket, key)
    store.stream(bucket, key)     # (size, chunks); Missing where there is none
    store.write(bucket, key, data)
    store.upload(bucket, key, reader)   # a file-like object read to its end (a blob of unknown size)
    store.delete(bucket, key)

A store raises ``StoreError`` (``Missing`` for an absent object) with its vendor's own answer; the callers
(``providers/model_cache.py``, ``providers/own_models.py``) say what they were doing. Which schemes exist and
their bucket naming rules live in ``core/buckets.py``; a third store is a row there and a module here named
after its scheme.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, Iterator, Mapping, Optional, Protocol, Tuple

from core import buckets
from core.fields import NAMESPACE

CHUNK = 1 << 20


class StoreError(RuntimeError):
    """The store would not do it: its own answer."""


class Missing(StoreError):
    """No such object."""


class Store(Protocol):
    def exists(self, bucket: str, key: str) -> bool: ...

    def read(self, bucket: str, key: str) -> Optional[bytes]: ...

    def stream(self, bucket: str, key: str) -> Tuple[int, Iterator[bytes]]: ...

    def write(self, bucket: str, key: str, data: bytes) -> None: ...

    def upload(self, bucket: str, key: str, reader: Any) -> None: ...

    def delete(self, bucket: str, key: str) -> None: ...


def module(scheme: str) -> Any:
    """``providers.stores.<scheme>``, for a scheme ``core/buckets.py`` knows."""
    if scheme not in buckets.SCHEMES:
        raise StoreError(f"{scheme}:// is not a store of the estate's ({', '.join(buckets.SCHEMES)})")
    return importlib.import_module(f"{__name__}.{scheme}")


SECRET_FIELDS = ("access_key_secret", "secret_key_secret")
"""The fields of an ``access`` naming the config secrets (``gpu-estate:<NAME>``) its keys are in."""


def access_of(bucket: Any) -> Optional[Dict[str, str]]:
    """How the operator's machine reaches a bucket of the stack (a ``BucketSpec``) other than through its store's
    default: an existing bucket at an S3-compatible ``endpoint`` (R2, MinIO) gives its endpoint, region and
    the NAMES of the config secrets holding its access key, never their values; None for any other bucket."""
    if getattr(bucket, "endpoint", None) is None:
        return None
    return {"endpoint": str(bucket.endpoint), "region": str(bucket.location),
            **{k: str(getattr(bucket, k)) for k in SECRET_FIELDS}}


def secret_key(name: str) -> str:
    """The stack config key of the config secret ``name``."""
    return f"{NAMESPACE}:{name}"


def config_keys(access: Optional[Mapping[str, str]] = None) -> Tuple[str, ...]:
    """The stack config keys every store reads its credentials from (``gcp:credentials``, ...), and those of
    ``access``'s access key."""
    keys = tuple(k for scheme in buckets.SCHEMES for k in getattr(module(scheme), "CONFIG_KEYS", ()))
    return keys + tuple(secret_key(access[k]) for k in SECRET_FIELDS if access and access.get(k))


def for_url(url: str, config: Optional[Mapping[str, str]] = None,
            access: Optional[Mapping[str, str]] = None) -> Store:
    """The store of ``url``'s scheme, with the stack's ``config`` (its credentials keys) where it has any, at
    ``access``'s endpoint with its access key where the bucket has one (``access_of``)."""
    return module(url.partition("://")[0]).open_store(dict(config or {}), dict(access) if access else None)
