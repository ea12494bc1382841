"""What a node's workloads and models ask of its GPU, disk and RAM.

Read by the spec's rules (does it fit?), the estate's capacity table and the policy pack's VRAM check,
so the three agree on one arithmetic. Each workload says what it takes (``core.workloads``); this module
adds them up.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional

if TYPE_CHECKING:
    from core.spec import NodeSpec

# Fraction of a GPU's VRAM the resident models may use: the seeds keep ~15% for KV cache and CUDA
# context (seed 000 A201: 20 GB allocated of 24 GB).
VRAM_USABLE_FRACTION = 0.90
# Disk kept free for the OS, images and logs on top of what workloads and models need.
DISK_OS_RESERVE_GB = 20.0
KV_HEADROOM = 1.10
"""Weights may fill at most 1/KV_HEADROOM of a server's VRAM share: the rest is KV cache."""


def resident_vram(sizes: Iterable[float], max_loaded: Optional[int]) -> float:
    """VRAM of the models Ollama keeps loaded at once: the largest ``max_loaded`` of them (all when unset).
    The spec checks it per node, and the policy pack from the model resources' stamps."""
    ordered = sorted(sizes)
    return float(sum(ordered[-(max_loaded or len(ordered)):])) if ordered else 0.0


def workload_vram(node: "NodeSpec", name: str) -> float:
    """VRAM one workload holds while active."""
    return node.workloads[name].vram(node)


def gpu_fraction(node: "NodeSpec", name: str) -> Optional[float]:
    """The share of each GPU a server is told to take when the stack gives its ``vram_gb`` (None: the
    server's own default)."""
    return node.workloads[name].gpu_share(node)


def node_vram_demand(node: "NodeSpec") -> float:
    """VRAM the node's resident models and GPU workloads need at once."""
    return sum(w.vram(node) for w in node.workloads.values())


def node_disk_demand(node: "NodeSpec") -> float:
    """Disk the node's workloads, models and checkpoints need, without the OS reserve."""
    return sum(w.disk_gb() for w in node.workloads.values())


def node_ram_demand(node: "NodeSpec") -> float:
    return sum(w.ram_gb() for w in node.workloads.values())
