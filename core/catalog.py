"""Reference data the spec and placement read: GPU models, model sizes and dated price tables.

The tables live in assets/ as JSON so a price or size update is a data change with its date, not a code
change. They are read once per process.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Dict, Optional

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@functools.lru_cache(maxsize=None)
def _load(name: str) -> Dict[str, Any]:
    with open(ASSETS / name, encoding="utf-8") as f:
        return json.load(f)


def gpus() -> Dict[str, Dict[str, Any]]:
    """Canonical GPU names (``rtx4090``) to ``{display, vram_gb, aliases}``."""
    return _load("prices/gpus.json")["gpus"]


def canonical_gpu(name: str) -> Optional[str]:
    """The canonical name of a GPU given any spelling a vendor or a person uses, or None."""
    key = name.strip().lower()
    table = gpus()
    if key in table:
        return key
    squashed = key.replace(" ", "").replace("_", "").replace("-", "")
    for canon, info in table.items():
        spellings = [info["display"], *info.get("aliases", [])]
        for spelling in spellings:
            s = spelling.lower()
            if s == key or s.replace(" ", "").replace("_", "").replace("-", "") == squashed:
                return canon
    return None


def gpu_vram_gb(canon: str) -> int:
    return int(gpus()[canon]["vram_gb"])


def gpu_display(canon: str) -> str:
    return str(gpus()[canon]["display"])


def reference_gpu_hourly(provider: str, canon: str, spot: bool) -> Optional[float]:
    """Dated reference $/GPU-hour for a marketplace provider, or None where it does not list the GPU."""
    table = _load("prices/gpus.json")["reference_per_gpu_hour"]
    row = table.get(f"{provider}-spot" if spot else provider) or {}
    if canon not in row and spot:
        row = table.get(provider, {})
    price = row.get(canon)
    return float(price) if price is not None else None


def prices_as_of() -> str:
    return str(_load("prices/gpus.json")["as_of"])


def instance_types(cloud: str) -> Dict[str, Dict[str, Any]]:
    """AWS or GCP GPU instance types with their shape and dated on-demand/spot prices."""
    return _load(f"prices/{cloud}.json")["instance_types"]


def ollama_model(tag: str) -> Optional[Dict[str, float]]:
    """``{disk_gb, vram_gb}`` of an Ollama tag; a bare name means its ``:latest`` size if listed."""
    table = _load("models.json")["ollama"]
    return table.get(tag) or table.get(tag.removesuffix(":latest"))


def workload_disk_gb(kind: str) -> float:
    return float(_load("models.json")["workload_disk_gb"].get(kind, 0))


def workload_ram_gb(kind: str) -> float:
    return float(_load("models.json")["workload_ram_gb"].get(kind, 0))
