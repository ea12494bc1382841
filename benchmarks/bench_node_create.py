"""Create N GPU nodes at once through the dynamic provider against a loopback Vast.ai with fixed
latency, and print wall time against N. The engine runs resource operations in parallel, so creation
must overlap: 8 nodes should take far less than 8 times one.

    .venv/bin/python benchmarks/bench_node_create.py [--latency 0.05] [--counts 1,2,4,8]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("ESTATE_POLL_SECONDS", "0.05")

from providers.gpu_instance import GpuInstanceProvider  # noqa: E402
from tests.fakes.vastai import FakeVast  # noqa: E402
from tests.test_gpu_instance_provider import props  # noqa: E402


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
