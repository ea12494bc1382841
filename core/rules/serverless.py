"""Serverless endpoint rules: names apart from nodes, a command RunPod can split, the model fitting every
pool it may land on, and the worker's hourly price within the per-node cap."""
from __future__ import annotations

from typing import Dict, List

from core import catalog, pricing
from core.demand import KV_HEADROOM
from core.workloads.vllm import GPU_FRACTION as VLLM_GPU_FRACTION
from core.errors import Problem
from core.rules.nodes import runpod_arg_problem
from core.spec import NAMESPACE, EstateSpec


def check(spec: EstateSpec, estimates: Dict[str, pricing.EndpointEstimate]) -> List[Problem]:
    problems: List[Problem] = []
    pools = catalog.serverless_pools()
    for name, e in spec.serverless.items():
        base = f"{NAMESPACE}:serverless.{name}"
        if name in spec.nodes:
            problems.append((base, f"a node is named {name!r} too: the gateway, the cost table and the policy pack "
                                   "name each by its name alone"))
        for i, arg in enumerate(e.args):
            why = runpod_arg_problem(arg)
            if why:
                problems.append((f"{base}.args[{i}]", why))
        if e.model_size_gb:
            # RunPod's vLLM worker takes this share of each GPU, as vLLM does; the weights must leave room
            # for the KV cache on the smallest pool a worker may start on.
            for pool in e.gpu_pools:
                share = VLLM_GPU_FRACTION * pools[pool]["vram_gb"] * e.gpu_count
                if e.model_size_gb * KV_HEADROOM > share:
                    problems.append((f"{base}.model_size_gb",
                                     f"the weights ({e.model_size_gb:g} GB) leave no room for the KV cache in the "
                                     f"{share:.1f} GB a worker takes on {e.gpu_count}x {pool} "
                                     f"(got model_size_gb {e.model_size_gb:g})"))
                    break
        est = estimates[name]
        cap = spec.budget.max_hourly_per_node
        if cap is not None and est.worker_hourly_usd > cap:
            problems.append((f"{base}.gpu_pools", f"a worker on {est.pool} costs ${est.worker_hourly_usd:.3f}/h, "
                                                  f"above {NAMESPACE}:budget.max_hourly_per_node ${cap:.2f}/h "
                                                  f"(got {e.gpu_pools})"))
    return problems
