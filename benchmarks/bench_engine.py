"""Time `pulumi preview` and `pulumi up` through the real engine for estates of 1, 4 and 16 nodes on the
sandbox (loopback Vast.ai and Ollama with a fixed latency per call), and print the figures and their
ratios to one node. Each node is a Vast.ai instance with one Ollama model whose pull streams for
--pull-seconds, so an estate of N nodes has 2N + 3 resources, N of them pulls; the engine runs their
operations in parallel, so 16 nodes should cost far less than 16 times one.

    .venv/bin/python benchmarks/bench_engine.py [--counts 1,4,16] [--latency 0.05] [--repeat 3]

This host's speed moves by 10 to 20% from run to run: --repeat runs each preview, `up` (from nothing:
the estate is destroyed in between), refresh and no-change `up` that many times and prints the medians.
The estates of all counts are up side by side and each round runs every count once, so a ratio compares
runs made minutes apart at most.

Needs the CLI that `make setup` builds. Runs on copies of the project (one per count); the committed
stack file is left as it is.
"""
from __future__ import annotations

import argparse
import itertools
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
import sandbox

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


class Estate:
    """One benchmark estate of ``n`` nodes: its own loopback clouds (each node's Vast.ai instance with an
    Ollama of its own behind it), its own copy of the project and its own state. The estates of all counts
    are up side by side, so that each round of timings runs every count once, one after the other: the
    ratios then compare runs minutes apart at most, not a whole benchmark apart."""

    def __init__(self, n: int, latency: float, pull_seconds: float, boot_seconds: float, tmp: Path):
        self.n = n
        self.times: dict = {"preview": [], "up": [], "refresh": [], "noop_up": []}
        self.phases: list = []
        self.peak = {"providers.dynamic_host": 0.0, "pulumi-language-python-exec": 0.0}
        self._clouds = sandbox.fake_clouds()
        fakes = self._clouds.__enter__()
        self.vast: FakeVast = fakes["vastai"]
        # Each instance reports "loading" for this long (by the clock, however often it is read) before it runs.
        self.vast.boot_seconds = boot_seconds
        self.vast.offers = [FakeVast.offer(7000 + i, "RTX 4090", 1, 0.30 + i / 1000, 0.2, "US", 0.99) for i in range(n)]
        # An Ollama of its own behind each instance, so every node really pulls its model; the instances of
        # a later `up` (after a destroy) are handed the same Ollamas again.
        self.ollamas = [FakeOllama(name=f"ollama-{i}") for i in range(n)]
        self.vast.port_map = PerInstance({11434: itertools.cycle([o.httpd.server_address[1] for o in self.ollamas])})
        self.vast.latency = latency
        for ollama in self.ollamas:
            ollama.latency = latency
            ollama.pull_lasts(pull_seconds)
        work = sandbox.project_copy(tmp / f"project-{n}")  # each its own stack file
        self.st = sandbox.stack(sandbox.engine_env(fakes, tmp / f"state-{n}"), work_dir=work)
        self.st.set_config("gpu-estate:nodes", sandbox.auto_config(estate(n)))
        self.st.remove_config("gpu-estate:gateway")  # the nodes alone: the sandbox's gateway needs its own nodes
        self.st.remove_config("gpu-estate:serverless")  # and none of its serverless endpoints
        self.st.remove_config("gpu-estate:spend")  # nor the spend watcher, which runs beside the gateway
        self.st.set_config("gpu-estate:budget", sandbox.auto_config({"monthly_usd": 100000}))
        self.pulls = 0
        self.marks: dict = {}

    def timed(self, what: str, operation) -> None:
        start = time.perf_counter()
        operation()
        self.times[what].append(time.perf_counter() - start)

    def up(self) -> None:
        """An `up` from nothing (the estate is destroyed first if it is up)."""
        if self.vast.alive():
            self.st.destroy()
            for ollama in self.ollamas:  # the next machines start with empty disks
                ollama.installed.clear()
        pulls = sum(o.pulls() for o in self.ollamas)
        phases = Phases()
        peak = PeakRss(tuple(self.peak))
        with peak:
            self.timed("up", lambda: self.st.up(on_event=phases))
        assert len(self.vast.alive()) == self.n, f"{len(self.vast.alive())} of {self.n} nodes rented"
        self.pulls = sum(o.pulls() for o in self.ollamas) - pulls
        self.phases.append(phases.summary(self.times["up"][-1]))
        for name, mib in peak.mib.items():
            self.peak[name] = max(self.peak[name], mib)

    def mark(self, name: str) -> None:
        """The vendor calls so far, under ``name``."""
        self.marks[name] = calls(self.vast, self.ollamas)

    def result(self) -> dict:
        """Medians of each operation's runs, the phases of the median `up`, and the vendor reads per refresh
        and per no-change `up` and the mutations of all of them."""
        ups = self.times["up"]
        median_up = sorted(range(len(ups)), key=ups.__getitem__)[(len(ups) - 1) // 2]
        start, refreshed, end = self.marks["up"], self.marks["refreshed"], self.marks["end"]
        return {"nodes": self.n, **{f"{k}_s": statistics.median(v) for k, v in self.times.items()},
                "pulls": self.pulls, "phases": self.phases[median_up],
                "refresh_reads": (refreshed["reads"] - start["reads"]) // len(self.times["refresh"]),
                "noop_reads": (end["reads"] - refreshed["reads"]) // len(self.times["noop_up"]),
                "mutations": end["mutations"] - start["mutations"],
                "provider_mib": self.peak["providers.dynamic_host"],
                "program_mib": self.peak["pulumi-language-python-exec"]}

    def close(self) -> None:
        try:
            self.st.destroy()
            self.st.workspace.remove_stack(self.st.name)
        finally:
            for ollama in self.ollamas:
                ollama.close()
            self._clouds.__exit__(None, None, None)


def measure_all(counts: list, latency: float, pull_seconds: float, boot_seconds: float, repeat: int,
                tmp: Path) -> list:
    """Every count's preview, `up` (from nothing, ``repeat`` times), refresh and no-change `up`, in rounds
    that run each count once."""
    estates: list = []
    try:
        for n in counts:
            estates.append(Estate(n, latency, pull_seconds, boot_seconds, tmp))
        for _ in range(repeat):
            for e in estates:
                e.timed("preview", e.st.preview)
        for _ in range(repeat):
            for e in estates:
                e.up()
        # Refreshes, then `up`s with nothing to do: reads only, no vendor mutation.
        for what, mark in (("refresh", "up"), ("noop_up", "refreshed")):
            for e in estates:
                e.mark(mark)
            for _ in range(repeat):
                for e in estates:
                    e.timed(what, e.st.refresh if what == "refresh" else e.st.up)
        for e in estates:
            e.mark("end")
        return [e.result() for e in estates]
    finally:
        for e in estates:
            e.close()


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
        rows = measure_all(counts, args.latency, args.pull_seconds, args.boot_seconds, args.repeat, tmp)
        for r in rows:
            print(f"{r['nodes']:>3} nodes ({2 * r['nodes'] + 3:>3} resources, {r['pulls']:>3} pulls): "
                  f"preview {r['preview_s']:6.2f} s   up {r['up_s']:6.2f} s   refresh {r['refresh_s']:6.2f} s   "
                  f"no-change up {r['noop_up_s']:6.2f} s   ({r['refresh_reads']} reads per refresh, "
                  f"{r['noop_reads']} per no-change up, {r['mutations']} mutations)   peak RSS: provider host "
                  f"{r['provider_mib']:.0f} MiB, program {r['program_mib']:.0f} MiB", flush=True)
            print("      up: " + "   ".join(
                f"{phase} {v['span_s']:.2f} s" + (f" (longest one {v['longest_s']:.2f} s)" if "longest_s" in v else "")
                for phase, v in r["phases"].items()), flush=True)
        base = rows[0]
        parallel = sandbox.engine_parallel()
        workers = dynamic_host.workers({**os.environ, "PULUMI_PARALLEL": parallel})
        print(f"\nratios to {base['nodes']} node (latency {args.latency:.3f} s per call, pulls {args.pull_seconds:.1f} s, "
              f"boot {args.boot_seconds:.1f} s, {workers} provider workers, PULUMI_PARALLEL={parallel}, "
              f"medians of {args.repeat} runs each, the counts run in turn):")
        for r in rows:
            print(f"{r['nodes']:>3} nodes: " + "   ".join(
                f"{label} x{r[key] / base[key]:4.2f}" for label, key in (
                    ("preview", "preview_s"), ("up", "up_s"), ("refresh", "refresh_s"), ("no-change up", "noop_up_s"))))
        print(json.dumps({"latency_s": args.latency, "pull_s": args.pull_seconds, "boot_s": args.boot_seconds,
                          "provider_workers": int(workers), "repeat": args.repeat, "results": [
            {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()} for r in rows]}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("ESTATE_POLL_SECONDS", "0.2")
    sys.exit(main())
