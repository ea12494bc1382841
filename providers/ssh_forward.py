"""A local port forward over OpenSSH, for as long as one provider operation runs.

Nodes reached with ``access: ssh`` publish nothing but SSH: their services listen on the node's loopback.
The model library reaches Ollama there through ``ssh -N -L`` (the operator's own OpenSSH client, with
the private key from the environment or the provider config), the same way the gateway host's autossh
units do. The key is written to a 0600 file in a private temporary directory and removed afterwards.
With the node's pinned host key, the forward's ``known_hosts`` holds that key alone and OpenSSH refuses
any other (``StrictHostKeyChecking=yes``): a server with another key gets no forward.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from core.text import known_hosts_line
from providers.wait import WaitTimeout, wait_for, within

CONNECT_TIMEOUT_SECONDS = 20.0


class ForwardError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def port_free(port: int, reuse_address: bool = False) -> bool:
    """Whether 127.0.0.1:``port`` can be bound (with ``reuse_address``, as a server setting SO_REUSEADDR binds it)."""
    with socket.socket() as s:
        if reuse_address:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ssh_command(host: str, port: int, user: str, key_file: str, local: int, remote: int,
                known_hosts: str, pinned: bool = False, more: Sequence[Tuple[int, int]] = ()) -> list:
    """``ssh -N`` forwarding 127.0.0.1:``local`` to ``remote`` on the node's loopback (and each (local,
    remote) of ``more``)."""
    extra = [arg for lo, re in more for arg in ("-L", f"127.0.0.1:{lo}:127.0.0.1:{re}")]
    return [
        shutil.which("ssh") or "ssh", "-N", "-T",
        "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
        "-o", f"StrictHostKeyChecking={'yes' if pinned else 'accept-new'}",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
        "-o", f"ConnectTimeout={int(CONNECT_TIMEOUT_SECONDS)}",
        "-i", key_file, "-p", str(port),
        "-L", f"127.0.0.1:{local}:127.0.0.1:{remote}", *extra,
        f"{user}@{host}",
    ]


@contextlib.contextmanager
def credentials(host: str, port: int, private_key: Optional[str], host_key: Optional[str],
                 known_hosts: Optional[str] = None) -> Iterator[Tuple[Optional[str], str]]:
    """(key file, known_hosts file) for one OpenSSH call, in a private temporary directory removed
    afterwards: the key 0600 (None without one: the SSH agent's keys), and the pinned host key alone when
    there is one, else ``known_hosts`` (trust on first use, kept there) or a throwaway file."""
    with tempfile.TemporaryDirectory(prefix="estate-ssh-") as tmp:
        key_file: Optional[str] = None
        if private_key:
            key_file = os.path.join(tmp, "key")
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(private_key.strip() + "\n")
        if host_key or known_hosts is None:
            known_hosts = os.path.join(tmp, "known_hosts")
            if host_key:
                with open(known_hosts, "w") as f:
                    f.write(known_hosts_line(host, port, host_key) + "\n")
        yield key_file, known_hosts


def wait_listening(proc: subprocess.Popen, locals_: List[int], errors: Callable[[], str], host: str, port: int,
                   user: str, host_key: Optional[str]) -> None:
    """Wait until every local port of an ``ssh -L`` process listens; raise with OpenSSH's own words
    (``errors``) when it exits first (a refused host key says so) or is not up in time."""
    def all_listening() -> bool:
        if all(listening(p) for p in locals_):
            return True
        if proc.poll() is not None:
            err = errors().strip()
            if host_key and "host key" in err.lower():
                raise ForwardError(f"ssh to {user}@{host}:{port}: the server's host key is not the pinned "
                                   f"one ({host_key.split()[0]} {host_key.split()[1][:24]}...); nothing was "
                                   f"sent: {err}")
            raise ForwardError(f"ssh to {user}@{host}:{port} failed: {err or f'exit {proc.returncode}'}")
        return False

    try:
        wait_for(all_listening, bool, within(CONNECT_TIMEOUT_SECONDS + 5), 0.05, f"forward to {host}:{port}")
    except WaitTimeout:
        raise ForwardError(f"ssh to {user}@{host}:{port}: forward not up after "
                           f"{CONNECT_TIMEOUT_SECONDS:.0f}s") from None


@contextlib.contextmanager
def forward(host: str, port: int, user: str, remote_port: int, private_key: Optional[str],
            key_env: str = "ESTATE_SSH_PRIVATE_KEY", host_key: Optional[str] = None) -> Iterator[int]:
    """Yield a local port that reaches ``remote_port`` on the node's loopback."""
    if not private_key:
        raise ForwardError(
            f"{user}@{host}:{port}: no SSH private key; set {key_env} or the config secret "
            "gpu-estate:sshPrivateKey")
    with credentials(host, port, private_key, host_key) as (key_file, known_hosts):
        local = free_port()
        cmd = ssh_command(host, port, user, key_file, local, remote_port, known_hosts, pinned=bool(host_key))
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_listening(proc, [local], lambda: (proc.stderr.read() or b"").decode(errors="replace"),
                           host, port, user, host_key)
            yield local
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _run_remote(host: str, port: int, user: str, private_key: str, known_hosts: str, host_key: Optional[str],
                remote: str, stdin: str = "", timeout: float = CONNECT_TIMEOUT_SECONDS) -> subprocess.CompletedProcess:
    """``remote`` (a fixed command of the estate's, never a stack value) run over SSH. With ``host_key`` (the
    stack's pin) OpenSSH accepts that key alone; without, the host key is trusted on first use and pinned in
    ``known_hosts`` from then on."""
    with credentials(host, port, private_key, host_key, known_hosts) as (key_file, known_hosts):
        cmd = [shutil.which("ssh") or "ssh", "-T", "-o", "BatchMode=yes",
               "-o", f"StrictHostKeyChecking={'yes' if host_key else 'accept-new'}",
               "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
               "-o", f"ConnectTimeout={int(timeout)}", "-i", key_file, "-p", str(port), f"{user}@{host}", remote]
        try:
            return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout + 10)
        except subprocess.TimeoutExpired:
            raise ForwardError(f"ssh to {user}@{host}:{port}: no answer in {timeout + 10:.0f}s") from None


def _succeeded(run: subprocess.CompletedProcess, user: str, host: str, port: int) -> None:
    if run.returncode != 0:
        raise ForwardError(f"ssh to {user}@{host}:{port} failed: {run.stderr.strip() or f'exit {run.returncode}'}")


def read_file(host: str, port: int, user: str, private_key: str, path: str, known_hosts: str,
              host_key: Optional[str] = None) -> Optional[str]:
    """The text of ``path`` on the host, or None when it does not exist."""
    run = _run_remote(host, port, user, private_key, known_hosts, host_key,
                      f"if [ -e {path} ]; then cat {path}; else echo absent >&2; exit 3; fi")
    if run.returncode == 3 and run.stderr.strip().endswith("absent"):
        return None
    _succeeded(run, user, host, port)
    return run.stdout


def write_file(host: str, port: int, user: str, private_key: str, path: str, text: str, known_hosts: str,
               host_key: Optional[str] = None) -> None:
    """Replace ``path`` on the host with ``text`` (sent on stdin), atomically, creating its directory."""
    run = _run_remote(host, port, user, private_key, known_hosts, host_key,
                      f'mkdir -p "$(dirname {path})" && cat > {path}.tmp && mv {path}.tmp {path}', stdin=text)
    _succeeded(run, user, host, port)


def run_remote(host: str, port: int, user: str, private_key: str, script: str, stdin: str = "",
               host_key: Optional[str] = None, timeout: float = CONNECT_TIMEOUT_SECONDS) -> str:
    """``script`` (fixed text of the estate's; stack values reach it only on stdin) run over SSH with the
    host's pinned key (or trusted on first use without one); its stdout. ForwardError when it fails."""
    with tempfile.TemporaryDirectory(prefix="estate-known-") as tmp:
        run = _run_remote(host, port, user, private_key, os.path.join(tmp, "known_hosts"), host_key, script,
                          stdin=stdin, timeout=timeout)
    _succeeded(run, user, host, port)
    return run.stdout
