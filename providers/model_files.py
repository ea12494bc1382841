"""The files a workload loads from its node's disk (ComfyUI's checkpoints, VAEs, text encoders): one dynamic
resource per (node, workload, file), over SSH, as the model library does Ollama's models.

- create makes sure the file is on the node with its sha256: a file already there is hashed and kept when it
  matches; otherwise curl downloads it into ``<file>.part`` (resuming a part left by an earlier attempt),
  its growth reported to ``pulumi.log`` in steps of 10 percent of the stack's ``size_gb``, its sha256
  checked before it is renamed into place. A mismatch removes the part and fails naming the file, the
  expected digest and the one downloaded.
- read stats the file. Its size and mtime as recorded after the download mean the same file, without
  reading 20 GB on every refresh; another size or mtime has the file hashed again. A file gone is reported
  gone and one with another sha256 changed, so the next ``up`` downloads it again. A node that cannot be
  reached says nothing about its files: they are kept as they were.
- update downloads again when the url or sha256 changes (same name), or when the node holds other bytes;
  a new machine (``instance``) has the file checked there and downloaded when missing.
- delete removes the file and any part of it; a file already absent is success. An unreachable node fails
  the delete, so the resource stays in state.
- While the node is powered off (``active`` false) nothing is contacted.

Every file lives on its machine and is ``deleted_with`` it (``components/node.py on_machine``): destroying
or replacing the machine never connects to it for its files.

What runs on the node is fixed text of this module; the stack's values (path, url, digest) reach it as
lines on stdin, never as code. A gated Hugging Face file goes with the workload's ``HF_TOKEN``, read on the
node from its 0600 secret env file into a 0600 header file that curl reads (``-H @file``): the token is
never on a command line, in the resource's inputs or outputs, or in a log.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import tempfile
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional

import pulumi
from pulumi.dynamic import (
    CheckFailure, CheckResult, ConfigureRequest, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult,
)

from providers import ssh_forward
from providers.host_cleanup import ssh_argv
from providers.resource import DynamicResource

PROVIDER_VERSION = "1"
STAT_TIMEOUT_SECONDS = 60.0
HASH_TIMEOUT_SECONDS = 1800.0
"""Hashing a file of tens of GB on the node's disk."""
DOWNLOAD_TIMEOUT_SECONDS = float(os.environ.get("ESTATE_DOWNLOAD_TIMEOUT_SECONDS", 6 * 3600))
SSH_FAILED = 255
"""OpenSSH's exit status when it could not connect, authenticate or verify the host (never the script's)."""
MISMATCH = 6
"""The fetch script's exit status when the download's sha256 is not the one asked for."""
NO_TOKEN = 4
DOWNLOAD_ATTEMPTS = 3
BROKEN_TRANSFER = {"18", "28", "52", "55", "56"}
"""curl's exits for a transfer cut short (partial file, timeout, empty reply, send or receive failure): the
part is resumed by the next attempt."""

_READ_INPUTS = 'IFS= read -r dest; IFS= read -r url; IFS= read -r sum; IFS= read -r token_file\n'

STAT_SCRIPT = _READ_INPUTS + """\
if [ -f "$dest" ]; then stat -c 'stat %s %Y' "$dest"; else echo absent; fi
"""

HASH_SCRIPT = _READ_INPUTS + """\
if [ -f "$dest" ]; then stat -c 'stat %s %Y' "$dest"; sha256sum "$dest" | sed 's/ .*//;s/^/sha256 /'; else echo absent; fi
"""

FETCH_SCRIPT = _READ_INPUTS + """\
set -u
part="$dest.part"
hdr=""
trap '[ -z "$hdr" ] || rm -f "$hdr"' EXIT
mkdir -p "$(dirname "$dest")" || exit 3
set --
if [ -n "$token_file" ]; then
    [ -f "$token_file" ] || { echo "no secret env file $token_file on the node (its secrets are delivered before its files)" >&2; exit 4; }
    hdr=$(umask 077 && mktemp) || exit 3
    sed -n 's/^HF_TOKEN=/Authorization: Bearer /p' "$token_file" | head -n 1 > "$hdr"
    set -- -H "@$hdr"
fi
curl -fsSL --retry 5 --retry-delay 10 -C - "$@" -o "$part" "$url" &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
    echo "size $(stat -c %s "$part" 2>/dev/null || echo 0)"
    sleep 1
done
if wait "$pid"; then :; else
    status=$?
    echo "curl exit $status" >&2
    exit 5
fi
got=$(sha256sum "$part" | sed 's/ .*//')
if [ "$got" != "$sum" ]; then
    rm -f "$part"
    echo "got sha256 $got" >&2
    exit 6
fi
mv -f "$part" "$dest" || exit 3
stat -c 'done %s %Y' "$dest"
"""

DELETE_SCRIPT = _READ_INPUTS + """\
if [ -f "$dest" ]; then rm -f "$dest" "$dest.part" && echo deleted; else rm -f "$dest.part"; echo absent; fi
"""


class ModelFileError(RuntimeError):
    pass


class Unreachable(ModelFileError):
    """SSH could not connect, authenticate or verify the node: nothing is known about its files."""


@dataclasses.dataclass(frozen=True)
class NodeSsh:
    """How the provider reaches a node's machine over SSH (the container itself on a container node)."""

    host: str
    port: int
    user: str
    host_key: str
    """The node's pinned host key: OpenSSH accepts it alone."""
    key_env: str = "ESTATE_SSH_PRIVATE_KEY"
    """Environment variable holding the private key when the config secret is not set (else the SSH agent)."""


@dataclasses.dataclass(frozen=True)
class ModelFileArgs:
    """The inputs of ``pulumi-python:dynamic/files:ModelFile``: the one place their names are written."""

    node: str
    workload: str
    path: str
    """Where the file lives on the node (a VM's host path, or inside a container node's one container)."""
    url: str
    sha256: str
    size_gb: float
    """The stack's figure: the denominator of the progress the download reports."""
    ssh: pulumi.Input[Optional[Dict[str, Any]]] = None
    """A ``NodeSsh`` as a dict (None until the machine has an SSH endpoint)."""
    token_file: Optional[str] = None
    """The node's secret env file holding ``HF_TOKEN``, for a file Hugging Face serves to a workload that has one."""
    instance: pulumi.Input[Optional[str]] = None
    """The machine's id: a new machine has the file checked (and downloaded) again."""
    active: bool = True
    """False while the node is powered off: nothing is contacted."""

    def to_props(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


REPLACE_KEYS = ("node", "workload", "path")
UPDATE_KEYS = tuple(f.name for f in dataclasses.fields(ModelFileArgs) if f.name not in REPLACE_KEYS) + ("version",)
DOWNLOAD_KEYS = ("url", "sha256")
"""A change of these downloads the file again."""
INPUT_KEYS = REPLACE_KEYS + UPDATE_KEYS


def resource_name(node: str, workload: str, kind: str, name: str) -> str:
    return f"{node}-{workload}-{kind}-{name}"


class Progress:
    """Bytes downloaded against the stack's size, reported once per 10 percent (capped at 99 until done)."""

    def __init__(self, total_bytes: float, report: Callable[[int, int], None], step: int = 10):
        self.total, self.report, self.step = max(total_bytes, 1.0), report, step
        self.last = -1

    def feed(self, done_bytes: int) -> None:
        pct = min(99, int(done_bytes * 100 // self.total))
        if self.last < 0 or pct // self.step > self.last // self.step:
            self.last = pct
            self.report(pct, done_bytes)


class NodeShell:
    """Runs this module's scripts on one node over OpenSSH with its pinned host key."""

    def __init__(self, ssh: Dict[str, Any], private_key: Optional[str]):
        if not ssh or not ssh.get("host"):
            raise Unreachable("the node has no SSH endpoint yet")
        self.target = NodeSsh(**{k: v for k, v in ssh.items() if k in {f.name for f in dataclasses.fields(NodeSsh)}})
        self.key = private_key or os.environ.get(self.target.key_env) or None

    @property
    def where(self) -> str:
        t = self.target
        return f"{t.user}@{t.host}:{int(t.port)}"

    @contextlib.contextmanager
    def _argv(self, script: str) -> Iterator[List[str]]:
        t = self.target
        with ssh_forward.credentials(t.host, int(t.port), self.key, t.host_key) as (key_file, known_hosts):
            yield ssh_argv(t.host, int(t.port), t.user, known_hosts, key_file, remote=script)

    def run(self, script: str, values: List[str], timeout: float,
            on_line: Optional[Callable[[str], None]] = None) -> subprocess.CompletedProcess:
        """``script`` with ``values`` as its stdin lines; each stdout line to ``on_line`` as it comes."""
        for v in values:
            if "\n" in v or "\r" in v or "\x00" in v:
                raise ModelFileError(f"{v!r}: a value sent to the node is one line")
        stdin = "".join(f"{v}\n" for v in values)
        with self._argv(script) as argv:
            if on_line is None:
                try:
                    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
                except subprocess.TimeoutExpired:
                    raise Unreachable(f"ssh to {self.where}: no answer in {timeout:.0f}s") from None
            else:
                done = self._stream(argv, stdin, timeout, on_line)
        if done.returncode == SSH_FAILED:
            raise Unreachable(f"ssh to {self.where} failed: {(done.stderr or '').strip() or 'exit 255'}")
        return done

    @staticmethod
    def _stream(argv: List[str], stdin: str, timeout: float, on_line: Callable[[str], None]) -> subprocess.CompletedProcess:
        with tempfile.TemporaryFile(mode="w+") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(stdin)
            proc.stdin.close()
            lines: List[str] = []
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
            try:
                for line in proc.stdout:  # ends when the remote script does (or the timer kills ssh)
                    lines.append(line)
                    on_line(line.rstrip("\n"))
                proc.wait()
            finally:
                timer.cancel()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            err.seek(0)
            return subprocess.CompletedProcess(argv, proc.returncode, "".join(lines), err.read())


def _parse(stdout: str) -> Dict[str, Any]:
    """``stat <size> <mtime>``, ``sha256 <hex>``, ``done <size> <mtime>`` or ``absent`` lines -> a dict."""
    seen: Dict[str, Any] = {}
    for line in stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("stat", "done"):
            size, mtime = rest.split()
            seen.update(size=int(size), mtime=int(mtime))
        elif word == "sha256":
            seen["digest"] = rest.strip()
        elif word == "absent":
            seen["absent"] = True
    return seen


class ModelFileProvider(ResourceProvider):
    def __init__(self) -> None:
        super().__init__()
        self._private_key: Optional[str] = None

    def configure(self, req: ConfigureRequest) -> None:
        self._private_key = req.config.get("gpu-estate:sshPrivateKey") or None

    def _shell(self, props: Dict[str, Any]) -> NodeShell:
        return NodeShell(props.get("ssh") or {}, self._private_key)

    @staticmethod
    def _values(props: Dict[str, Any]) -> List[str]:
        return [props["path"], props["url"], props["sha256"], props.get("token_file") or ""]

    def check(self, _olds: Dict[str, Any], news: Dict[str, Any]) -> CheckResult:
        failures: List[CheckFailure] = []
        for key in ("node", "workload", "path", "url"):
            if not news.get(key) or not isinstance(news.get(key), str):
                failures.append(CheckFailure(key, f"a non-empty string (got {news.get(key)!r})"))
        sha = news.get("sha256")
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            failures.append(CheckFailure("sha256", f"64 lower-case hex digits (got {sha!r})"))
        if isinstance(news.get("path"), str) and not news["path"].startswith("/"):
            failures.append(CheckFailure("path", f"an absolute path on the node (got {news['path']!r})"))
        return CheckResult({**news, "version": PROVIDER_VERSION}, failures)

    def diff(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> DiffResult:
        replaces = [k for k in REPLACE_KEYS if olds.get(k) != news.get(k)]
        changed = [k for k in UPDATE_KEYS if olds.get(k) != news.get(k)]
        if news.get("active") and olds.get("digest") and olds.get("digest") != olds.get("sha256"):
            changed.append("digest")  # a refresh found other bytes on the node
        return DiffResult(changes=bool(replaces or changed), replaces=replaces, stables=["node", "workload"],
                          delete_before_replace=False)

    # -- the work ---------------------------------------------------------------------------------------
    def _ensure(self, props: Dict[str, Any], known: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        """The file on the node with its sha256. ``known``: the size and mtime recorded for these bytes, which
        spare hashing a file still as it was."""
        node, path = props["node"], props["path"]
        outs = {k: props.get(k) for k in INPUT_KEYS}
        if not props.get("active"):
            pulumi.log.info(f"{node}: powered off; {path} stays as it is on the node's disk")
            return {**outs, **{k: (known or {}).get(k) for k in ("digest", "size", "mtime")}}
        shell = self._shell(props)
        values = self._values(props)
        now = _parse(self._checked(shell.run(STAT_SCRIPT, values, STAT_TIMEOUT_SECONDS), node, path).stdout)
        if not now.get("absent"):
            if known and now.get("size") == known.get("size") and now.get("mtime") == known.get("mtime") \
                    and known.get("digest") == props["sha256"]:
                return {**outs, "digest": props["sha256"], "size": now["size"], "mtime": now["mtime"]}
            hashed = _parse(self._checked(shell.run(HASH_SCRIPT, values, HASH_TIMEOUT_SECONDS), node, path).stdout)
            if hashed.get("digest") == props["sha256"]:
                pulumi.log.info(f"{node}: {path} is already there with its sha256")
                return {**outs, "digest": hashed["digest"], "size": hashed["size"], "mtime": hashed["mtime"]}
            if hashed.get("digest"):
                pulumi.log.info(f"{node}: {path} holds sha256 {hashed['digest'][:12]}, not {props['sha256'][:12]}; "
                                "downloading it again")
        done = self._download(shell, props)
        return {**outs, "digest": props["sha256"], "size": done["size"], "mtime": done["mtime"]}

    @staticmethod
    def _checked(run: subprocess.CompletedProcess, node: str, path: str) -> subprocess.CompletedProcess:
        if run.returncode != 0:
            raise ModelFileError(f"{node}: reading {path} failed: {(run.stderr or '').strip() or f'exit {run.returncode}'}")
        return run

    def _download(self, shell: NodeShell, props: Dict[str, Any]) -> Dict[str, Any]:
        node, path, url, want = props["node"], props["path"], props["url"], props["sha256"]
        name = os.path.basename(path)
        size_gb = float(props.get("size_gb") or 0)
        progress = Progress(size_gb * 1e9, lambda pct, done: pulumi.log.info(
            f"{node}: downloading {name}: {pct}% ({done / 1e9:.2f} of ~{size_gb:g} GB)"))
        pulumi.log.info(f"{node}: downloading {name} from {url} into {os.path.dirname(path)}")

        def line(text: str) -> None:
            word, _, rest = text.partition(" ")
            if word == "size" and rest.strip().isdigit():
                progress.feed(int(rest))

        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            run = shell.run(FETCH_SCRIPT, self._values(props), DOWNLOAD_TIMEOUT_SECONDS, on_line=line)
            err = (run.stderr or "").strip()
            cut = run.returncode == 5 and err.rpartition("curl exit ")[2].strip() in BROKEN_TRANSFER
            if not cut or attempt == DOWNLOAD_ATTEMPTS:
                break
            pulumi.log.warn(f"{node}: downloading {name} broke off ({err.splitlines()[0] if err else 'no reason'}); "
                            f"resuming it (attempt {attempt + 1} of {DOWNLOAD_ATTEMPTS})")
        if run.returncode == MISMATCH:
            got = err.rpartition("got sha256 ")[2].split()[0] if "got sha256 " in err else "another digest"
            raise ModelFileError(f"{node}: {name} downloaded from {url} has sha256 {got}, not the expected {want} "
                                 f"(checkpoints[].sha256): the download was removed and nothing was put in place")
        if run.returncode == NO_TOKEN:
            raise ModelFileError(f"{node}: {name}: {err}")
        if run.returncode != 0:
            raise ModelFileError(f"{node}: downloading {name} from {url} failed ({err or f'exit {run.returncode}'}); "
                                 "a gated file needs a token whose account accepted its licence. The part kept on "
                                 "the node is resumed by the next `up`")
        done = _parse(run.stdout)
        if "size" not in done:
            raise ModelFileError(f"{node}: downloading {name}: the node did not report the file in place")
        progress.report(100, done["size"])
        return done

    # -- the resource's operations ---------------------------------------------------------------------
    def create(self, props: Dict[str, Any]) -> CreateResult:
        outs = self._ensure(props, known=None)
        return CreateResult(f"{props['node']}/{props['workload']}:{props['path']}", outs)

    def update(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> UpdateResult:
        same_bytes = all(olds.get(k) == news.get(k) for k in DOWNLOAD_KEYS) and olds.get("instance") == news.get("instance")
        known = {k: olds.get(k) for k in ("digest", "size", "mtime")} if same_bytes else None
        if olds.get("digest") and olds.get("digest") != olds.get("sha256"):
            pulumi.log.info(f"{news['node']}: {news['path']} holds sha256 {str(olds['digest'])[:12]} on the node, not "
                            f"the {str(olds.get('sha256'))[:12]} downloaded; downloading it again")
            known = None
        return UpdateResult(self._ensure(news, known))

    def read(self, id_: str, props: Dict[str, Any]) -> ReadResult:
        if not props.get("active"):
            return ReadResult(id_, props)
        try:
            shell = self._shell(props)
            values = self._values(props)
            now = _parse(self._checked(shell.run(STAT_SCRIPT, values, STAT_TIMEOUT_SECONDS),
                                       props["node"], props["path"]).stdout)
            if now.get("absent"):
                return ReadResult("", {})  # the node answered and the file is not there
            if now.get("size") == props.get("size") and now.get("mtime") == props.get("mtime"):
                return ReadResult(id_, props)  # as it was after the download: not read again
            hashed = _parse(self._checked(shell.run(HASH_SCRIPT, values, HASH_TIMEOUT_SECONDS),
                                          props["node"], props["path"]).stdout)
        except Unreachable as err:
            # Not seeing the node is not the node saying the file is gone (it may be stopped or booting):
            # keep it as it was. If the machine itself is gone, its instance's refresh says so.
            pulumi.log.warn(f"{props.get('node')}: cannot reach the node ({err}); keeping {props.get('path')} in "
                            "state as it was")
            return ReadResult(id_, props)
        if hashed.get("absent"):
            return ReadResult("", {})
        return ReadResult(id_, {**props, "digest": hashed.get("digest"), "size": hashed.get("size"),
                                "mtime": hashed.get("mtime")})

    def delete(self, _id: str, props: Dict[str, Any]) -> None:
        node, path = props["node"], props["path"]
        if not props.get("active"):
            pulumi.log.info(f"{node}: powered off; {path} is left on its disk")
            return
        try:
            run = self._shell(props).run(DELETE_SCRIPT, self._values(props), STAT_TIMEOUT_SECONDS)
        except Unreachable as err:
            raise ModelFileError(f"{node}: could not delete {path}: {err}. It stays in state; if the node itself "
                                 "is gone, `pulumi refresh` drops its files") from err
        if run.returncode != 0:
            raise ModelFileError(f"{node}: deleting {path} failed: {(run.stderr or '').strip() or run.returncode}")
        if "absent" in run.stdout:
            pulumi.log.info(f"{node}: {path} was already gone")


class ModelFile(DynamicResource, module="files", name="ModelFile"):
    """One file a workload loads, on one node: ``pulumi-python:dynamic/files:ModelFile``."""

    digest: pulumi.Output[Optional[str]]
    size: pulumi.Output[Optional[int]]

    def __init__(self, name: str, args: ModelFileArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(ModelFileProvider(), name,
                         {"digest": None, "size": None, "mtime": None, "version": PROVIDER_VERSION,
                          **args.to_props()}, opts)
