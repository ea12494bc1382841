"""A real OpenSSH server on 127.0.0.1, as the SSH endpoint of a loopback machine.

It runs Debian's ``/usr/sbin/sshd`` with a host key and a client key it generates, accepts only that
client key, and listens on a free loopback port. What a session runs, runs on this machine as the user
that started it: the sandbox's VM-like node is this machine, reached exactly as a rented one is.
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

SSHD = "/usr/sbin/sshd"


def missing() -> str:
    """Why no loopback sshd can start here, or ''."""
    if not os.path.exists(SSHD):
        return f"no {SSHD} (apt-get install openssh-server)"
    for tool in ("ssh", "ssh-keygen"):
        if not shutil.which(tool):
            return f"no {tool} (apt-get install openssh-client)"
    return ""


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackSshd:
    """``with LoopbackSshd() as sshd: sshd.port, sshd.private_key, sshd.public_key, sshd.host_public_key``."""

    def __init__(self, directory: Optional[Path] = None, start_seconds: float = 10.0,
                 force_command: Optional[str] = None):
        """``force_command``: what every session runs instead of its command, which it finds in
        ``$SSH_ORIGINAL_COMMAND`` (sshd's ``ForceCommand``): a container machine's sessions run inside it."""
        why = missing()
        if why:
            raise RuntimeError(f"loopback sshd: {why}")
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="loopback-sshd-")
        self.dir = Path(directory or self._tmp.name)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        keygen(self.dir / "host")
        keygen(self.dir / "client")
        self.private_key = (self.dir / "client").read_text()
        self.public_key = (self.dir / "client.pub").read_text().strip()
        self.host_public_key = (self.dir / "host.pub").read_text().strip()
        (self.dir / "authorized_keys").write_text(self.public_key + "\n")
        os.chmod(self.dir / "authorized_keys", 0o600)
        self.port = _free_port()
        (self.dir / "sshd_config").write_text(f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.dir / 'host'}
AuthorizedKeysFile {self.dir / 'authorized_keys'}
PidFile {self.dir / 'sshd.pid'}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
MaxStartups 100
MaxSessions 100
""" + (f"ForceCommand {force_command}\n" if force_command else ""))
        Path("/run/sshd").mkdir(exist_ok=True)
        self.log = open(self.dir / "sshd.log", "wb")
        self.start_seconds = start_seconds
        self.start()

    def start(self) -> None:
        """Start (or start again after ``stop``) on the same port with the current host key."""
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")],
                                     stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_seconds
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"loopback sshd did not start: {(self.dir / 'sshd.log').read_text()}")
            time.sleep(0.05)

    def rekey(self, host_key: Optional[Path] = None) -> str:
        """Answer with another host key (a new one, or the key pair at ``host_key``), as a different
        machine at the same address would; returns the old key's file, to put it back."""
        self.stop()
        keep = self.dir / f"host.{time.monotonic_ns()}"
        (self.dir / "host").rename(keep)
        (self.dir / "host.pub").rename(keep.with_suffix(keep.suffix + ".pub"))
        if host_key is None:
            keygen(self.dir / "host")
        else:
            (self.dir / "host").write_bytes(host_key.read_bytes())
            (self.dir / "host").chmod(0o600)
            (self.dir / "host.pub").write_bytes(host_key.with_suffix(host_key.suffix + ".pub").read_bytes())
        self.host_public_key = (self.dir / "host.pub").read_text().strip()
        self.start()
        return str(keep)

    def authorize(self, public_key: str) -> None:
        """Accept one more client key from the next connection on (sshd reads the file at each login)."""
        with open(self.dir / "authorized_keys", "a") as f:
            f.write(public_key.strip() + "\n")

    def answers(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        """Stop answering (a node whose SSH is gone); the keys stay for ``restart``."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def close(self) -> None:
        self.stop()
        self.log.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "LoopbackSshd":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
