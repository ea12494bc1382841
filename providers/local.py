"""What the program leaves on this machine: processes (the local gateway, the local spend watcher) and the
files written beside them (``replace_text``).

Each runs in a session of its own, so it outlives the engine after an `up` that ends normally (the CLI
closes its plugins by killing their process groups) and is stopped as a whole process group by its
resource's delete.

A CLI that is killed closes nothing: its plugins stay up with nobody to serve, and what the provider
host started in that run may never reach the state. ``follow_engine`` is the provider host's watchdog:
once the engine is gone (this process was re-parented) it stops every process this host started,
interrupts the engine's language host (which would otherwise wait up to five minutes for its next health
check) and exits, so a killed `up` leaves nothing of the project running.
A process recorded in state by the killed run is found dead by the next operation and started again.
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Set, Tuple

from providers.wait import WaitTimeout, wait_for, within

STOP_SECONDS = 20.0
"""How long a process is given after SIGTERM before SIGKILL."""
ENGINE_WATCH_SECONDS_ENV = "ESTATE_ENGINE_WATCH_SECONDS"
"""How often the provider host looks for its engine (default 1 s)."""

_started: Set[int] = set()
"""The process groups this process started and has not stopped."""
_lock = threading.Lock()


def _zombie(pid: int) -> bool:
    """A process that has exited and waits for a parent that does not reap it (``/proc``'s state Z)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def alive(pid: Optional[int]) -> bool:
    """Whether ``pid`` runs: it exists and is neither our zombie nor another parent's."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # running, as another user
    try:  # a zombie of ours is not alive
        done, _ = os.waitpid(int(pid), os.WNOHANG)
        if done != 0:
            return False
    except ChildProcessError:
        pass
    return not _zombie(int(pid))


def spawn(argv: List[str], env: Mapping[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """Start ``argv`` in its own session, its output appended to ``log``, reading nothing."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
    with _lock:
        _started.add(proc.pid)
    return proc


def _gone_within(done: Callable[[], bool], seconds: float, interval: float, what: str) -> bool:
    """Whether ``done`` comes true within ``seconds``, looking every ``interval``."""
    try:
        return wait_for(done, bool, within(seconds), interval, what)
    except WaitTimeout:
        return False


def stop_process(pid: Optional[int], grace: Optional[float] = None) -> None:
    """SIGTERM to the process group, SIGKILL after ``grace`` seconds (``STOP_SECONDS``)."""
    if not alive(pid):
        return
    grace = STOP_SECONDS if grace is None else grace
    try:
        os.killpg(int(pid), signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    if not _gone_within(lambda: not alive(pid), grace, 0.2, f"process {pid} stopped"):
        try:
            os.killpg(int(pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        _gone_within(lambda: not alive(pid), 5, 0.1, f"process {pid} killed")
    with _lock:
        _started.discard(int(pid))


def delete_process(pid: Optional[int], what: str, where: str, warn: Callable[[str], None]) -> bool:
    """A resource's delete: stop the process. One that outlives its stop bills nothing, so it never holds
    the destroy back: ``warn`` says what is left where, and the resource leaves the state. Returns whether
    it stopped."""
    stop_process(pid)
    if alive(pid):
        pid = int(pid)  # state keeps numbers as floats: `kill -9 -5638.0` would fail
        warn(f"{what} (pid {pid}) did not stop; it is left running on this machine ({where}): "
             f"stop it with `kill -9 -{pid}`. The destroy goes on.")
        return False
    return True


def stop_started() -> None:
    """Stop every process group this process started and has not stopped, at once."""
    with _lock:
        pids = sorted(_started)
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    _gone_within(lambda: not any(alive(p) for p in pids), 5, 0.1, "the processes started here stopped")
    for pid in pids:
        if alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


LANGUAGE_HOST_PREFIX = "pulumi-language-"
"""How the engine's language hosts are named (``pulumi-language-python``): the siblings ``follow_engine``
interrupts once their engine is gone."""


def _process(pid: int) -> Optional[Tuple[str, int, str]]:
    """(argv[0], parent pid, start time in clock ticks) of a running process from ``/proc``, or None."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    if fields[0] == "Z":
        return None
    return argv0, int(fields[1]), fields[19]


def language_hosts(parent: int) -> List[Tuple[int, str]]:
    """(pid, start time) of the language hosts the engine ``parent`` runs now (none where there is no
    ``/proc``): its children named ``pulumi-language-*``."""
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        seen = _process(int(entry.name)) if entry.name.isdigit() else None
        if seen and seen[1] == parent and os.path.basename(seen[0]).startswith(LANGUAGE_HOST_PREFIX):
            found.append((int(entry.name), seen[2]))
    return found


def interrupt(hosts: List[Tuple[int, str]]) -> List[int]:
    """SIGINT to each of ``hosts`` that is still the process it was (same start time); returns their pids."""
    sent = []
    for pid, started in hosts:
        seen = _process(pid)
        if seen is None or seen[2] != started:
            continue  # gone, or the pid is another process's now
        try:
            os.kill(pid, signal.SIGINT)
            sent.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    return sent


def _say(message: str) -> None:
    """A line on stderr, if anyone still reads it: after a killed CLI, stderr is a pipe nobody reads, and
    the write fails (BrokenPipeError) instead of ending the watch."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def follow_engine(every: Optional[float] = None, exit: Callable[[int], None] = os._exit) -> threading.Thread:
    """Watch for the engine that started this process to go away without closing it (a killed CLI): then
    stop what this process started, interrupt the engine's language host, and exit.

    The engine is gone when this process's parent changes: the CLI starts its plugins itself, and a CLI
    that ends normally kills them first, so only a CLI that died leaves one re-parented. (Whether the
    engine's address still answers is no test: at a normal end the CLI may stop serving a moment before it
    kills its plugins, and the gateway must outlive a normal `up`.)

    The language host (``pulumi-language-python``, started by the same CLI before any provider) looks for
    its engine only by a gRPC health check every five minutes (``rpcutil.Healthcheck(ctx, engineAddress,
    5*time.Minute, cancel)`` in its ``main.go``, 3.259.0), so after a killed CLI it would serve nobody for up
    to five minutes. It handles SIGINT as a cancel and exits: the language hosts that were this engine's
    children when this process started are sent one, each only if it is still the same process."""
    every = every if every is not None else float(os.environ.get(ENGINE_WATCH_SECONDS_ENV, "1"))
    parent = os.getppid()
    siblings = language_hosts(parent)

    def watch() -> None:
        wait_for(os.getppid, lambda now: now != parent, math.inf, every, "the engine gone")
        # Stop first, say it after: the engine's end of stderr may be closed (a write there fails).
        stop_started()
        interrupted = ", ".join(str(pid) for pid in interrupt(siblings))
        also = f", interrupted its language host (pid {interrupted})" if interrupted else ""
        _say(f"warning: the engine (pid {parent}) is gone without closing this provider host; it stopped the "
             f"processes it started{also} and exits")
        exit(0)

    thread = threading.Thread(target=watch, name="follow-engine", daemon=True)
    thread.start()
    return thread


def replace_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (a reader sees the old file or the new, never half of one),
    creating its directory: the ledger, the watch document and the resume file beside a local gateway."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
