"""Create N GPU nodes at once through the dynamic provider against a loopback Vast.ai with fixed
latency, and print wall time against N. The engine runs resource operations in parallel, so creation
must overlap: 8 nodes should take far less than 8 times one.

    .venv/bin/python benchmarks/bench_node_create.py [--latency 0.05] [--counts 1,2,4,8]
"""
from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

from core.pricing import NodeRequest
from loopback.vastai import FakeVast
from providers.gpu_instance import PROVIDER_VERSION, GpuInstanceArgs, GpuInstanceProvider, LaunchInputs

os.environ.setdefault("ESTATE_POLL_SECONDS", "0.05")


def props(clouds, label: str) -> dict:
    """A 1x RTX 4090 node's inputs, as the program would register them."""
    return {**GpuInstanceArgs(
        label=label, clouds=list(clouds),
        request=NodeRequest(gpu_model="rtx4090", gpu_count=1, min_vram_gb=24, vcpu=4, ram_gb=16, disk_gb=100),
        launch=LaunchInputs(image="ollama/ollama:0.12.6", disk_gb=100, ports=[11434], vcpu=4, ram_gb=16),
        stamps={"hours_per_month": 120}).to_props(), "version": PROVIDER_VERSION}


def run(n: int, latency: float) -> float:
    fake = FakeVast()
    fake.latency = latency
    fake.offers = [FakeVast.offer(7000 + i, "RTX 4090", 1, 0.30 + i / 1000, 0.2, "US", 0.99) for i in range(n)]
    os.environ["VASTAI_API_URL"] = fake.url + "/api/v0"
    os.environ["VASTAI_API_KEY"] = "bench"
    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=n) as pool:
            list(pool.map(lambda i: GpuInstanceProvider().create(props(clouds=["vastai"], label=f"bench-{i}")), range(n)))
        elapsed = time.perf_counter() - start
        assert len(fake.alive()) == n
        return elapsed
    finally:
        fake.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added to every API call")
    ap.add_argument("--counts", default="1,2,4,8")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    base = None
    print(f"{'nodes':>5} {'wall s':>8} {'x one node':>10}   (latency {args.latency}s per call)")
    for n in counts:
        t = run(n, args.latency)
        base = base or t
        print(f"{n:>5} {t:>8.3f} {t / base:>10.2f}")


if __name__ == "__main__":
    main()
