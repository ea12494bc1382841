"""Reference data the spec and placement read: GPU models, model sizes and dated price tables.

The tables live in assets/ as JSON so a price or size update is a data change with its date, not a code
change. They are read once per process.
"""
from __future__ import annotations

import difflib
import functools
import ipaddress
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

HOURS_IN_MONTH = 730.0
"""The hours a monthly figure counts (365 x 24 / 12): nodes, endpoints and hosted services alike."""

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@functools.lru_cache(maxsize=None)
def _load(name: str) -> Dict[str, Any]:
    with open(ASSETS / name, encoding="utf-8") as f:
        return json.load(f)


def gpus() -> Dict[str, Dict[str, Any]]:
    """Canonical GPU names (``rtx4090``) to ``{display, vram_gb, aliases, vendors}``: one table for every
    vendor, ``vendors`` holding each marketplace's own names (empty where it does not rent the GPU)."""
    return _load("prices/gpus.json")["gpus"]


def _squash(name: str) -> str:
    return name.strip().lower().replace(" ", "").replace("_", "").replace("-", "")


MAKER_WORDS = ("nvidia", "geforce", "tesla", "rtx")
"""Words of a GPU's name that may be left out, at its start: ``3090``, ``RTX 3090`` and ``NVIDIA GeForce RTX
3090`` name the same card, as ``a6000`` names the RTX A6000."""


def _bare(squashed: str) -> str:
    """A squashed spelling without the maker's words at its start (``nvidiageforcertx3090`` -> ``3090``)."""
    stripped = True
    while stripped:
        stripped = False
        for word in MAKER_WORDS:
            if squashed.startswith(word) and len(squashed) > len(word):
                squashed, stripped = squashed[len(word):], True
    return squashed


@functools.lru_cache(maxsize=None)
def _spellings() -> Dict[str, List[str]]:
    """Every spelling of every GPU (display name, aliases, each vendor's names), squashed, to the canonical
    names it may mean, in table order: built once, as a marketplace search names thousands of offers."""
    index: Dict[str, List[str]] = {}
    for canon, info in gpus().items():
        for s in [canon, info["display"], *info.get("aliases", []), *(n for ns in info.get("vendors", {}).values() for n in ns)]:
            names = index.setdefault(_squash(s), [])
            if canon not in names:
                names.append(canon)
    return index


@functools.lru_cache(maxsize=None)
def _bare_spellings() -> Dict[str, List[str]]:
    """The same spellings without the maker's words, for names no full spelling matches."""
    index: Dict[str, List[str]] = {}
    for spelling, canons in _spellings().items():
        names = index.setdefault(_bare(spelling), [])
        names += [c for c in canons if c not in names]
    return index


def gpu_candidates(name: str) -> List[str]:
    """Every GPU ``name`` may mean, by one rule: case, spaces, ``-`` and ``_`` do not count, and the maker's
    words (``MAKER_WORDS``) may be left out at the start. Several where one vendor name covers several
    cards (Vast.ai's ``A100 PCIE``) or a short name starts several (``A100``: the 40 GB, the 80 GB and the
    SXM card), none for an unknown name."""
    key = name.strip().lower()
    if key in gpus():
        return [key]
    squashed = _squash(key)
    if squashed in _spellings():
        return list(_spellings()[squashed])
    bare = _bare(squashed)
    found = list(_bare_spellings().get(bare, ()))
    return found + [c for c in gpus() if c.startswith(f"{bare}-") and c not in found]


def near_gpus(name: str) -> List[str]:
    """The canonical names closest to an unknown ``name``, for a refusal to suggest."""
    bare = {_bare(_squash(c)): c for c in gpus()}
    return [bare[b] for b in difflib.get_close_matches(_bare(_squash(name)), list(bare), n=3, cutoff=0.6)]


@functools.lru_cache(maxsize=4096)
def canonical_gpu(name: str, vram_gb: Optional[float] = None) -> Optional[str]:
    """The canonical name of a GPU given any spelling a vendor or a person uses, or None. Where one vendor
    name covers several (Vast.ai's ``A100 PCIE`` is the 40 and the 80 GB card), ``vram_gb`` decides."""
    found = gpu_candidates(name)
    if len(found) > 1 and vram_gb:
        table = gpus()
        found = sorted(found, key=lambda c: abs(table[c]["vram_gb"] - vram_gb))
    return found[0] if found else None


def vendor_gpu_names(vendor: str, canon: str) -> List[str]:
    """The names ``vendor`` rents ``canon`` under (empty: it does not rent it)."""
    return list(gpus()[canon].get("vendors", {}).get(vendor, []))


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
    """``{disk_gb, vram_gb}`` of an Ollama tag; a bare name means its ``:latest`` size if listed. A name
    with a registry (``127.0.0.1:5000/library/tiny:1``) has the size of the same model in the table
    (``tiny:1``): a registry of one's own holds the same builds."""
    table = _load("models.json")["ollama"]
    names = [tag]
    registry = registry_of(tag)
    if registry is not None:
        names.append(tag[len(registry) + 1:].removeprefix("library/"))
    for name in names:
        found = table.get(name) or table.get(name.removesuffix(":latest"))
        if found:
            return found
    return None


def registry_of(tag: str) -> Optional[str]:
    """The registry a model name pulls from (``127.0.0.1:5000`` of ``127.0.0.1:5000/library/tiny:1``), or
    None for Ollama's own library (``qwen3:8b``, ``library/qwen3``): as Ollama reads a name, its first part
    is a registry when it holds a ``.`` or a ``:``, or is ``localhost``."""
    first, slash, _ = tag.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        return first
    return None


def is_loopback(registry: str) -> bool:
    """Whether ``host:port`` names this machine's loopback (127.0.0.0/8, localhost, [::1])."""
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def workload_disk_gb(kind: str) -> float:
    return float(_load("models.json")["workload_disk_gb"].get(kind, 0))


def workload_ram_gb(kind: str) -> float:
    return float(_load("models.json")["workload_ram_gb"].get(kind, 0))


def aws_quota_names(instance_type: str, spot: bool) -> List[str]:
    """The names of the EC2 vCPU quotas an AWS instance type counts against in its market, the current
    name first (``assets/prices/aws.json``); empty for a family the table does not know."""
    family = instance_type.split(".", 1)[0]
    for prefix, names in _load("prices/aws.json")["quotas"]["spot" if spot else "on_demand"]:
        if family.startswith(prefix):
            return list(names)
    return []


def serverless_pools() -> Dict[str, Dict[str, Any]]:
    """RunPod serverless GPU pools (``ADA_24``, ``AMPERE_80``, ...) to ``{vram_gb, gpus, flex_per_second,
    active_per_second}``: what a worker of one GPU costs per second, dated (``serverless_prices_as_of``)."""
    return _load("prices/runpod-serverless.json")["pools"]


def serverless_prices_as_of() -> str:
    return str(_load("prices/runpod-serverless.json")["as_of"])


def fly_prices() -> Dict[str, Any]:
    """Fly.io's Machine presets and volume rate, dated (``assets/prices/fly.json``)."""
    return _load("prices/fly.json")


def cloudrun_prices() -> Dict[str, Any]:
    """Cloud Run's per-second GPU, vCPU and memory rates, dated (``assets/prices/cloudrun.json``)."""
    return _load("prices/cloudrun.json")


def api_prices() -> Dict[str, Any]:
    """The external APIs' dated prices (``assets/prices/apis.json``): ``as_of`` and LiteLLM model string ->
    ``{input_per_mtok, output_per_mtok}`` or ``{per_image}``, what the savings report prices traffic at."""
    return _load("prices/apis.json")
