"""Per-node rules: workloads on the right kind of node, models known, VRAM, disk and RAM fit, placement."""
from __future__ import annotations

import re
from typing import Dict, List

from core import catalog, pricing
from core.demand import (DISK_OS_RESERVE_GB, VRAM_USABLE_FRACTION, node_disk_demand, node_ram_demand,
                         node_vram_demand, workload_vram)
from core.errors import Problem
from core.spec import NAMESPACE, EstateSpec, PowerState
from core.vendors import Vendor


RUNPOD_ARG_UNSAFE = re.compile(r"[\s'\"\\]")
"""What an argument RunPod splits out of one ``dockerArgs`` string (on whitespace) may not hold."""


def runpod_arg_problem(arg: str) -> str:
    """Why RunPod cannot pass ``arg`` as one argument ('' when it can)."""
    if arg and not RUNPOD_ARG_UNSAFE.search(arg):
        return ""
    return ("RunPod takes a command as one string split on whitespace: an argument may hold no whitespace, "
            f"quote or backslash (got {arg!r})")


def _start_script_reason(node) -> str:
    reasons = []
    if len(node.workloads) > 1:
        reasons.append(f"{len(node.workloads)} workloads in one container")
    if node.idle_shutdown_minutes:
        reasons.append("the idle watcher")
    if any(w.secret_env for w in node.workloads.values()):
        reasons.append("secrets delivered over SSH")
    return ", ".join(reasons)


def _needs_start_script(node) -> bool:
    """Whether a container node's start script does more than start its one workload."""
    return bool(_start_script_reason(node))


def _reached_over_ssh(spec: EstateSpec, name: str) -> bool:
    """Whether the program connects to the node over SSH: it runs containers, hosts the gateway
    deployed over SSH, is tunnelled to, or is reached with ``access: ssh`` for its model library."""
    node = spec.nodes[name]
    services = [n for n, w in node.workloads.items() if not w.on_gateway_host]
    tunnelled = any(t.node == name for t in spec.tunnels)
    return bool(services) or spec.gateway_over_ssh(name) or tunnelled


def check(spec: EstateSpec, estimates: Dict[str, object]) -> List[Problem]:
    problems: List[Problem] = []
    for name, node in spec.nodes.items():
        base = f"{NAMESPACE}:nodes.{name}"
        ports: Dict[int, str] = {}
        for wname, w in node.workloads.items():
            wpath = f"{base}.workloads.{wname}"
            if node.uses_gpu(wname) and node.gpu is None:
                problems.append((f"{wpath}.gpu" if w.gpu else wpath,
                                 f"{wname} is given the node's GPUs but node {name!r} has none"
                                 + ("" if w.gpu else " (set gpu: false to run it on the CPU)")))
            problems += w.problems(spec, name, wname, wpath)
            problems += w.ignored_values(spec, name, wpath)
            port = node.port(wname)
            if not w.on_gateway_host and port in ports:
                problems.append((f"{wpath}.port", f"{wname} and {ports[port]} both listen on port {port} of node "
                                                  f"{name!r} (got port {port})"))
            ports.setdefault(port, wname)
        if node.provider.is_container and len(node.workloads) > 1:
            own = [n for n in node.workloads if node.info(n).add_on is None]
            if node.provider.info.command_only:
                problems.append((f"{base}.workloads", "a RunPod node runs its image as it is (no start script), so "
                                                      f"one workload per node (got {', '.join(node.workloads)})"))
            elif len(own) > 1:
                problems.append((f"{base}.workloads", f"a {node.provider.value} node is one container: "
                                                      f"{' and '.join(own)} each need their own image"))
        if any(v.info.command_only for v in (node.provider, *node.failover)):
            for wname, w in node.workloads.items():
                wpath = f"{base}.workloads.{wname}"
                if w.entrypoint_words():
                    problems.append((f"{wpath}.entrypoint", "a RunPod pod runs its image's own entrypoint; only its "
                                                            f"command (args) can be given (got entrypoint "
                                                            f"{w.entrypoint_words()})"))
                for arg in w.command(node, wname):
                    why = runpod_arg_problem(arg)
                    if why:
                        problems.append((f"{wpath}.args" if arg in getattr(w, "args", ()) else f"{wpath}.model", why))
        for i, cloud in enumerate([node.provider, *node.failover]):
            if not cloud.info.command_only:
                continue
            where = base if i == 0 else f"{base}.failover[{i - 1}]"
            # A RunPod pod takes env only through the pod API (readable there and in the console) and runs
            # its image as it is (no start script to wait for secrets delivered over SSH).
            for wname, w in node.workloads.items():
                if w.secret_env:
                    problems.append((f"{base}.workloads.{wname}.secret_env" if i == 0 else where,
                                     f"a RunPod pod receives env only through RunPod's API, where a value is "
                                     f"readable: put the value in RunPod's secret store and reference it in env as "
                                     f"'{{{{ RUNPOD_SECRET_<name> }}}}' (got secret_env {w.secret_env} on "
                                     f"{wname})"))
            for wname, w in node.workloads.items():
                if w.downloads():
                    # Model files arrive over SSH into the container (providers/model_files.py); a pod runs its
                    # image as it is, with no SSH server of the estate's in it.
                    problems.append((f"{base}.workloads.{wname}.checkpoints" if i == 0 else where,
                                     f"a RunPod pod runs its image as it is, with no SSH server to deliver model "
                                     f"files into: put {wname} on another provider, or bake its files into its "
                                     f"image (got {len(w.downloads())} checkpoints)"))
            if i > 0 and node.provider.info.replaces_entrypoint and _needs_start_script(node):
                problems.append((where, "this node needs its start script (" + _start_script_reason(node)
                                 + "), which a RunPod pod cannot run (got failover to runpod)"))
        if node.gpu is not None:
            for i, cloud in enumerate([node.provider, *node.failover]):
                if cloud.is_marketplace and not catalog.vendor_gpu_names(cloud.value, node.gpu.model):
                    problems.append((f"{base}.gpu.model" if i == 0 else f"{base}.failover[{i - 1}]",
                                     f"{cloud.value} does not rent {node.gpu.model!r} (got gpu.model "
                                     f"{node.gpu.model!r} on {cloud.value})"))
        if node.bid_per_hour is not None and node.price_cap is not None and node.gpu is not None:
            per_gpu = node.provider.info.bid_per_gpu
            hourly = node.bid_per_hour * (node.gpu.count if per_gpu else 1)
            if hourly > node.price_cap + 1e-9:
                each = f" (${node.bid_per_hour:g} a GPU-hour for {node.gpu.count} GPUs)" if per_gpu else ""
                cap = (f"max_price_per_hour ${node.price_cap:g}" if node.max_usd_per_month is None else
                       f"cap of ${node.price_cap:g}/h (max_usd_per_month over hours_per_month)")
                problems.append((f"{base}.bid_per_hour", f"a bid of ${hourly:g}/h{each} is above the node's "
                                                         f"{cap}: the node "
                                                         "would never be placed at it; lower the bid or raise the cap "
                                                         f"(got bid_per_hour {node.bid_per_hour!r})"))
        if node.power is PowerState.IDLE and not node.idle_shutdown_minutes:
            problems.append((f"{base}.power", "'idle' leaves stopping to the node's idle watcher: set "
                                              "idle_shutdown_minutes (got power 'idle' without it)"))
        if node.gpu is not None:
            demand = node_vram_demand(node)
            usable = node.gpu.vram_gb * VRAM_USABLE_FRACTION
            if demand > usable + 1e-9:
                parts = [(n, workload_vram(node, n)) for n in node.workloads]
                parts = [(n, v) for n, v in parts if v]
                field = node.workloads[parts[0][0]].vram_field if len(parts) == 1 else None
                where = f"{base}.workloads.{parts[0][0]}.{field}" if field else f"{base}.workloads"
                advice = "; ".join(f"{n}: {node.workloads[n].vram_advice}" for n, _ in parts)
                problems.append((
                    where,
                    f"the node's GPU workloads need {demand:.1f} GB VRAM at once ("
                    + ", ".join(f"{n} {v:.1f} GB" for n, v in parts)
                    + f") but {node.gpu.count}x {node.gpu.model} gives {usable:.1f} GB usable ({advice})",
                ))
        disk_need = node_disk_demand(node) + DISK_OS_RESERVE_GB
        if disk_need > node.disk_gb:
            problems.append((f"{base}.disk_gb", f"workloads and models need {disk_need:.1f} GB, node has {node.disk_gb} GB (got {node.disk_gb})"))
        ram_need = node_ram_demand(node)
        if ram_need > node.ram_gb:
            problems.append((f"{base}.ram_gb", f"workloads need {ram_need:.1f} GB RAM (got {node.ram_gb})"))
        if node.idle_shutdown_minutes and node.gpu is None and not any(
                w.speaks_ollama_api for w in node.workloads.values()):
            problems.append((f"{base}.idle_shutdown_minutes", "idle shutdown watches the GPU: node has none"))
        if isinstance(estimates.get(name), pricing.PlacementError):
            problems.append((f"{base}.gpu", str(estimates[name])))
        if any(v.info.needs_ssh_key for v in (node.provider, *node.failover)) and not node.ssh.public_key:
            problems.append((f"{base}.ssh.public_key", "TensorDock creates a VM only with an SSH public key to put on "
                                                       "it: set the operator's key (`ssh-ed25519 AAAA... you@host`)"
                                                       " (got none)"))
        if node.provider is Vendor.HOST and not node.ssh.host_key and _reached_over_ssh(spec, name):
            problems.append((f"{base}.ssh.host_key", "an owned host's SSH host key is given in the stack, so the "
                                                     "first connection is verified too: `ssh-keyscan -t ed25519 "
                                                     f"{node.address}` (got none)"))
        if node.provider is Vendor.HOST and node.failover:
            problems.append((f"{base}.failover", "an owned host cannot fail over"))
    return problems
