"""A Cloud Storage API on loopback: fake-gcs-server (github.com/fsouza/fake-gcs-server, built by
``scripts/build-fake-gcs.sh``), for the estate's ``gs://`` bucket code to run through Google's own client
library against a real implementation of the GCS JSON API instead of a fake of the project's.

    with LoopbackGcs() as gcs:
        gcs.create_bucket("gpu-estate-sandbox-models")
        client = gcs.client()                   # google-cloud-storage, pointed at the server
        gcs.env()                               # STORAGE_EMULATOR_HOST, for the program's own clients

The server keeps everything in memory and asks for no credentials (the library sends none to an emulator).
It listens on 127.0.0.1 only, on a free port, and is stopped with its process group on close or at exit.
"""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import requests

from providers.ssh_forward import free_port
from providers.wait import WaitTimeout, wait_for, within
from sandbox import real_ollama

FAKE_GCS_VERSION = "1.56.1"
START_SECONDS = 30.0
PROJECT = "gpu-estate-sandbox"


def server_binary() -> Path:
    marker = real_ollama.CACHE / "fake-gcs-bin"
    if marker.exists():
        return Path(marker.read_text().strip())
    return real_ollama.CACHE / f"fake-gcs-server-v{FAKE_GCS_VERSION}" / "bin" / "fake-gcs-server"


def missing() -> str:
    """Why fake-gcs-server cannot run here, or ''."""
    if not server_binary().exists():
        return f"no fake-gcs-server at {server_binary()} (make setup: scripts/build-fake-gcs.sh)"
    return ""


class LoopbackGcs:
    def __init__(self) -> None:
        why = missing()
        if why:
            raise RuntimeError(f"loopback GCS: {why}")
        self.dir = Path(tempfile.mkdtemp(prefix="estate-gcs-"))
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = self.dir / "fake-gcs-server.log"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.dir)}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(server_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
                 "-backend", "memory", "-external-url", self.endpoint, "-public-host", f"127.0.0.1:{self.port}",
                 "-log-level", "warn"],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        atexit.register(self.close)
        try:
            wait_for(self._answers, bool, within(START_SECONDS), 0.2, f"fake-gcs-server on {self.endpoint}")
        except WaitTimeout:
            self.close()
            raise RuntimeError(f"loopback GCS did not answer on {self.endpoint}: {self.log.read_text()[-2000:]}")

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"fake-gcs-server exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
        try:
            return requests.get(f"{self.endpoint}/storage/v1/b", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def client(self) -> Any:
        """google-cloud-storage's client on this server (the library sends no credentials to an emulator)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.endpoint})

    def env(self) -> dict:
        """The environment that points google-cloud-storage's default client (the program's) at this server."""
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(name)

    def close(self) -> None:
        atexit.unregister(self.close)
        real_ollama.stop_group(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "LoopbackGcs":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
