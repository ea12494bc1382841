"""Job rules: a job's bucket is one of the estate's, and its cap fits the per-node hourly cap."""
from __future__ import annotations

from typing import List

import core.jobs  # noqa: F401  (completes EstateSpec.jobs, core/spec.py: core.config imports it through here)
from core import pricing
from core.errors import Problem
from core.spec import NAMESPACE, EstateSpec


def check(spec: EstateSpec) -> List[Problem]:
    problems: List[Problem] = []
    cap = spec.budget.max_hourly_per_node
    for name, job in spec.jobs.items():
        where = f"{NAMESPACE}:jobs.{name}"
        if job.bucket not in spec.storage:
            known = ", ".join(sorted(spec.storage)) or "none"
            problems.append((f"{where}.bucket", f"no bucket {job.bucket!r} in {NAMESPACE}:storage (known: {known}); "
                                                f"a job's inputs, outputs, log and status live there"))
        elif spec.storage[job.bucket].provider != "s3":
            problems.append((f"{where}.bucket", f"a job's runner speaks the S3 API; bucket {job.bucket!r} is "
                                                f"{spec.storage[job.bucket].provider}"))
        if not job.ssh.public_key:
            problems.append((f"{where}.ssh.public_key", "a job's machine is rented with the operator's SSH public key "
                                                        "and its runner started over SSH: set it (`ssh-ed25519 AAAA... "
                                                        "you@host`) (got none)"))
        if name in spec.nodes:
            problems.append((where, f"a job and a node share the name {name!r}; give the job another"))
        try:
            est = pricing.estimate_job(name, job)
        except pricing.PlacementError as err:
            problems.append((f"{where}.gpu", str(err)))
            continue
        if cap is not None and est.hourly_usd > cap:
            problems.append((where, f"${est.hourly_usd:.3f}/h exceeds {NAMESPACE}:budget.max_hourly_per_node "
                                    f"${cap:.2f}/h"))
    return problems


def check_sources(spec: EstateSpec) -> List[Problem]:
    """A model made from what a job made (``gguf_models.<tag>.source: job:<job>``) names a job of the stack."""
    problems: List[Problem] = []
    for node_name, node in spec.nodes.items():
        for wname, w in node.workloads.items():
            for tag, model in w.own_models().items():
                named = model.job()
                if named and named[0] not in spec.jobs:
                    known = ", ".join(sorted(spec.jobs)) or "none"
                    problems.append((f"{NAMESPACE}:nodes.{node_name}.workloads.{wname}.gguf_models.{tag}.source",
                                     f"no job {named[0]!r} in {NAMESPACE}:jobs (known: {known}) "
                                     f"(got {model.source!r})"))
    return problems


def check_released(spec: EstateSpec) -> List[Problem]:
    """A job's machine is released by the spend watcher beside the gateway: a stack with jobs has one."""
    if spec.jobs and (spec.spend is None or spec.gateway is None):
        return [(f"{NAMESPACE}:jobs", "a job's machine is deleted when its command ends or a cap is reached by the "
                                      f"spend watcher beside the gateway: set {NAMESPACE}:spend (and "
                                      f"{NAMESPACE}:gateway) (got {'no spend' if spec.spend is None else 'no gateway'})")]
    return []
