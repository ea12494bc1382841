"""The real MLflow tracking server on loopback (``mlflow server`` from ``.venv-mlflow``, requirements-mlflow.txt),
for the tests that a stack follows a registered model's alias.

    with MlflowServer() as mlflow:
        mlflow.register("myai", "s3://bucket/models/acme/myai/1/model.gguf", sha256)   # -> "1"
        mlflow.set_alias("myai", "production", "1")

Its backend store is a SQLite file in a directory of its own, removed when it stops; artifacts are not
served through it (``--no-serve-artifacts``): a version's source is the bucket's URL, read by whoever
serves the model. Registration goes through the server's own REST API, as MLflow's client sends it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import requests

from core.config import PROJECT_ROOT
from core.own_models import SHA256_TAG
from providers.ssh_forward import free_port
from sandbox import real_ollama

START_SECONDS = 120.0
"""MLflow's server imports a great deal before it listens: on two busy cores, tens of seconds."""


def mlflow_binary() -> Path:
    return Path(os.environ.get("GPU_ESTATE_MLFLOW", PROJECT_ROOT / ".venv-mlflow" / "bin" / "mlflow"))


def missing() -> str:
    """Why the real MLflow server cannot run here, or ''."""
    return "" if mlflow_binary().exists() else f"no {mlflow_binary()}: run `make setup` (requirements-mlflow.txt)"


class MlflowServer:
    def __init__(self) -> None:
        why = missing()
        if why:
            raise RuntimeError(f"mlflow: {why}")
        self.dir = Path(tempfile.mkdtemp(prefix="estate-mlflow-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.dir / "mlflow.log"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.dir), "NO_PROXY": "*",
               "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(mlflow_binary()), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                 "--backend-store-uri", f"sqlite:///{self.dir / 'mlflow.db'}", "--no-serve-artifacts",
                 "--default-artifact-root", str(self.dir / "artifacts")],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        real_ollama.wait_answering(self.proc, f"{self.url}/health", self.log, "mlflow server", self.close, START_SECONDS)

    def _call(self, method: str, path: str, body: Dict[str, Any]) -> Dict[str, Any]:
        resp = requests.request(method, f"{self.url}/api/2.0/mlflow/{path}", json=body, timeout=30)
        if resp.status_code != 200:
            raise RuntimeError(f"mlflow {method} {path}: {resp.status_code} {resp.text[:500]}")
        return resp.json()

    def register(self, name: str, source: str, sha256: Optional[str]) -> str:
        """A new version of ``name`` (created if need be) whose source is ``source``; its version number."""
        found = requests.get(f"{self.url}/api/2.0/mlflow/registered-models/get", params={"name": name}, timeout=30)
        if found.status_code != 200:
            self._call("POST", "registered-models/create", {"name": name})
        tags = [{"key": SHA256_TAG, "value": sha256}] if sha256 else []
        return self._call("POST", "model-versions/create", {"name": name, "source": source,
                                                            "tags": tags})["model_version"]["version"]

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._call("POST", "registered-models/alias", {"name": name, "alias": alias, "version": version})

    def close(self) -> None:
        real_ollama.stop_group(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "MlflowServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
