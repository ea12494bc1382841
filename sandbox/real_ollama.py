"""The real Ollama server as a process on this machine's loopback (built by ``scripts/build-ollama.sh``),
for the tests that hold the loopback Ollama and the provider to it and for publishing the project's own
model into the loopback registry.

    with OllamaServer() as ollama:       # `ollama serve` on 127.0.0.1:<free port>, models in a temp dir
        ollama.cli("create", "tiny", "-f", "Modelfile")
        requests.get(f"{ollama.url}/api/tags")

Each server has a home and a model store of its own, removed when it stops. ``ollama serve`` starts a
runner process per loaded model that outlives a SIGTERM to the server, so the whole process group is
stopped.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

import requests

from providers.ssh_forward import free_port

CACHE = Path(os.environ.get("GPU_ESTATE_CACHE", Path.home() / ".cache" / "gpu-estate"))
OLLAMA_VERSION = "0.17.4"
"""The pinned release scripts/build-ollama.sh builds and the sandbox image runs."""
IMAGE = f"gpu-estate/ollama:{OLLAMA_VERSION}"
"""The sandbox's real Ollama image (scripts/build-sandbox-image.sh), what the VM node runs."""
START_SECONDS = 60.0
STOP_SECONDS = 10.0


def ollama_binary() -> Path:
    marker = CACHE / "ollama-bin"
    return Path(marker.read_text().strip()) if marker.exists() else CACHE / f"ollama-v{OLLAMA_VERSION}" / "bin" / "ollama"


def missing() -> str:
    """Why the real Ollama cannot run here, or ''."""
    if not ollama_binary().exists():
        return f"no Ollama binary at {ollama_binary()} (make setup: scripts/build-ollama.sh)"
    return ""


def stop_group(proc: subprocess.Popen, seconds: float = STOP_SECONDS) -> None:
    """SIGTERM to the process group (a server and the runners it started), SIGKILL after ``seconds``."""
    if proc.poll() is not None and not _group_alive(proc.pid):
        return
    for sig, wait in ((signal.SIGTERM, seconds), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(proc.pid):
                return
            time.sleep(0.05)
    proc.wait(timeout=5)


def wait_answering(proc: subprocess.Popen, url: str, log: Path, what: str, close, seconds: float = START_SECONDS) -> None:
    """Wait until ``url`` answers 200; a process that exits or a deadline passed closes it and raises with
    the end of its log."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-1500:]
            close()
            raise RuntimeError(f"{what} did not answer on {url}:\n{tail}")
        time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OllamaServer:
    """``ollama serve`` on 127.0.0.1 with a home and a model store of its own."""

    def __init__(self, port: Optional[int] = None, env: Optional[Dict[str, str]] = None):
        why = missing()
        if why:
            raise RuntimeError(f"real ollama: {why}")
        self.binary = str(ollama_binary())
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = Path(tempfile.mkdtemp(prefix="estate-ollama-"))
        self.models = self.home / "models"
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
                    "OLLAMA_HOST": f"127.0.0.1:{self.port}", "OLLAMA_MODELS": str(self.models),
                    "OLLAMA_NOPRUNE": "1", "OLLAMA_KEEP_ALIVE": "5m", "NO_PROXY": "*", **(env or {})}
        self.log = self.home / "serve.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([self.binary, "serve"], env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        wait_answering(self.proc, self.url, self.log, "real ollama", self.close)

    def cli(self, *args: str, timeout: float = 120.0, cwd: Optional[Path] = None) -> str:
        """The ``ollama`` client against this server; raises with its output when it fails."""
        run = subprocess.run([self.binary, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                             cwd=cwd)
        if run.returncode != 0:
            raise RuntimeError(f"ollama {' '.join(args)}: exit {run.returncode}: {run.stderr.strip()[-1500:]}")
        return run.stdout

    def version(self) -> str:
        return requests.get(f"{self.url}/api/version", timeout=5).json()["version"]

    def close(self) -> None:
        stop_group(self.proc)
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> "OllamaServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
