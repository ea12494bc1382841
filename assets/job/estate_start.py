"""Starts a job's runner inside a container machine (Vast.ai): ``python3 -c <this> <job directory> <confirm
seconds>``, the job's bundle on stdin.

A container machine is the job's own image, which may have nothing but ``sh`` and ``python3`` (no coreutils,
no ``setsid``): this does in Python what the VM's shell start does (``providers/job.py``). It writes each file
of the bundle (``<path> <base64>`` lines, ``core.text.secret_bundle``) 0600 in a 0700 directory, replaced
atomically, then starts ``estate_job.py`` detached in a session of its own, its output in ``runner.log``,
unless a runner runs or has finished there (a create retried after a lost answer; the bundle's secrets file
is then removed again, as the runner removes it once read). A VM runs it too, with an empty bundle (its
files arrive through the install manifest before it).

A started runner is confirmed before this says so: within the seconds its second argument gives (the
provider's ``START_CONFIRM_SECONDS``) it must have written its first
status to the bucket (it leaves the file ``started`` beside it then). A runner that exits first, or is
still silent at the end (the bucket unreachable), is stopped, the tail of its log printed and this exits
``NOT_STARTED``: the create fails and deletes the machine rather than leave it billing until a cap. It
prints one line saying which. Only the standard library; nothing of the stack reaches it but the bundle,
as data.
"""
import base64
import os
import signal
import subprocess
import sys
import time

NOT_STARTED = 5
"""The exit status when the runner did not start: the provider fails the create at once."""


def write_bundle(lines):
    for line in lines:
        line = line.strip()
        if not line:
            continue
        path, data = line.split(" ", 1)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(data))
        os.replace(tmp, path)


def running(pid_file):
    try:
        with open(pid_file) as f:
            os.kill(int(f.read().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def main(directory, confirm_seconds):
    os.umask(0o077)
    write_bundle(sys.stdin)
    pid_file = os.path.join(directory, "runner.pid")
    if os.path.exists(os.path.join(directory, "finished")) or running(pid_file):
        # The runner holds the bucket key in memory and left no file of it for the command to read: nor does this.
        try:
            os.unlink(os.path.join(directory, "secrets.json"))
        except FileNotFoundError:
            pass
        print("estate-job: already started", flush=True)
        return 0
    with open(os.path.join(directory, "runner.log"), "ab") as log:
        proc = subprocess.Popen([sys.executable, os.path.join(directory, "estate_job.py"), directory],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=directory,
                                start_new_session=True)
    with open(pid_file, "w") as f:
        f.write(f"{proc.pid}\n")
    why = confirm(proc, directory, confirm_seconds)
    if why:
        sys.stderr.write(f"estate-job: the runner did not start: {why}; the end of runner.log:\n"
                         f"{log_tail(directory)}\n")
        return NOT_STARTED
    print(f"estate-job: runner {proc.pid}", flush=True)
    return 0


def confirm(proc, directory, seconds):
    """'' once the runner wrote its first status; else why not, the runner stopped."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.exists(os.path.join(directory, "started")):
            return ""
        if proc.poll() is not None:
            return f"it exited with status {proc.returncode}"
        time.sleep(0.2)
    if os.path.exists(os.path.join(directory, "started")):
        return ""
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the runner and anything it started
    except OSError:
        pass
    proc.wait(timeout=10)
    return f"it wrote no status in {seconds:g} s (is its bucket reachable?); stopped"


def log_tail(directory, lines=20):
    try:
        with open(os.path.join(directory, "runner.log"), "rb") as f:
            return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
    except OSError as err:
        return f"(no log: {err})"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2])))
