"""A loopback model registry: the CNCF registry (distribution, built by ``scripts/build-registry.sh``)
over HTTP on 127.0.0.1, holding models the project makes, for the real Ollama to pull by name
(``127.0.0.1:<port>/library/tiny:1``, an insecure registry the stack must name).

    with LoopbackRegistry() as registry:
        digest = registry.publish("tiny", "1", gguf_path)    # the manifest's digest, as Ollama lists it

Ollama's client follows a blob GET's redirect only to the same host name and then wants a ``Location``
from the final answer, so blobs served by the registry itself fail the pull ("no Location header"). The
registry's ``redirect`` storage middleware sends each blob GET to ``http://localhost:<port>/<path>``, a
plain static file server over the registry's root directory: another host name (``localhost`` while the
registry is ``127.0.0.1``), the same machine's loopback. Both listen on 127.0.0.1 only.

Models are published through a real Ollama started for the purpose (``ollama create`` from a Modelfile,
then ``ollama push --insecure``), so what is stored is exactly what Ollama pushes.
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, Optional

import requests

from providers.ssh_forward import free_port, port_free
from sandbox import real_ollama

REGISTRY_VERSION = "3.1.2"
THROTTLE_CHUNK = 4096
START_SECONDS = 30.0


def registry_binary() -> Path:
    marker = real_ollama.CACHE / "registry-bin"
    if marker.exists():
        return Path(marker.read_text().strip())
    return real_ollama.CACHE / f"registry-v{REGISTRY_VERSION}" / "bin" / "registry"


def missing() -> str:
    """Why the loopback registry (and the real Ollama that publishes into it) cannot run here, or ''."""
    if not registry_binary().exists():
        return f"no registry binary at {registry_binary()} (make setup: scripts/build-registry.sh)"
    return real_ollama.missing()


CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog: {{disabled: true}}
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging: {{enabled: false}}
http:
  addr: 127.0.0.1:{port}
middleware:
  storage:
    - name: redirect
      options:
        baseurl: http://localhost:{blobs}/
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def copyfile(self, source, outputfile) -> None:
        """A blob's bytes, at ``bytes_per_second`` when the registry is slowed (``LoopbackRegistry.slow``)."""
        rate = getattr(self.server, "bytes_per_second", None)
        if not rate:
            return super().copyfile(source, outputfile)
        while True:
            chunk = source.read(THROTTLE_CHUNK)
            if not chunk:
                return
            outputfile.write(chunk)
            time.sleep(len(chunk) / rate)


class LoopbackRegistry:
    """The CNCF registry on 127.0.0.1 and the blob file server its redirects point at."""

    def __init__(self, port: Optional[int] = None):
        why = missing()
        if why:
            raise RuntimeError(f"loopback registry: {why}")
        if port and not port_free(port, reuse_address=True):
            # Another server there would answer the wait below in this one's place, and every pull would go
            # to its storage: say so instead.
            raise RuntimeError(f"loopback registry: 127.0.0.1:{port} is already taken (a registry a killed run left "
                               f"behind? `ss -ltnp 'sport = :{port}'` names it)")
        self.dir = Path(tempfile.mkdtemp(prefix="estate-registry-"))
        self.root = self.dir / "storage"
        self.root.mkdir()
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        handler = functools.partial(_Quiet, directory=str(self.root))
        self.blobs = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.blobs.daemon_threads = True
        threading.Thread(target=self.blobs.serve_forever, daemon=True).start()
        config = self.dir / "config.yml"
        config.write_text(CONFIG.format(root=self.root, port=self.port, blobs=self.blobs.server_address[1]))
        self.log = self.dir / "registry.log"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.dir),
               "OTEL_TRACES_EXPORTER": "none"}  # else it exports traces to localhost:4318
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([str(registry_binary()), "serve", str(config)], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        real_ollama.wait_answering(self.proc, f"{self.url}/v2/", self.log, "the registry", self.close, START_SECONDS)

    def slow(self, bytes_per_second: Optional[float]) -> None:
        """Serve blobs at ``bytes_per_second`` (None: at the loopback's speed), so a pull of the tiny model takes
        as long as a real model's pull from the internet would (the warm-start benchmark: 40 s)."""
        self.blobs.bytes_per_second = bytes_per_second

    def name(self, model: str, tag: str) -> str:
        """The name Ollama pulls ``model:tag`` from this registry by."""
        return f"{self.host}/library/{model}:{tag}"

    def publish(self, model: str, tag: str, gguf: Path, parameters: Optional[Dict[str, object]] = None) -> str:
        """Store ``gguf`` as ``model:tag`` (replacing what that tag held), with the Modelfile's default
        ``parameters``; the manifest's digest."""
        name = self.name(model, tag)
        with tempfile.TemporaryDirectory(prefix="estate-model-") as tmp, real_ollama.OllamaServer() as publisher:
            shutil.copy(gguf, Path(tmp) / "model.gguf")
            (Path(tmp) / "Modelfile").write_text("FROM ./model.gguf\n" + "".join(
                f"PARAMETER {k} {v}\n" for k, v in (parameters or {}).items()))
            publisher.cli("create", name, "-f", "Modelfile", cwd=Path(tmp))
            publisher.cli("push", "--insecure", name)
        return self.digest(model, tag)

    def digest(self, model: str, tag: str) -> Optional[str]:
        """The digest of the manifest ``model:tag`` names (hex, as Ollama lists it), or None."""
        resp = requests.head(f"{self.url}/v2/library/{model}/manifests/{tag}", timeout=5, headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.headers["Docker-Content-Digest"].removeprefix("sha256:")

    def close(self) -> None:
        real_ollama.stop_group(self.proc)
        self.blobs.shutdown()
        self.blobs.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "LoopbackRegistry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
