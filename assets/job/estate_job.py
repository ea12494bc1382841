"""The runner of one GPU job on its machine: ``python3 estate_job.py <job directory>``.

Started over SSH by the job's resource (``providers/job.py``), detached, once per machine. It reads its job
as data (``job.json``: image, command words, env, bucket, prefixes; never code) and its secrets from the
0600 ``secrets.json`` delivered over SSH beside it, then:

1. writes the status object ``<status_prefix>/status.json`` (``starting``), downloads the input prefixes into
   ``inputs/`` (and, when the stack says ``resume``, the outputs prefix into ``outputs/``: the last
   checkpoints), and writes ``running``;
2. runs the command in the image with Docker, its words as arguments (``docker run ... <image> <words>``, no
   shell), the inputs at ``/job/inputs`` (read-only) and the outputs at ``/job/outputs``, its env from a 0600
   env file; streams its output to ``job.log`` and this process's own log line by line. On a container
   machine (``"container": true`` in the document: Vast.ai, where the machine is the job's image and this
   runner runs inside it) the command runs as this process's child in a session of its own, its words as
   arguments, with ``/job/inputs`` and ``/job/outputs`` the very directories and its env passed as data;
3. every ``sync_seconds`` uploads the outputs that changed and the log; from its start to its end, every
   ``heartbeat_seconds`` (``core.jobs.heartbeat_seconds``, given in the document), writes its current status
   again (``updated_at`` is its heartbeat) from a thread of its own, so a long download or upload never
   delays it: the job agent counts a runner whose heartbeat is late by ``core.jobs.lost_after`` as lost;
4. when the command ends, whatever its exit code, uploads the outputs, the log (``log.txt``) and the final
   status (``succeeded`` on exit 0, else ``failed``, with the exit code, times and output keys);
5. at the job's ``max_hours`` (from this runner's start) it kills the command's container (on a container
   machine, the command's process group) and writes ``capped``: a backstop for a spend watcher that stopped
   after the job started. The host is not powered off: no vendor stops billing for that (only its API,
   with the account's key, deletes the machine), which is why a job is launched only once the watcher runs.

The machine is released by the spend watcher's job agent once it reads the final status (``agents/jobs.py``);
this process never holds a vendor key. Only the standard library: the S3 client is ``estate_s3.py``, shipped
beside it (``providers/s3.py``).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

try:
    import estate_s3 as s3mod  # beside this file on the machine
except ImportError:  # run from the project (tests)
    from providers import s3 as s3mod

CONTAINER = "estate-job-{label}"
SYNC_FLOOR_SECONDS = 1.0
# The final status is what releases the machine: it is written again after a failed write, waiting these
# seconds between tries (bounded: about half a minute in all), before the runner gives up.
FINAL_RETRY_SECONDS = (1.0, 2.0, 4.0, 8.0, 15.0)
CAP_POLL_SECONDS = 30.0  # how often the runner looks at its own max_hours backstop
KILL_SECONDS = 60.0  # how long `docker kill` and then the client's end are awaited at the cap


def now() -> float:
    return time.time()


class Runner:
    def __init__(self, root: Path):
        self.root = root
        self.job: Dict[str, Any] = json.loads((root / "job.json").read_text(encoding="utf-8"))
        secrets = json.loads((root / "secrets.json").read_text(encoding="utf-8"))
        self.secret_env: Dict[str, str] = dict(secrets.get("env") or {})
        self.s3 = s3mod.S3(self.job["bucket"], secrets["s3"]["access_key"], secrets["s3"]["secret_key"],
                           endpoint=self.job.get("endpoint"), region=self.job.get("region") or "us-east-1")
        self.container = bool(self.job.get("container"))
        """A container machine: the command runs here, not in a container of its own."""
        if self.container:
            # The command runs beside this process, as the same user: the bucket key stays in this process
            # only, not in a file the command could read (or copy into its outputs).
            (root / "secrets.json").unlink()
        mount = Path(self.job.get("mount") or "/job")
        self.inputs, self.outputs = (mount / "inputs", mount / "outputs") if self.container else (
            root / "inputs", root / "outputs")
        self.log_path = root / "job.log"
        self.started = now()
        self.uploaded: Dict[str, tuple] = {}
        self.lock = threading.Lock()
        self.capped = ""  # why the runner stopped the command at its own cap, or ''
        self.status_lock = threading.Lock()  # one status write at a time; none but a final after a final
        self.final = False
        self.state = "starting"  # what the heartbeat writes again

    # -- the status object --------------------------------------------------------------------------
    def key(self, name: str) -> str:
        return f"{self.job['status_prefix']}/{name}"

    def status(self, state: str, final: bool = False, **more: Any) -> None:
        """Write the status object. Writes are serialized, and once a final state has been written (or is
        being written) no other state is: the syncer's heartbeat, however late, never turns ``succeeded``
        back into ``running`` (which would leave the machine billing until its cap)."""
        doc = {"state": state, "label": self.job["label"], "run": self.job["run"], "host": socket.gethostname(),
               "instance": self.job.get("instance"), "started_at": self.started, "updated_at": now(), **more}
        with self.status_lock:
            if self.final and not final:
                return
            self.final = self.final or final
            self.state = state
            self.s3.put(self.key("status.json"), json.dumps(doc, sort_keys=True).encode(), "application/json")
        print(f"estate-job: {self.job['label']}: {state}", flush=True)

    def final_status(self, state: str, **more: Any) -> None:
        """The final status, written again after a failed write with a bounded backoff; raises the last error."""
        for delay in (*FINAL_RETRY_SECONDS, None):
            try:
                self.status(state, final=True, **more)
                return
            except Exception as err:  # noqa: BLE001 - any failed write is tried again
                if delay is None:
                    raise
                print(f"estate-job: writing the final status failed ({type(err).__name__}); "
                      f"trying again in {delay:g} s", flush=True)
                time.sleep(delay)

    # -- bucket <-> directories ---------------------------------------------------------------------
    def fetch(self, prefix: str, into: Path) -> int:
        """Every object under ``prefix`` into ``into``, keyed by its path below the prefix."""
        base = prefix.rstrip("/")
        count = 0
        for key in self.s3.list(base + "/" if base else ""):
            rel = key[len(base):].lstrip("/")
            if not rel or rel.endswith("/") or ".." in rel.split("/"):
                continue
            self.s3.download(key, str(into / rel))
            count += 1
        return count

    def output_files(self) -> List[Path]:
        """The regular files under the outputs directory. Symlinks are skipped, and so is anything whose real
        path is not inside the directory: the job's image writes there, and a link to ``secrets.json`` (or any
        file of the machine) would otherwise upload the job's bucket keys with its outputs."""
        base = self.outputs.resolve()
        files = []
        for dirpath, dirnames, filenames in os.walk(self.outputs):  # os.walk does not follow linked directories
            for name in filenames:
                path = Path(dirpath) / name
                if path.is_symlink() or not path.is_file():
                    continue
                real = path.resolve()
                if real != base and base not in real.parents:
                    continue
                files.append(path)
        return sorted(files)

    def push_outputs(self) -> List[str]:
        """Upload the output files that are new or changed since the last upload; every output key."""
        keys = []
        with self.lock:
            for path in self.output_files():
                rel = path.relative_to(self.outputs).as_posix()
                key = f"{self.job['outputs']}/{rel}"
                st = path.stat()
                mark = (st.st_size, st.st_mtime_ns)
                if self.uploaded.get(key) != mark:
                    self.s3.put_file(key, str(path))
                    self.uploaded[key] = mark
                keys.append(key)
        return keys

    def push_log(self) -> None:
        if self.log_path.exists():
            self.s3.put_file(self.key("log.txt"), str(self.log_path))

    # -- the command --------------------------------------------------------------------------------
    def docker_command(self, env_file: Path) -> List[str]:
        job = self.job
        cmd = ["docker", "run", "--rm", "--name", CONTAINER.format(label=job["label"]),
               "--label", f"estate-job={job['label']}", "--env-file", str(env_file),
               "-v", f"{self.inputs}:/job/inputs:ro", "-v", f"{self.outputs}:/job/outputs",
               "-e", "ESTATE_JOB_INPUTS=/job/inputs", "-e", "ESTATE_JOB_OUTPUTS=/job/outputs"]
        if job.get("gpus"):
            cmd += ["--gpus", "all"]
        if job.get("resumed"):
            cmd += ["-e", "ESTATE_JOB_RESUMED=1"]
        return cmd + ["--", job["image"], *job["command"]]

    def command_env(self) -> Dict[str, str]:
        """The command's env on a container machine: the machine's own (its image's), then the stack's and the
        secret, then where its inputs and outputs are."""
        env = {**os.environ, **self.job.get("env", {}), **self.secret_env,
               "ESTATE_JOB_INPUTS": str(self.inputs), "ESTATE_JOB_OUTPUTS": str(self.outputs)}
        if self.job.get("resumed"):
            env["ESTATE_JOB_RESUMED"] = "1"
        return env

    def start(self) -> subprocess.Popen:
        """The command, started: in its image with Docker on a VM, as a child here on a container machine."""
        if not self.container:
            return subprocess.Popen(self.docker_command(self.env_file()), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return subprocess.Popen(list(self.job["command"]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=self.command_env(), cwd=str(self.outputs),
                                start_new_session=True)

    def stop_command(self, proc: subprocess.Popen) -> None:
        """Stop the command at the cap: its container on a VM, its process group on a container machine."""
        if self.container:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                proc.kill()
            proc.wait(timeout=KILL_SECONDS)
            return
        name = CONTAINER.format(label=self.job["label"])
        subprocess.run(["docker", "kill", name], capture_output=True, timeout=KILL_SECONDS)
        proc.wait(timeout=KILL_SECONDS)

    @staticmethod
    def pump(proc: subprocess.Popen, log: Any) -> None:
        """The command's output into ``job.log`` and this process's own log, line by line, until it closes."""
        for line in proc.stdout:
            log.write(line)
            log.flush()
            sys.stdout.buffer.write(line)
            sys.stdout.flush()

    @staticmethod
    def end_group(proc: subprocess.Popen) -> None:
        """What the command left running in its session once it ended, killed: on a VM its container's end
        does this; on a container machine a process it left behind would hold its output open (and the
        runner's end with it) until the cap."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass

    def env_file(self) -> Path:
        """The command's env, the stack's and the secret, as Docker reads an env file: one ``NAME=value`` a line,
        taken literally (no quoting, no expansion); 0600, beside the secrets."""
        path = self.root / "command.env"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for name, value in {**self.job.get("env", {}), **self.secret_env}.items():
                if "\n" in value or "\r" in value or "\0" in value:
                    raise ValueError(f"env {name}: a value is one line")
                f.write(f"{name}={value}\n")
        return path

    def syncing(self, stop: threading.Event) -> None:
        every = max(SYNC_FLOOR_SECONDS, float(self.job.get("sync_seconds") or 600))
        while not stop.wait(every):
            try:
                self.push_outputs()
                self.push_log()
            except Exception as err:  # noqa: BLE001 - a failed sync is retried at the next one
                print(f"estate-job: sync failed ({err}); trying again in {every:g} s", flush=True)

    def heartbeat_every(self) -> float:
        """Seconds between heartbeats: the document's ``heartbeat_seconds``, else (a document from before
        heartbeats) its ``sync_seconds``."""
        return max(SYNC_FLOOR_SECONDS, float(self.job.get("heartbeat_seconds") or self.job.get("sync_seconds") or 600))

    def beating(self, stop: threading.Event) -> None:
        """The heartbeat: the current status written again every ``heartbeat_every`` seconds until ``stop``, on
        its own thread, so no download or upload holds it back (a status write never waits for the outputs'
        lock)."""
        every = self.heartbeat_every()
        while not stop.wait(every):
            try:
                self.status(self.state)
            except Exception as err:  # noqa: BLE001 - a failed heartbeat is written again at the next one
                print(f"estate-job: heartbeat failed ({type(err).__name__}); trying again in {every:g} s", flush=True)

    def capping(self, proc: subprocess.Popen, stop: threading.Event) -> None:
        """The job's ``max_hours`` as a backstop on the machine itself: at the cap, counted from this runner's
        start, the command's container is killed and the final status is ``capped``. The spend watcher
        deletes the machine at the same cap; this holds the command when the watcher stopped after the job
        started. Only the command is stopped: nothing on the machine stops its billing."""
        hours = float(self.job.get("max_hours") or 0)
        if hours <= 0:
            return
        deadline = self.started + hours * 3600
        while not stop.wait(max(0.0, min(CAP_POLL_SECONDS, deadline - now()))):
            if now() < deadline:
                continue
            if proc.poll() is not None:
                return  # the command ended on its own just before its cap: its own exit code stands
            self.capped = f"max_hours {hours:g} reached on the machine; the command was stopped"
            print(f"estate-job: {self.capped}", flush=True)
            try:
                self.stop_command(proc)
            except (OSError, subprocess.SubprocessError):
                proc.kill()  # the client at least: its output closes and the final status is written
            return

    def run(self) -> int:
        self.inputs.mkdir(parents=True, exist_ok=True)
        self.outputs.mkdir(parents=True, exist_ok=True)
        code: Optional[int] = None
        error = ""
        stop = threading.Event()
        syncer: Optional[threading.Thread] = None
        capper: Optional[threading.Thread] = None
        # The heartbeat goes on past the command's end, through the last uploads, until the final status.
        beat_stop = threading.Event()
        beat = threading.Thread(target=self.beating, args=(beat_stop,), daemon=True)
        try:
            self.status("starting")
            (self.root / "started").write_text("starting\n")  # what the start waits for (estate_start.py)
            beat.start()
            for prefix in self.job.get("inputs") or []:
                n = self.fetch(prefix, self.inputs / prefix.rstrip("/"))
                print(f"estate-job: input {prefix}: {n} objects", flush=True)
            if self.job.get("resume"):
                n = self.fetch(self.job["outputs"], self.outputs)
                self.job["resumed"] = n > 0
                print(f"estate-job: resuming from {n} objects under {self.job['outputs']}", flush=True)
            self.status("running")
            syncer = threading.Thread(target=self.syncing, args=(stop,), daemon=True)
            syncer.start()
            with open(self.log_path, "ab") as log:
                proc = self.start()
                capper = threading.Thread(target=self.capping, args=(proc, stop), daemon=True)
                capper.start()
                pump = threading.Thread(target=self.pump, args=(proc, log), daemon=True)
                pump.start()
                code = proc.wait()
                if self.container:
                    self.end_group(proc)
                pump.join(timeout=KILL_SECONDS)
        except Exception as err:  # noqa: BLE001 - any failure still reports a final status
            error = f"{type(err).__name__}: {err}"
            print(f"estate-job: {error}", flush=True)
        finally:
            stop.set()  # on every path: no sync or cap watch outlives the command
            for thread in (syncer, capper):
                if thread is not None:
                    thread.join(timeout=60)
        try:
            return self.finish(code, error)
        finally:
            beat_stop.set()
            if beat.is_alive():
                beat.join(timeout=60)

    def finish(self, code: Optional[int], error: str) -> int:
        """The last uploads and the final status, with the heartbeat still going."""
        finished = now()
        state = "succeeded" if code == 0 and not error else "failed"
        if self.capped:
            state, error = "capped", error or self.capped
        outputs: List[str] = []
        try:
            outputs = self.push_outputs()
        except Exception as err:  # noqa: BLE001
            error = error or f"uploading outputs: {err}"
            state = "capped" if self.capped else "failed"
        try:
            self.push_log()
        except Exception as err:  # noqa: BLE001
            print(f"estate-job: uploading the log failed: {err}", flush=True)
        self.final_status(state, exit_code=code, finished_at=finished, duration_s=round(finished - self.started, 3),
                          outputs=outputs, error=error or None, **({"reason": self.capped} if self.capped else {}))
        (self.root / "finished").write_text(state + "\n")
        return 0 if state == "succeeded" else 1


def main(argv: List[str]) -> int:
    if len(argv) != 2:
        print("usage: estate_job.py <job directory>", file=sys.stderr)
        return 2
    return Runner(Path(argv[1])).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
