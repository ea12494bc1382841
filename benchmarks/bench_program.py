"""The program's own evaluation under Pulumi's mocks (no engine): time and peak memory to build the
estate of N nodes, for N = 10, 100, 1000 by default, and the time per node. The program should grow
linearly: time per node about flat as N grows.

    .venv/bin/python benchmarks/bench_program.py [--counts 10,100,1000]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tracemalloc

from core.config import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT))  # the tests' mocks, which are not an installed package
from tests.mocks import run_program, stack_config  # noqa: E402


def estate(n: int) -> dict:
    config = stack_config("sandbox")
    node = {"provider": "vastai", "gpu": {"model": "rtx4090"}, "max_price_per_hour": 0.5, "hours_per_month": 100,
            "idle_shutdown_minutes": 30, "access": "direct", "workloads": {"ollama": {"models": ["tinyllama:1.1b"]}}}
    config["gpu-estate:nodes"] = {f"node-{i}": dict(node) for i in range(n)}
    config.pop("gpu-estate:gateway", None)
    config.pop("gpu-estate:serverless", None)  # nodes alone, as before the stack had an endpoint
    config.pop("gpu-estate:spend", None)  # its watcher runs beside the gateway, which is gone
    config["gpu-estate:budget"] = {"monthly_usd": 10_000_000}
    return config


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="10,100,1000")
    args = ap.parse_args()
    rows = []
    for n in (int(c) for c in args.counts.split(",")):
        config = estate(n)
        # Timed without tracemalloc, which slows every allocation several times over; the heap's peak
        # is taken on a second evaluation of the same estate.
        start = time.perf_counter()
        mocks = run_program(config, stack="sandbox")
        seconds = time.perf_counter() - start
        tracemalloc.start()
        run_program(config, stack="sandbox")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append({"nodes": n, "resources": len(mocks.resources), "seconds": round(seconds, 3),
                     "ms_per_node": round(1000 * seconds / n, 2), "peak_mib": round(peak / 2**20, 1)})
        print(f"{n:>5} nodes ({len(mocks.resources):>5} resources): {seconds:7.2f} s  "
              f"{1000 * seconds / n:6.2f} ms/node  peak {peak / 2**20:7.1f} MiB (Python heap)", flush=True)
    print(f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
