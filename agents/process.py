"""Processes the program leaves running on this machine (the local gateway, the local spend watcher).

Each runs in a session of its own, so it outlives the engine and is stopped as a whole process group.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import List, Mapping, Optional

from providers.http import CloudError


def alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie of ours is not alive
        done, _ = os.waitpid(int(pid), os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def spawn(argv: List[str], env: Mapping[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """Start ``argv`` in its own session, its output appended to ``log``, reading nothing."""
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)


def stop_process(pid: Optional[int]) -> None:
    """SIGTERM to the process group, SIGKILL after 20 s."""
    if not alive(pid):
        return
    try:
        os.killpg(int(pid), signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.killpg(int(pid), signal.SIGKILL)


def delete_process(pid: Optional[int], what: str) -> None:
    """A resource's delete: stop the process; one that outlives its stop stays in state (raises)."""
    stop_process(pid)
    if alive(pid):
        raise CloudError(f"{what} (pid {pid}) is still running; it stays in state")
