"""This machine, standing in for a rented VM: a real sshd, the real Docker engine, a directory it owns.

The sandbox's VM-like node is reached exactly as a rented one: the loopback marketplace reports this
machine's loopback sshd as the instance's SSH endpoint, the ``command`` provider delivers the compose
project through it, and the containers run under Docker here. When the marketplace deletes the
instance, ``wipe`` does what losing a rented machine does: its containers and its disk (``root``) go.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Optional

from loopback import sshd as loopback_sshd

IMAGE = "gpu-estate/loopback-ollama:sandbox"
MARKER = ".gpu-estate-sandbox"
HOST_KEY = "/etc/estate/ssh_host_ed25519_key"
"""Where a VM's cloud-init stages the SSH host key the program generated for it."""


def _run(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)


def missing(image: str = IMAGE) -> str:
    """Why the loopback machine cannot run here, or ''."""
    why = loopback_sshd.missing()
    if why:
        return why
    if not shutil.which("docker"):
        return "no docker CLI (scripts/install-tools.sh installs docker.io)"
    if _run("docker", "info").returncode != 0:
        return "no Docker engine answers (scripts/install-tools.sh starts dockerd)"
    if _run("docker", "compose", "version").returncode != 0:
        return "no docker compose v2 (scripts/build-compose.sh)"
    if _run("docker", "image", "inspect", image).returncode != 0:
        return f"no image {image} (scripts/build-sandbox-image.sh)"
    return ""


class LoopbackMachine:
    """``with LoopbackMachine("/opt/estate", "estate") as m: m.sshd.port, m.containers(), m.wipe()``."""

    def __init__(self, root: str, project: str):
        why = missing()
        if why:
            raise RuntimeError(f"loopback machine: {why}")
        self.root = Path(root)
        self.project = project
        if self.root.exists() and any(self.root.iterdir()) and not (self.root / MARKER).exists():
            raise RuntimeError(f"loopback machine: {self.root} exists on this machine and is not the sandbox's "
                               f"(no {MARKER} in it); refusing to use or wipe it")
        self.wipe()
        self.sshd = loopback_sshd.LoopbackSshd()

    def wipe(self) -> None:
        """The machine is gone: its containers and its disk."""
        ids = _run("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}").stdout.split()
        if ids:
            _run("docker", "rm", "-f", *ids)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / MARKER).write_text("the gpu-estate sandbox's loopback machine; wiped when it is deleted\n")

    def boot(self, cloud_init: Optional[Dict[str, object]]) -> None:
        """What booting with this cloud-init does to the machine's SSH: a host key it writes for sshd
        (``runcmd`` installs ``/etc/estate/ssh_host_ed25519_key`` as the server's key) becomes the key the
        loopback sshd answers with."""
        files = {f.get("path"): f.get("content") for f in (cloud_init or {}).get("write_files") or []}
        private, public = files.get(HOST_KEY), files.get(HOST_KEY + ".pub")
        if not (private and public):
            return
        staged = self.sshd.dir / "booted_host_key"
        staged.write_text(private)
        staged.chmod(0o600)
        staged.with_suffix(".pub").write_text(public)
        self.sshd.rekey(staged)

    def release_job(self, label: str) -> None:
        """A job's machine is gone: its runner, its container and its job directory with it (a job machine of
        the sandbox is this machine too, its files under ``jobs/<label>``)."""
        import os
        import signal

        import time

        job_dir = self.root / "jobs" / label
        pid_file = job_dir / "runner.pid"
        if pid_file.exists():
            try:
                os.killpg(int(pid_file.read_text().strip()), signal.SIGKILL)  # setsid: the runner leads its group
            except (ValueError, ProcessLookupError, PermissionError):
                pass
        # A `docker run` the runner had under way may still create its container after the kill: look a few times.
        for _ in range(4):
            ids = _run("docker", "ps", "-aq", "--filter", f"label=estate-job={label}").stdout.split()
            if ids:
                _run("docker", "rm", "-f", *ids)
            time.sleep(0.5)
        shutil.rmtree(job_dir, ignore_errors=True)

    def containers(self) -> Dict[str, Dict[str, object]]:
        """Compose service -> {id, state, started} of the project's containers."""
        out = _run("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}").stdout.split()
        if not out:
            return {}
        seen: Dict[str, Dict[str, object]] = {}
        for c in json.loads(_run("docker", "inspect", *out).stdout):
            service = c["Config"]["Labels"].get("com.docker.compose.service", c["Name"])
            seen[service] = {"id": c["Id"], "state": c["State"]["Status"], "started": c["State"]["StartedAt"],
                             "env": c["Config"]["Env"]}
        return seen

    def file(self, relative: str) -> Optional[str]:
        path = self.root / relative
        return path.read_text() if path.exists() else None

    def close(self) -> None:
        self.sshd.close()
        self.wipe()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LoopbackMachine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
