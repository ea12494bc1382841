"""The estate's bucket URLs: which stores a stack may name and each store's bucket naming rules, in one place.

    s3://<bucket>/<key>    AWS S3 (or another S3 API)
    gs://<bucket>/<key>    Google Cloud Storage

A warm-start cache (``model_cache``) is a bucket and an optional prefix; a model of the operator's own
(``gguf_models.<tag>.source``) is a ``.gguf`` object. Keys are path segments of letters, digits and
``._=+-`` that start with no dot (so no ``..``), whatever the store allows beyond that: a key reaches object
names and progress lines, never a shell. The operator's machine reads and writes them through the store's
own client library (``providers/stores/<scheme>.py``).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Callable, Dict, Optional

_SEGMENT = r"[A-Za-z0-9_=+-][A-Za-z0-9._=+-]*"
KEY_PATTERN = rf"(?:{_SEGMENT}/)*{_SEGMENT}"
"""An object key (or prefix) under a bucket: no empty, dot-led or ``..`` segment."""


def _ip(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
        return True
    except ValueError:
        return False


def _s3_bucket(name: str) -> str:
    """Why ``name`` is not an S3 bucket name (AWS's general purpose bucket naming rules), or ''."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", name):
        return "3 to 63 of a-z, 0-9, '.' and '-', starting and ending with a letter or digit"
    if ".." in name or _ip(name):
        return "no two dots in a row and not an IP address"
    if name.startswith(("xn--", "sthree-", "amzn-s3-demo-")) or \
            name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")):
        return "a prefix or suffix S3 reserves (xn--, sthree-, amzn-s3-demo-, -s3alias, --ol-s3, .mrap, --x-s3)"
    return ""


def _gcs_bucket(name: str) -> str:
    """Why ``name`` is not a Cloud Storage bucket name (Google's bucket naming requirements), or ''."""
    label = r"[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?"
    if not (3 <= len(name) <= 222 and re.fullmatch(rf"{label}(?:\.{label})*", name)) or \
            ("." not in name and len(name) > 63):
        return ("3 to 63 of a-z, 0-9, '-' and '_' (up to 222 with dots, 63 between them), starting and ending "
                "with a letter or digit")
    if _ip(name):
        return "not an IP address"
    if name.startswith("goog") or re.search(r"g[o0][o0]g[l1]e", name):
        return "no 'goog' prefix and no 'google' (or a look-alike) in it"
    return ""


@dataclasses.dataclass(frozen=True)
class Scheme:
    store: str
    """What the store is called in messages."""
    bucket_problem: Callable[[str], str]


SCHEMES: Dict[str, Scheme] = {
    "s3": Scheme("S3", _s3_bucket),
    "gs": Scheme("Cloud Storage", _gcs_bucket),
}
"""URL scheme -> its store; ``providers/stores/<scheme>.py`` reads and writes it."""


@dataclasses.dataclass(frozen=True)
class BucketUrl:
    scheme: str
    bucket: str
    key: str
    """The object's key, or the prefix ('' or ending in '/') of a cache."""

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}"


def _schemes() -> str:
    return " or ".join(f"{s}://" for s in SCHEMES)


def parse(url: str, what: str = "object") -> BucketUrl:
    """The store, bucket and key of ``url``: an ``object`` (``<scheme>://<bucket>/<key>``), a ``gguf`` (an
    object whose key ends in ``.gguf``) or a ``prefix`` (``<scheme>://<bucket>[/<prefix>][/]``, the key '' or
    ending in '/'). ValueError saying what is wrong with the value otherwise."""
    m = re.fullmatch(r"([a-z][a-z0-9]*)://([^/]*)(?:/(.*))?", url)
    if not m or m.group(1) not in SCHEMES:
        raise ValueError(f"{url!r} is not a URL of the estate's bucket stores ({_schemes()})")
    scheme, bucket, key = m.group(1), m.group(2), m.group(3) or ""
    why = SCHEMES[scheme].bucket_problem(bucket)
    if why:
        raise ValueError(f"{bucket!r} in {url!r} is not a {SCHEMES[scheme].store} bucket name: {why}")
    if what == "prefix":
        key = key[:-1] if key.endswith("/") else key
        if key and not re.fullmatch(KEY_PATTERN, key):
            raise ValueError(f"{url!r}: the prefix {key!r} is not path segments of letters, digits and ._=+- "
                             "(none empty or starting with a dot)")
        return BucketUrl(scheme, bucket, f"{key}/" if key else "")
    if not re.fullmatch(KEY_PATTERN, key):
        raise ValueError(f"{url!r}: the key {key!r} is not path segments of letters, digits and ._=+- "
                         "(none empty or starting with a dot)")
    if what == "gguf" and not key.endswith(".gguf"):
        raise ValueError(f"{url!r} is not a .gguf file")
    return BucketUrl(scheme, bucket, key)


def location(url: str, what: str = "object") -> Optional[BucketUrl]:
    """``parse``, or None where ``url`` is not one."""
    try:
        return parse(url, what)
    except ValueError:
        return None


def cache_url(value: Optional[str]) -> Optional[str]:
    """A field validator: ``value`` when it is a cache prefix in one of the stores."""
    if value is not None:
        parse(value, "prefix")
    return value
