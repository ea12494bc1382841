"""What a node's workloads and models ask of its GPU, disk and RAM.

Read by the spec's rules (does it fit?), the estate's capacity table and the policy pack's VRAM check,
so the three agree on one arithmetic.
"""
from __future__ import annotations

from typing import Iterable, Optional

from core import catalog
from core.kinds import WorkloadKind
from core.spec import NodeSpec

# Fraction of a GPU's VRAM the resident models may use: the seeds keep ~15% for KV cache and CUDA
# context (seed 000 A201: 20 GB allocated of 24 GB).
VRAM_USABLE_FRACTION = 0.90
# Disk kept free for the OS, images and logs on top of what workloads and models need.
DISK_OS_RESERVE_GB = 20.0


def resident_vram(sizes: Iterable[float], max_loaded: Optional[int]) -> float:
    """VRAM of the models Ollama keeps loaded at once: the largest ``max_loaded`` of them (all when unset).
    The spec checks it per node, and the policy pack from the model resources' stamps."""
    ordered = sorted(sizes)
    return float(sum(ordered[-(max_loaded or len(ordered)):])) if ordered else 0.0


def node_vram_demand(node: NodeSpec) -> float:
    """VRAM the node's resident models and GPU workloads need at once."""
    demand = 0.0
    ollama = node.workloads.get(WorkloadKind.OLLAMA)
    if ollama and ollama.models:
        demand += resident_vram(((catalog.ollama_model(m) or {"vram_gb": 0})["vram_gb"] for m in ollama.models),
                                ollama.max_loaded)
    for kind, w in node.workloads.items():
        if kind is not WorkloadKind.OLLAMA and w.vram_gb:
            demand += w.vram_gb
    return demand


def node_disk_demand(node: NodeSpec) -> float:
    """Disk the node's workloads, models and checkpoints need, without the OS reserve."""
    disk = 0.0
    for kind, w in node.workloads.items():
        disk += catalog.workload_disk_gb(kind.value)
        disk += sum((catalog.ollama_model(m) or {"disk_gb": 0})["disk_gb"] for m in w.models)
        disk += sum(c.size_gb for c in w.checkpoints)
    return disk


def node_ram_demand(node: NodeSpec) -> float:
    return sum(catalog.workload_ram_gb(kind.value) for kind in node.workloads)
