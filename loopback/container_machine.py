"""Container machines: a loopback Vast.ai instance as a real Docker container of its image, reached over SSH.

On Vast.ai an instance is one container of the image it was created with; Vast.ai's own init keeps it up
and gives it an SSH endpoint (``ssh_host``/``ssh_port``) whose sessions run inside it, as root. Here each
instance a hook picks (``FakeVast.on_create``) becomes:

- a container of the instance's image on this machine's network (so loopback servers, moto's S3 among
  them, are reachable from inside it as from a rented machine's internet), kept up by ``sh`` alone (the
  image needs nothing else), named for this object and the instance (two sandboxes at once never share
  one) and labelled ``gpu-estate-container-machine=<this object's token>``;
- a real OpenSSH server on a free loopback port whose every session runs inside that container
  (``ForceCommand docker exec -i <container> sh -c "$SSH_ORIGINAL_COMMAND"``), letting in only the keys
  attached to the instance (``POST /instances/<id>/ssh/``, ``FakeVast.on_ssh_key``: the account holds no
  key here); the instance's ``ssh_host``/``ssh_port`` point at it.

Stopping the instance (outbid: ``FakeVast.on_stop``) kills the container's processes as Vast.ai's stop
does; deleting it or taking it back (``on_delete``) removes the container and its SSH.
"""
from __future__ import annotations

import subprocess
import tempfile
import uuid
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

from loopback import sshd as loopback_sshd

LABEL = "gpu-estate-container-machine"


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


class ContainerMachines:
    """``ContainerMachines(picks).attach(fake_vast)``: the instances ``picks`` chooses become container machines."""

    def __init__(self, picks: Callable[[Dict[str, Any]], bool]):
        self._picks = picks
        self.token = uuid.uuid4().hex[:12]
        self._tmp = tempfile.TemporaryDirectory(prefix="container-machines-")
        self._lock = threading.Lock()
        self._running: Dict[str, Tuple[str, loopback_sshd.LoopbackSshd]] = {}

    def container(self, iid: Any) -> str:
        return f"gpu-estate-container-machine-{self.token}-{iid}"

    def attach(self, fake: Any) -> None:
        fake.on_create.append(self.create)
        fake.on_stop.append(self.stop)
        fake.on_ssh_key.append(self.let_in)
        fake.on_delete.append(self.delete)

    def create(self, inst: Dict[str, Any]) -> None:
        if not self._picks(inst):
            return
        name = self.container(inst["id"])
        # -i keeps the container's stdin open, so `read` waits on it for as long as the machine lives.
        run = _docker("run", "-d", "-i", "--init", "--network", "host", "--name", name,
                      "--label", f"{LABEL}={self.token}", "--entrypoint", "sh", str(inst["image"]), "-c", "read _ || :")
        if run.returncode != 0:
            raise RuntimeError(f"container machine {inst['id']}: docker run failed: {run.stderr.strip()}")
        sshd = loopback_sshd.LoopbackSshd(
            Path(self._tmp.name) / f"sshd-{inst['id']}",
            force_command=f'docker exec -i {name} sh -c "$SSH_ORIGINAL_COMMAND"')
        with self._lock:
            self._running[str(inst["id"])] = (name, sshd)
        inst["ssh_host"], inst["ssh_port"] = "127.0.0.1", sshd.port

    def let_in(self, inst: Dict[str, Any]) -> None:
        with self._lock:
            held = self._running.get(str(inst["id"]))
        if held is not None:
            held[1].authorize(inst["ssh_keys"][-1])

    def stop(self, inst: Dict[str, Any]) -> None:
        with self._lock:
            held = self._running.get(str(inst["id"]))
        if held is not None:
            _docker("kill", held[0])

    def delete(self, inst: Dict[str, Any]) -> None:
        with self._lock:
            held = self._running.pop(str(inst["id"]), None)
        if held is not None:
            _docker("rm", "-f", held[0])
            held[1].close()

    def containers(self) -> list:
        """Ids of this object's containers standing in for instances, running or not."""
        return _docker("ps", "-aq", "--filter", f"label={LABEL}={self.token}").stdout.split()

    def close(self) -> None:
        with self._lock:
            held, self._running = list(self._running.values()), {}
        for name, sshd in held:
            _docker("rm", "-f", name)
            sshd.close()
        self._tmp.cleanup()
