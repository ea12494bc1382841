"""What a node's workloads and models ask of its GPU, disk and RAM.

Read by the spec's rules (does it fit?), the estate's capacity table and the policy pack's VRAM check,
so the three agree on one arithmetic.
"""
from __future__ import annotations

import math
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


VLLM_GPU_FRACTION = 0.90
"""vLLM's own default ``--gpu-memory-utilization``: it takes this share of every GPU whatever the model."""
LLAMA_CPP_CONTEXT_GB = 1.0
"""llama.cpp's KV cache and compute buffers at its default context, on top of the GGUF file."""
KV_HEADROOM = 1.10
"""Weights may fill at most 1/KV_HEADROOM of a server's VRAM share: the rest is KV cache."""


def workload_vram(node: NodeSpec, name: str) -> float:
    """VRAM one workload holds while active: Ollama's resident models, a preset's rule, or what the stack
    gives (``vram_gb``). A workload run on the CPU holds none."""
    w = node.workloads[name]
    if w.kind is WorkloadKind.OLLAMA:
        sizes = ((catalog.ollama_model(m) or {"vram_gb": 0})["vram_gb"] for m in w.models)
        return resident_vram(sizes, w.max_loaded) if w.models else 0.0
    if node.gpu is None or not node.uses_gpu(name):
        return 0.0
    if w.vram_gb:
        return float(w.vram_gb)
    if w.kind is WorkloadKind.VLLM:
        return VLLM_GPU_FRACTION * node.gpu.vram_gb
    if w.kind is WorkloadKind.TGI:
        # TGI's --cuda-memory-fraction defaults to all of it: whatever is free when it starts.
        return VRAM_USABLE_FRACTION * node.gpu.vram_gb
    if w.kind is WorkloadKind.LLAMA_CPP and w.model_size_gb:
        return w.model_size_gb * KV_HEADROOM + LLAMA_CPP_CONTEXT_GB
    return 0.0


def gpu_fraction(node: NodeSpec, name: str) -> Optional[float]:
    """The share of each GPU a vLLM or TGI server is told to take when the stack gives its ``vram_gb``
    (None: the server's own default)."""
    w = node.workloads[name]
    if node.gpu is None or not w.vram_gb or w.kind not in (WorkloadKind.VLLM, WorkloadKind.TGI):
        return None
    return math.floor(w.vram_gb / node.gpu.vram_gb * 100) / 100


def node_vram_demand(node: NodeSpec) -> float:
    """VRAM the node's resident models and GPU workloads need at once."""
    return sum(workload_vram(node, name) for name in node.workloads)


def node_disk_demand(node: NodeSpec) -> float:
    """Disk the node's workloads, models and checkpoints need, without the OS reserve."""
    disk = 0.0
    for w in node.workloads.values():
        disk += catalog.workload_disk_gb(w.kind.value)
        disk += sum((catalog.ollama_model(m) or {"disk_gb": 0})["disk_gb"] for m in w.models)
        disk += sum(c.size_gb for c in w.checkpoints)
        disk += w.model_size_gb or 0.0
    return disk


def node_ram_demand(node: NodeSpec) -> float:
    return sum(catalog.workload_ram_gb(w.kind.value) for w in node.workloads.values())
