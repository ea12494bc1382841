"""Warm starts: the time from `up` to a node's first answer after a failover, with and without the model
cache (``model_cache`` on its Ollama, ``providers/model_cache.py``), through the real engine.

One Vast.ai node (the loopback Vast.ai, whose instances report "loading" for --boot-seconds) runs the real
Ollama (``ollama serve`` on this machine behind the instance's port 11434), which pulls the project's tiny
model from the loopback CNCF registry, slowed so a pull takes --pull-seconds as a real model's pull from the
internet would. With the cache, the first `up` also keeps the model in the bucket on loopback (as fast as the
loopback is): moto's S3 server, or fake-gcs-server with ``--store gs``. Then the vendor takes the machine back (preempted), the new machine's Ollama starts empty,
refresh sees it, and the next `up` rents a new machine and fills its Ollama: from the registry without the
cache, from the bucket with it. A thread asks Ollama for a completion from the `up`'s start until it answers.

    .venv/bin/python benchmarks/bench_warm_start.py [--boot-seconds 20] [--pull-seconds 40] [--store s3|gs]

Prints, for each case, the seconds from `up` to the first answer and its model part (from the new machine
running to the answer), and the cut of the model part. Needs the CLI, the real Ollama and the registry that
`make setup` builds, and moto's server or fake-gcs-server. Runs on a copy of the project; the stack file is
left as it is.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import requests

import sandbox
from loopback.vastai import FakeVast
from sandbox.real_ollama import OllamaServer
from sandbox.gcs import LoopbackGcs
from sandbox.registry import LoopbackRegistry
from sandbox.s3 import LoopbackS3
from sandbox.tiny_model import PARAMETERS, write_tiny_gguf

BUCKET = "gpu-estate-sandbox-models"
STORES = {"s3": LoopbackS3, "gs": LoopbackGcs}
DEADLINE_SECONDS = 600.0


def node(tag: str, registry: str, cache: Optional[str]) -> dict:
    ollama = {"models": [tag], "insecure_registries": [registry], "model_sizes": {tag: {"disk_gb": 0.1, "vram_gb": 0.1}}}
    if cache:
        ollama["model_cache"] = cache
    return {"qwen": {"provider": "vastai", "gpu": {"model": "rtx4090"}, "max_price_per_hour": 0.5,
                     "hours_per_month": 100, "idle_shutdown_minutes": 30, "access": "direct",
                     "workloads": {"ollama": ollama}}}


class FirstAnswer:
    """Asks Ollama for a completion in a loop from ``start()``; records when the first one came, and when the
    vendor first showed the new machine running."""

    def __init__(self, url_of, tag: str, vast: FakeVast, old_id: Optional[int]):
        self.url_of, self.tag, self.vast, self.old_id = url_of, tag, vast, old_id
        self.started = self.running = self.answered = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        deadline = self.started + DEADLINE_SECONDS
        while not self._stop.is_set() and time.monotonic() < deadline:
            if self.running is None and any(i["id"] != self.old_id and i.get("actual_status") == "running"
                                            for i in self.vast.alive()):
                self.running = time.monotonic()
            try:
                resp = requests.post(f"{self.url_of()}/api/generate", timeout=30, json={
                    "model": self.tag, "prompt": "hello", "stream": False, "options": {"num_predict": 2}})
                if resp.status_code == 200 and self.running is not None:
                    self.answered = time.monotonic()
                    return
            except requests.RequestException:
                pass
            self._stop.wait(0.1)

    def join(self) -> None:
        self._thread.join(timeout=DEADLINE_SECONDS)
        self._stop.set()


def failover(cache: bool, boot: float, pull: float, tmp: Path, store: str = "s3") -> dict:
    with sandbox.fake_clouds() as fakes, LoopbackRegistry() as registry, STORES[store]() as bucket:
        gguf = write_tiny_gguf(tmp / "tiny.gguf")
        registry.publish("tiny", "1", gguf, PARAMETERS)
        registry.slow(gguf.stat().st_size / pull)  # a pull takes `pull` seconds, as from the internet
        bucket.create_bucket(BUCKET)
        tag = registry.name("tiny", "1")
        vast: FakeVast = fakes["vastai"]
        vast.boot_seconds = boot
        holder = {"ollama": OllamaServer()}
        vast.port_map[11434] = holder["ollama"].port
        work = sandbox.project_copy(tmp / f"project-{cache}")
        st = sandbox.stack({**sandbox.engine_env(fakes, tmp / f"state-{cache}"), **bucket.env()}, work_dir=work)
        try:
            st.set_config("gpu-estate:nodes", sandbox.auto_config(node(
                tag, registry.host, f"{store}://{BUCKET}/cache/sandbox/qwen" if cache else None)))
            for key in ("gpu-estate:gateway", "gpu-estate:serverless", "gpu-estate:spend"):
                st.remove_config(key)
            st.set_config("gpu-estate:budget", sandbox.auto_config({"monthly_usd": 100000}))
            first = time.monotonic()
            st.up()
            first_up = time.monotonic() - first
            # The vendor takes the machine back; the new machine's Ollama starts with an empty disk.
            (inst,) = vast.alive()
            vast.preempt(inst["id"])
            port = holder["ollama"].port
            holder["ollama"].close()
            holder["ollama"] = OllamaServer(port=port)
            st.refresh()
            watch = FirstAnswer(lambda: holder["ollama"].url, tag, vast, inst["id"])
            watch.start()
            st.up()
            watch.join()
            if watch.answered is None:
                raise RuntimeError("the node did not answer after the failover")
            return {"cache": cache, "store": store, "first_up_s": round(first_up, 1),
                    "to_answer_s": round(watch.answered - watch.started, 1),
                    "model_s": round(watch.answered - watch.running, 1)}
        finally:
            try:
                st.destroy()
                st.workspace.remove_stack(st.name)
            finally:
                holder["ollama"].close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--boot-seconds", type=float, default=20.0)
    ap.add_argument("--pull-seconds", type=float, default=40.0)
    ap.add_argument("--store", choices=sorted(STORES), default="s3", help="the cache's bucket store")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        for cache in (False, True):
            results.append(failover(cache, args.boot_seconds, args.pull_seconds, Path(tmp), args.store))
            print(json.dumps(results[-1]), flush=True)
    cold, warm = results
    print(f"boot {args.boot_seconds:.0f} s, pull from the internet {args.pull_seconds:.0f} s, "
          f"cache in {args.store}:// at loopback speed")
    print(f"{'':14}{'up -> first answer':>20}{'model part':>12}")
    for r in results:
        print(f"{'with cache' if r['cache'] else 'without cache':14}{r['to_answer_s']:>19.1f}s{r['model_s']:>11.1f}s")
    print(f"the cache cuts the model part by {100 * (1 - warm['model_s'] / cold['model_s']):.0f}%")


if __name__ == "__main__":
    main()
