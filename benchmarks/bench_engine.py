"""Time `pulumi preview` and `pulumi up` through the real engine for estates of 1, 4 and 16 nodes on the
sandbox (loopback Vast.ai and Ollama with a fixed latency per call), and print the figures and their
ratios to one node. Each node is a Vast.ai instance with one Ollama model whose pull streams for
--pull-seconds, so an estate of N nodes has 2N + 3 resources, N of them pulls; the engine runs their
operations in parallel, so 16 nodes should cost far less than 16 times one.

    .venv/bin/python benchmarks/bench_engine.py [--counts 1,4,16] [--latency 0.05] [--repeat 3]

This host's speed moves by 10 to 20% from run to run: --repeat runs each preview, refresh and no-change
up that many times and prints the medians.

Needs the CLI that `make setup` builds. Runs on a copy of the project; the committed stack file is
left as it is.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from loopback.ollama import FakeOllama
from loopback.vastai import FakeVast
from providers import dynamic_host
from scripts import sandbox

ROOT = sandbox.ROOT


class PerInstance(dict):
    """A fake's port map that hands each new instance the next port of an iterator."""

    def get(self, port, default=None):
        ports = super().get(port)
        return next(ports, default) if ports is not None else default


def estate(n: int) -> dict:
    node = {"provider": "vastai", "gpu": {"model": "rtx4090"}, "max_price_per_hour": 0.5, "hours_per_month": 100,
            "idle_shutdown_minutes": 30, "access": "direct", "workloads": {"ollama": {"models": ["tinyllama:1.1b"]}}}
    return {f"node-{i}": dict(node) for i in range(n)}


PHASES = {
    "pulumi-python:dynamic/gpu:Instance": "machines (placement + boot)",
    "pulumi-python:dynamic/ollama:Model": "model pulls",
    "pulumi-python:dynamic/gateway:Local": "gateway",
}


class Phases:
    """Where an `up` spends its time, from the engine's own event stream: for each kind of resource, the
    span from the first one's start to the last one's end, and the longest single one."""

    def __init__(self) -> None:
        self.started: dict = {}
        self.spans: dict = {}
        self.t0 = time.monotonic()

    def __call__(self, event) -> None:
        now = time.monotonic() - self.t0
        pre, done = event.resource_pre_event, event.res_outputs_event
        meta = (pre or done).metadata if (pre or done) else None
        if meta is None or meta.type not in PHASES:
            return
        if pre is not None:
            self.started[meta.urn] = now
        elif meta.urn in self.started:
            self.spans.setdefault(PHASES[meta.type], []).append((self.started.pop(meta.urn), now))

    def summary(self, total: float) -> dict:
        out = {}
        for phase, spans in self.spans.items():
            out[phase] = {"span_s": round(max(e for _, e in spans) - min(s for s, _ in spans), 2),
                          "longest_s": round(max(e - s for s, e in spans), 2), "count": len(spans)}
        # The rest: time when none of those operations was running (program, engine, the other resources).
        covered, end = 0.0, None
        for s, e in sorted(x for spans in self.spans.values() for x in spans):
            if end is None or s > end:
                covered, end = covered + (e - s), e
            elif e > end:
                covered, end = covered + (e - end), e
        out["everything else"] = {"span_s": round(max(0.0, total - covered), 2)}
        return out


def timed(operation, repeat: int) -> float:
    """The median wall time of ``repeat`` runs of ``operation``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        operation()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(n: int, latency: float, pull_seconds: float, work: Path, state: Path, boot_seconds: float = 0.0,
            repeat: int = 1) -> tuple:
    with sandbox.fake_clouds() as fakes:
        vast: FakeVast = fakes["vastai"]
        # Each instance reports "loading" for this long (by the clock, however often it is read) before it runs.
        vast.boot_seconds = boot_seconds
        vast.offers = [FakeVast.offer(7000 + i, "RTX 4090", 1, 0.30 + i / 1000, 0.2, "US", 0.99) for i in range(n)]
        # An Ollama of its own behind each instance, so every node really pulls its model.
        ollamas = [FakeOllama(name=f"ollama-{i}") for i in range(n)]
        vast.port_map = PerInstance({11434: iter([o.httpd.server_address[1] for o in ollamas])})
        vast.latency = latency
        for ollama in ollamas:
            ollama.latency = latency
            ollama.pull_lasts(pull_seconds)
        st = sandbox.stack(sandbox.engine_env(fakes, state), work_dir=work)
        st.set_config("gpu-estate:nodes", sandbox.auto_config(estate(n)))
        st.remove_config("gpu-estate:gateway")  # the nodes alone: the sandbox's gateway needs its own nodes
        st.remove_config("gpu-estate:serverless")  # and none of its serverless endpoints
        st.remove_config("gpu-estate:spend")  # nor the spend watcher, which runs beside the gateway
        st.set_config("gpu-estate:budget", sandbox.auto_config({"monthly_usd": 100000}))
        peak = PeakRss(("providers.dynamic_host", "pulumi-language-python-exec"))
        try:
            preview = timed(st.preview, repeat)
            start = time.perf_counter()
            phases = Phases()
            with peak:
                st.up(on_event=phases)
            up = time.perf_counter() - start
            assert len(vast.alive()) == n, f"{len(vast.alive())} of {n} nodes rented"
            pulls = sum(o.pulls() for o in ollamas)
            # A refresh, then an `up` with nothing to do: reads only, no vendor mutation.
            before = calls(vast, ollamas)
            refresh = timed(st.refresh, repeat)
            noop = timed(st.up, repeat)
            after = calls(vast, ollamas)
            extra = {"refresh_s": refresh, "noop_up_s": noop, "phases": phases.summary(up),
                     # Per refresh and no-change up (each repeated ``repeat`` times).
                     "reads": (after["reads"] - before["reads"]) // repeat,
                     "mutations": (after["mutations"] - before["mutations"]) // repeat,
                     "provider_mib": peak.mib.get("providers.dynamic_host", 0.0),
                     "program_mib": peak.mib.get("pulumi-language-python-exec", 0.0)}
        finally:
            st.destroy()
            st.workspace.remove_stack(st.name)
            for ollama in ollamas:
                ollama.close()
    return preview, up, pulls, extra


def calls(vast: FakeVast, ollamas: list) -> dict:
    """Vendor reads (GET) and mutations (anything else but the offer search) so far."""
    reads = mutations = 0
    for fake in (vast, *ollamas):
        for (method, path), count in fake.calls.items():
            if method == "GET" or (method == "POST" and path.endswith("/bundles/")) or path == "/api/show":
                reads += count
            else:
                mutations += count
    return {"reads": reads, "mutations": mutations}


class PeakRss:
    """Samples the resident memory of processes whose command line names one of ``names`` while the
    block runs, keeping each name's peak (MiB)."""

    def __init__(self, names: tuple):
        self.names, self.mib = names, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for name in self.names:
                    if name in cmd:
                        rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
                        self.mib[name] = max(self.mib.get(name, 0.0), rss / 1024)
            self._stop.wait(0.2)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="1,4,16")
    ap.add_argument("--latency", type=float, default=0.05, help="seconds each loopback API call takes")
    ap.add_argument("--pull-seconds", type=float, default=1.0, help="seconds each model pull streams")
    ap.add_argument("--boot-seconds", type=float, default=0.0, help="seconds each instance takes to boot")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of each preview, refresh and no-change up, of which the median is printed")
    args = ap.parse_args()
    if sandbox.engine_missing():
        print(sandbox.engine_missing(), file=sys.stderr)
        return 2
    counts = [int(c) for c in args.counts.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="estate-bench-"))
    try:
        work = sandbox.project_copy(tmp / "project")
        rows = []
        for n in counts:
            preview, up, pulls, extra = measure(n, args.latency, args.pull_seconds, work, tmp / f"state-{n}",
                                                args.boot_seconds, args.repeat)
            rows.append((n, preview, up, extra))
            print(f"{n:>3} nodes ({2 * n + 3:>3} resources, {pulls:>3} pulls): preview {preview:6.2f} s   "
                  f"up {up:6.2f} s   refresh {extra['refresh_s']:6.2f} s   no-change up {extra['noop_up_s']:6.2f} s   "
                  f"({extra['reads']} reads, {extra['mutations']} mutations)   peak RSS: provider host "
                  f"{extra['provider_mib']:.0f} MiB, program {extra['program_mib']:.0f} MiB", flush=True)
            print("      up: " + "   ".join(
                f"{phase} {v['span_s']:.2f} s" + (f" (longest one {v['longest_s']:.2f} s)" if "longest_s" in v else "")
                for phase, v in extra["phases"].items()), flush=True)
        base_preview, base_up, base = rows[0][1], rows[0][2], rows[0][3]
        parallel = sandbox.engine_parallel()
        workers = dynamic_host.workers({**os.environ, "PULUMI_PARALLEL": parallel})
        print(f"\nratios to {rows[0][0]} node (latency {args.latency:.3f} s per call, pulls {args.pull_seconds:.1f} s, "
              f"boot {args.boot_seconds:.1f} s, {workers} provider workers, PULUMI_PARALLEL={parallel}):")
        for n, preview, up, extra in rows:
            print(f"{n:>3} nodes: preview x{preview / base_preview:4.2f}   up x{up / base_up:4.2f}   "
                  f"refresh x{extra['refresh_s'] / base['refresh_s']:4.2f}   "
                  f"no-change up x{extra['noop_up_s'] / base['noop_up_s']:4.2f}")
        print(json.dumps({"latency_s": args.latency, "pull_s": args.pull_seconds, "boot_s": args.boot_seconds,
                          "provider_workers": int(workers), "results": [
            {"nodes": n, "preview_s": round(p, 2), "up_s": round(u, 2),
             **{k: round(v, 2) if isinstance(v, float) else v for k, v in e.items()}} for n, p, u, e in rows]}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("ESTATE_POLL_SECONDS", "0.2")
    sys.exit(main())
