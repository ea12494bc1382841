"""The default image of each service the estate deploys, read from ``assets/images/compose.yaml``.

The file is a compose document with one service per default image, so a dependency bot that knows
compose files keeps the tags (and digests) current; nothing runs it. Every default image is read here.
"""
from __future__ import annotations

import functools
from typing import Dict

import yaml

from core.catalog import ASSETS

IMAGES_FILE = ASSETS / "images" / "compose.yaml"


@functools.lru_cache(maxsize=None)
def default_images() -> Dict[str, str]:
    """Service name -> pinned image reference."""
    doc = yaml.safe_load(IMAGES_FILE.read_text())
    return {name: svc["image"] for name, svc in doc["services"].items()}


def default_image(name: str) -> str:
    """The pinned default image of ``name`` (a workload kind, ``cloudflared``)."""
    try:
        return default_images()[name]
    except KeyError:
        raise KeyError(f"{IMAGES_FILE.name} pins no image for {name!r}") from None
