"""The default image of each service the estate deploys, read from ``assets/images/compose.yaml``, and
what an image reference says (its tag, its digest, its version).

The file is a compose document with one service per default image, so a dependency bot that knows
compose files keeps the tags (and digests) current; nothing runs it. Every default image is read here.
An image is ``name:tag`` or ``name:tag@sha256:<64 hex>``; the digest is what the registry serves for that
tag, filled by ``scripts/pin-images.sh`` where registries are reachable. Pinned by digest, an image is the
same bytes on every node, whatever its publisher later does with the tag.

LiteLLM is pinned once, by the ``litellm`` image's tag: ``requirements-gateway.txt`` (the proxy the gateway
tests run) must name the same release, which ``tests/unit/core/test_images.py`` checks.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import Dict, Optional, Tuple

import yaml

from core.catalog import ASSETS

IMAGES_FILE = ASSETS / "images" / "compose.yaml"
GATEWAY_REQUIREMENTS = ASSETS.parent / "requirements-gateway.txt"

DIGEST = r"sha256:[0-9a-f]{64}"
# registry/repository[:tag][@digest], the grammar of the stack's image fields (core.spec ImageRef).
REFERENCE = re.compile(
    r"^(?P<name>[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*)"
    rf"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}))?(@(?P<digest>{DIGEST}))?\Z")
VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")

# LiteLLM's proxy below 1.84.0 lets a crafted Host header reach protected routes (CVE-2026-49468,
# GHSA-4xpc-pv4p-pm3w) and has an MCP authentication bypass (CVE-2026-59822); PyPI's 1.82.7 and 1.82.8
# were a credential stealer (BerriAI/litellm#24512, #24518).
LITELLM_FLOOR = "1.84.0"
LITELLM_COMPROMISED = ("1.82.7", "1.82.8")


@dataclasses.dataclass(frozen=True)
class Image:
    name: str
    """Registry and repository (``ghcr.io/berriai/litellm``)."""
    tag: str
    digest: Optional[str]
    """``sha256:<64 hex>``, or None when the image is pinned by its tag only."""

    @property
    def version(self) -> str:
        """The tag without a leading ``v`` (``v0.6.34`` -> ``0.6.34``)."""
        return self.tag.lstrip("v")

    @property
    def release(self) -> Optional[Tuple[int, int, int]]:
        """The first ``x.y.z`` in the tag (``main-v1.84.2-stable`` -> (1, 84, 2)), if any."""
        m = VERSION.search(self.tag)
        return tuple(int(p) for p in m.groups()) if m else None  # type: ignore[return-value]


def parse_image(ref: str) -> Image:
    """``ref`` split into name, tag and digest; ValueError naming it when it is no image reference."""
    m = REFERENCE.match(ref or "")
    if not m:
        raise ValueError(f"not an image reference (name:tag or name:tag@sha256:<64 hex>): {ref!r}")
    return Image(m["name"], m["tag"] or "latest", m["digest"])


def image_version(ref: str) -> str:
    """The version an image's tag names, digest or not (``ollama/ollama:0.12.6@sha256:...`` -> 0.12.6)."""
    name = (ref or "").split("@", 1)[0]
    return name.rsplit(":", 1)[-1].lstrip("v") if ":" in name.rsplit("/", 1)[-1] else ""


def release_key(version: str) -> Optional[Tuple[int, int, int]]:
    m = VERSION.search(version or "")
    return tuple(int(p) for p in m.groups()) if m else None  # type: ignore[return-value]


def litellm_verdict(version: str) -> Optional[str]:
    """Why a LiteLLM release must not run (below the floor, or a known-compromised one), else None."""
    key = release_key(version)
    if key is None:
        return f"LiteLLM {version!r} names no release; pin one at or above {LITELLM_FLOOR}"
    found = ".".join(map(str, key))
    if found in LITELLM_COMPROMISED:
        return (f"LiteLLM {found} is a known-compromised release (a credential stealer on PyPI, "
                f"BerriAI/litellm#24512); use {LITELLM_FLOOR} or later")
    if key < release_key(LITELLM_FLOOR):  # type: ignore[operator]
        return (f"LiteLLM {found} is below {LITELLM_FLOOR} (CVE-2026-49468: a crafted Host header reaches "
                f"/key/generate; CVE-2026-59822: MCP auth bypass)")
    return None


@functools.lru_cache(maxsize=None)
def default_images() -> Dict[str, str]:
    """Service name -> pinned image reference; each must be ``name:tag`` or ``name:tag@sha256:...``."""
    doc = yaml.safe_load(IMAGES_FILE.read_text())
    out = {}
    for name, svc in doc["services"].items():
        image = parse_image(svc["image"])  # raises, naming the image
        if image.tag == "latest" and ":latest" not in svc["image"]:
            raise ValueError(f"{IMAGES_FILE.name}: {name}'s image {svc['image']!r} names no tag")
        out[name] = svc["image"]
    return out


def default_image(name: str) -> str:
    """The pinned default image of ``name`` (a workload kind, ``cloudflared``, ``caddy``)."""
    try:
        return default_images()[name]
    except KeyError:
        raise KeyError(f"{IMAGES_FILE.name} pins no image for {name!r}") from None


def litellm_version() -> str:
    """The LiteLLM release the estate deploys and the gateway tests run: the ``litellm`` image's."""
    release = parse_image(default_image("litellm")).release
    if release is None:
        raise ValueError(f"{IMAGES_FILE.name}: the litellm image's tag names no release")
    return ".".join(map(str, release))


def required_version(package: str, requirements: str) -> Optional[str]:
    """The version ``requirements`` (a requirements file's text) pins ``package`` to with ``==``."""
    for line in requirements.splitlines():
        m = re.match(rf"^\s*{re.escape(package)}(\[[^\]]*\])?\s*==\s*([^\s;#]+)", line, re.I)
        if m:
            return m.group(2)
    return None
