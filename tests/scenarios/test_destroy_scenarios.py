"""Destroy removes everything that bills whatever else fails, through the real engine on the sandbox: the
gateway's owned host unreachable, a local gateway and spend watcher that will not stop, and a killed `up`
(whose processes must all be gone within seconds). Each ends with nothing billing on the loopback clouds."""
import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
import yaml

import sandbox
from loopback import sshd as loopback_sshd

pytestmark = [
    pytest.mark.engine,
    pytest.mark.money,
    pytest.mark.skipif(bool(sandbox.engine_missing()), reason=sandbox.engine_missing()),
]
NOTHING = {"tensordock": 0, "vastai": 0, "runpod": 0}
GATEWAY = "pulumi-python:dynamic/gateway:Local"
WATCHER = "pulumi-python:dynamic/spend:LocalWatcher"
FREEZER = Path("/sys/fs/cgroup/freezer")


def nothing_bills(fakes) -> None:
    assert sandbox.alive(fakes) == NOTHING  # machines, pods and (RunPod's) serverless endpoints
    assert fakes["runpod"].endpoints == {}
    assert fakes["fly"].apps == {}  # the Fly.io service's Machine, volume and app


def resources(st, typ: Optional[str] = None) -> List[dict]:
    return [r for r in st.export_stack().deployment.get("resources") or [] if typ is None or r["type"] == typ]


# -- a host the estate does not rent, in a box ------------------------------------------------------------

def owned_host_missing() -> str:
    """Why no owned host can be boxed here (the loopback sshd, a mount namespace with an overlay on /etc), or ''."""
    why = loopback_sshd.missing()
    if why:
        return why
    if not shutil.which("unshare"):
        return "no unshare (util-linux)"
    probe = Path(f"/tmp/estate-overlay-probe-{uuid.uuid4().hex[:8]}")
    try:
        for d in ("upper", "work"):
            (probe / d).mkdir(parents=True)
        run = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                              f"mount -t overlay overlay -o lowerdir=/etc,upperdir={probe}/upper,"
                              f"workdir={probe}/work /etc"], capture_output=True, text=True)
        return "" if run.returncode == 0 else f"no overlay mount in a mount namespace here: {run.stderr.strip()}"
    finally:
        shutil.rmtree(probe, ignore_errors=True)


class OwnedHost:
    """A host the estate does not rent (``provider: host``), reached at the loopback sshd. Its sessions run
    on this machine with ``/etc`` under an overlay kept in ``box`` (what the gateway writes to
    ``/etc/estate/gateway`` and ``/etc/systemd/system`` lands in ``box/upper``), with ``systemctl`` and
    ``useradd`` recording their calls, ``curl`` and ``docker`` standing in for LiteLLM's readiness and the front's
    reload, and ``apt-get`` refused (nothing leaves 127.0.0.1)."""

    def __init__(self, box: Path):
        self.box = box
        for d in ("upper", "work", "bin"):
            (box / d).mkdir(parents=True, exist_ok=True)
        for tool, body in (("systemctl", f'echo "$*" >> {box}/systemctl.log'),
                           ("useradd", f'echo "$*" >> {box}/useradd.log'),
                           # No LiteLLM answers on the boxed host: its readiness passes, the front's reload is recorded.
                           ("curl", "exit 0"), ("docker", f'echo "$*" >> {box}/docker.log'),
                           ("apt-get", 'echo "apt-get: refused on the boxed host" >&2; exit 1')):
            (box / "bin" / tool).write_text(f"#!/bin/sh\n{body}\n")
            (box / "bin" / tool).chmod(0o755)
        wrapper = box / "session.sh"
        wrapper.write_text(f"""#!/bin/sh
exec unshare --mount --propagation private /bin/sh -c '
mount -t overlay overlay -o lowerdir=/etc,upperdir={box}/upper,workdir={box}/work /etc || exit 254
PATH={box}/bin:$PATH exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"'
""")
        wrapper.chmod(0o755)
        self.sshd = loopback_sshd.LoopbackSshd(box / "sshd")
        self.sshd.stop()
        config = self.sshd.dir / "sshd_config"
        config.write_text(config.read_text() + f"ForceCommand {wrapper}\n")
        self.sshd.start()

    def file(self, path: str) -> Optional[str]:
        """A file the host's sessions wrote under ``/etc``."""
        found = self.box / "upper" / Path(path).relative_to("/etc")
        return found.read_text() if found.exists() else None

    def systemctl(self) -> str:
        log = self.box / "systemctl.log"
        return log.read_text() if log.exists() else ""

    def run_as_operator(self, command: str, private_key: str) -> subprocess.CompletedProcess:
        """``command`` (an ``ssh -p ...`` line) run by a shell here, its ``ssh`` given this host's pinned key
        and the client key, as an operator's own known_hosts and agent would."""
        known = self.box / "known_hosts"
        known.write_text(f"[127.0.0.1]:{self.sshd.port} {' '.join(self.sshd.host_public_key.split()[:2])}\n")
        key = self.box / "operator_key"
        key.write_text(private_key)
        key.chmod(0o600)
        options = f"ssh -T -o BatchMode=yes -o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes -i {key} "
        return subprocess.run(["sh", "-c", options + command.removeprefix("ssh ")], capture_output=True, text=True,
                              timeout=60)

    def close(self) -> None:
        self.sshd.close()


RANDOM_STAND_IN = '''"""A stand-in for pulumi_random in this project copy: this machine has no pulumi-resource-random plugin
(the Go module proxy does not serve pulumi-random, and nothing else may be downloaded here). The gateway's
master key, all it is used for in this stack, comes from a dynamic resource with RandomPassword's result."""
import secrets
import string

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource, ResourceProvider


class _Password(ResourceProvider):
    def create(self, props):
        alphabet = string.ascii_letters + string.digits
        result = "".join(secrets.choice(alphabet) for _ in range(int(props["length"])))
        return CreateResult(f"password-{secrets.token_hex(4)}", {**props, "result": result})

    def read(self, id_, props):
        return ReadResult(id_, props)


class RandomPassword(Resource, module="random", name="Password"):
    result: pulumi.Output[str]

    def __init__(self, name, length, special=False, opts=None):
        super().__init__(_Password(), name, {"length": length, "special": special, "result": None},
                         pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                             additional_secret_outputs=["result"])))
'''


def random_plugin_missing() -> bool:
    return not (sandbox.PULUMI_BIN / "pulumi-resource-random").exists() and not shutil.which("pulumi-resource-random")


def gateway_over_ssh(work: Path, host: OwnedHost) -> None:
    """The sandbox stack with its gateway deployed over SSH to the owned host ``gw`` (as prod's ``vps``).
    Where pulumi-random's plugin is missing, the copy's master key comes from a stand-in (``RANDOM_STAND_IN``)."""
    if random_plugin_missing():
        (work / "pulumi_random").mkdir()
        (work / "pulumi_random" / "__init__.py").write_text(RANDOM_STAND_IN)
    path = work / "Pulumi.sandbox.yaml"
    doc = yaml.safe_load(path.read_text())
    cfg = doc["config"]
    cfg["gpu-estate:nodes"]["gw"]["ssh"] = {
        "port": host.sshd.port, "user": host.sshd.user,
        "host_key": " ".join(host.sshd.host_public_key.split()[:2])}
    cfg["gpu-estate:gateway"].update(deploy="ssh", port=4000)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture
def owned_gateway(tmp_path):
    why = owned_host_missing()
    if why:
        pytest.skip(f"the owned gateway host cannot be boxed here: {why}")
    work = sandbox.project_copy(tmp_path / "project")
    host = OwnedHost(tmp_path / "host")
    try:
        gateway_over_ssh(work, host)
        with sandbox.fake_clouds() as fakes, sandbox.ssh_agent(host.sshd.private_key) as agent:
            st = sandbox.stack(sandbox.engine_env(fakes, tmp_path / "engine", agent), work_dir=work)
            try:
                st.up()
                yield st, fakes, host
            finally:
                if resources(st):  # a failed scenario still leaves nothing behind
                    host.sshd.start() if not host.sshd.answers() else None
                    with contextlib.suppress(Exception):
                        st.destroy()
    finally:
        host.close()


def test_destroy_with_the_gateway_host_unreachable_removes_everything_that_bills(owned_gateway):
    st, fakes, host = owned_gateway
    assert all(sandbox.alive(fakes).values())
    config = host.file("/etc/estate/gateway/config.yaml")
    assert config and "model_list" in config  # the gateway was deployed over SSH to the owned host
    assert "restart" in host.systemctl() and "estate-litellm-blue.service" in host.systemctl()
    deployed = host.systemctl()
    host.sshd.stop()  # the VPS is down (or its address changed) at destroy time
    out: List[str] = []
    st.destroy(on_output=out.append)
    nothing_bills(fakes)
    assert resources(st) == []  # the commands on the host left the state with the rest
    text = "\n".join(out)
    # The warning names the host, exactly what is left there, and how to remove it.
    port = host.sshd.port
    assert f"gw: root@127.0.0.1:{port} could not be reached over SSH" in text, text
    assert "Left on that host: the gateway's systemd units" in text and "estate-litellm-blue.service" in text
    assert "/etc/estate/gateway/gateway.env" in text and "The destroy goes on." in text
    assert host.file("/etc/estate/gateway/config.yaml") == config  # left where it said
    assert host.systemctl() == deployed  # nothing reached the host
    # The command it gave removes all of it once the host answers (run as printed, with this test's
    # known_hosts and key in place of the operator's).
    given = text.split("Diagnostics:", 1)[1]
    command = "\n".join(line[4:] if line.startswith("    ") else line for line in
                        given[given.index("ssh -p"):given.index("The destroy goes on.")].splitlines()).strip()
    assert command.startswith(f"ssh -p {port} root@127.0.0.1 ")
    host.sshd.start()
    done = host.run_as_operator(command, host.sshd.private_key)
    assert done.returncode == 0, done.stderr
    assert host.file("/etc/estate/gateway/config.yaml") is None
    assert host.file("/etc/estate/gateway/gateway.env") is None
    assert "disable --now" in host.systemctl() and "estate-litellm-blue.service" in host.systemctl().split("disable")[-1]


def test_destroy_with_the_gateway_host_answering_removes_the_gateway_there_too(owned_gateway):
    st, fakes, host = owned_gateway
    assert host.file("/etc/estate/gateway/config.yaml")
    out: List[str] = []
    st.destroy(on_output=out.append)
    nothing_bills(fakes)
    assert "could not be reached" not in "\n".join(out)
    # The cleanup ran the commands' delete scripts there: units disabled, files and secrets gone.
    assert host.file("/etc/estate/gateway/config.yaml") is None
    assert host.file("/etc/estate/gateway/gateway.env") is None
    assert host.file("/etc/systemd/system/estate-litellm-blue.service") is None
    stopped = host.systemctl().split("disable --now", 1)
    assert len(stopped) == 2 and "estate-litellm-blue.service" in stopped[1]


# -- processes on this machine ------------------------------------------------------------------------------

def processes() -> Dict[int, Tuple[int, int, str, str, str]]:
    """pid -> (parent pid, process group, start time, state, command line) of every process, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        found[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[19], fields[0], cmdline)
    return found


def running(snapshot: Dict[int, Tuple[str, str]]) -> Dict[int, str]:
    """Those of ``snapshot`` (pid -> (start time, command line)) still running: the same process, no zombie."""
    now = processes()
    return {pid: cmd for pid, (started, cmd) in snapshot.items()
            if pid in now and now[pid][2] == started and now[pid][3] != "Z"}


def eventually(check, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def freezer_missing() -> str:
    """Why no process can be frozen here (the cgroup v1 freezer, writable), or ''."""
    if not (FREEZER / "freezer.state").exists() and not FREEZER.is_dir():
        return f"no cgroup v1 freezer at {FREEZER}"
    probe = FREEZER / f"gpu-estate-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as err:
        return f"cannot make a freezer cgroup: {err}"
    return ""


@contextlib.contextmanager
def frozen(groups: List[int]) -> Iterator[List[int]]:
    """Every process of the process groups ``groups``, frozen (cgroup v1 freezer): signals, SIGKILL included,
    stay pending until they are thawed, as with a process stuck in the kernel on a hung disk or mount.
    Thawed on the way out, when the pending SIGKILL of a stop ends them."""
    cgroup = FREEZER / f"gpu-estate-test-{uuid.uuid4().hex[:8]}"
    cgroup.mkdir()
    members = [pid for pid, seen in processes().items() if seen[1] in groups and seen[3] != "Z"]
    try:
        for pid in members:
            (cgroup / "cgroup.procs").write_text(str(pid))
        (cgroup / "freezer.state").write_text("FROZEN")
        assert eventually(lambda: (cgroup / "freezer.state").read_text().strip() == "FROZEN", 10)
        yield members
    finally:
        (cgroup / "freezer.state").write_text("THAWED")
        for pid in members:  # whatever no stop ended is ended here
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        eventually(lambda: not (cgroup / "cgroup.procs").read_text().split(), 10)
        with contextlib.suppress(OSError):
            cgroup.rmdir()


def test_destroy_with_a_local_gateway_and_watcher_that_will_not_stop_removes_everything_that_bills(tmp_path):
    why = freezer_missing()
    if why:
        pytest.skip(f"no process can be made unstoppable here: {why}")
    work = sandbox.project_copy(tmp_path / "project")
    with sandbox.fake_clouds() as fakes:
        st = sandbox.stack(sandbox.engine_env(fakes, tmp_path / "engine"), work_dir=work)
        st.up()
        try:
            (gateway,) = resources(st, GATEWAY)
            (watcher,) = resources(st, WATCHER)
            pids = {"gateway": int(gateway["outputs"]["pid"]), "watcher": int(watcher["outputs"]["pid"])}
            with frozen(list(pids.values())) as members:
                snapshot = {pid: (processes()[pid][2], processes()[pid][4]) for pid in members}
                out: List[str] = []
                started = time.monotonic()
                st.destroy(on_output=out.append)
                took = time.monotonic() - started
                nothing_bills(fakes)
                assert resources(st) == []
                text = "\n".join(out)
                state_dir = gateway["outputs"]["state_dir"]
                assert (f"gateway: LiteLLM (pid {pids['gateway']}) did not stop; it is left running on this machine "
                        f"({gateway['outputs']['url']}, files in {state_dir})") in text, text
                assert f"spend: the watcher (pid {pids['watcher']}) did not stop" in text
                assert f"ledger in {state_dir}" in text
                assert f"kill -9 -{pids['gateway']}" in text and "The destroy goes on." in text
                assert set(running(snapshot)) == set(members)  # left exactly as the warnings say
            # Thawed, the stop's pending SIGKILL ends them.
            assert eventually(lambda: not running(snapshot), 15), running(snapshot)
            print(f"destroy with the gateway and watcher unstoppable: {took:.1f} s")
        finally:
            if resources(st):
                with contextlib.suppress(Exception):
                    st.destroy()


def test_destroy_after_a_killed_up_leaves_nothing_running_and_nothing_billing(tmp_path):
    """``pulumi up`` SIGKILLed while the local gateway starts; within seconds no process of that run runs
    (language host, program, provider host, command provider, LiteLLM, spend watcher); the next `up` (after
    `pulumi cancel`, which a diy backend's lock of the killed run needs) rents nothing twice; destroy leaves
    nothing billing and nothing running."""
    work = sandbox.project_copy(tmp_path / "project")
    with sandbox.fake_clouds() as fakes:
        env = sandbox.engine_env(fakes, tmp_path / "engine")
        st = sandbox.stack(env, work_dir=work)
        log = tmp_path / "killed-up.log"
        with open(log, "w") as out:
            cli = subprocess.Popen([str(sandbox.PULUMI_BIN / "pulumi"), "up", "--yes", "--skip-preview",
                                    "--non-interactive", "--stack", "sandbox"],
                                   cwd=work, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
        try:
            def litellm_started() -> bool:
                return any("litellm" in seen[4] and str(work) in seen[4] and seen[3] != "Z"
                           for seen in processes().values())

            assert eventually(lambda: litellm_started() or cli.poll() is not None, 180), log.read_text()[-3000:]
            assert cli.poll() is None, f"the up ended before it could be killed:\n{log.read_text()[-3000:]}"
            # Everything of this run: the CLI's descendants (LiteLLM and the watcher are the provider host's).
            table = processes()
            run: Dict[int, Tuple[str, str]] = {}
            parents = {cli.pid}
            while True:
                more = {pid for pid, seen in table.items() if seen[0] in parents and pid not in parents}
                if not more:
                    break
                parents |= more
            run = {pid: (table[pid][2], table[pid][4]) for pid in parents - {cli.pid} if table[pid][3] != "Z"}
            kinds = " ".join(cmd for _, cmd in run.values())
            for part in ("pulumi-language-python ", "providers.dynamic_host", "litellm", "agents.spend"):
                assert part in kinds, f"{part} not among the run's processes: {kinds}"
            cli.send_signal(signal.SIGKILL)
            cli.wait()
            killed = time.monotonic()
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        assert eventually(lambda: not running(run), 15), f"still running after the kill: {running(run)}"
        gone_after = time.monotonic() - killed
        try:
            from pulumi.automation import errors

            try:
                st.up()
            except errors.ConcurrentUpdateError:
                st.cancel()  # the killed run's lock (a diy backend keeps it until cancelled)
                st.up()
            # One machine per node, the serverless endpoint and one Fly Machine: the killed run's creates
            # were adopted.
            assert sandbox.alive(fakes) == {"tensordock": 1, "vastai": 1, "runpod": 2}
            assert [len([m for m in a["machines"].values() if m["state"] != "destroyed"])
                    for a in fakes["fly"].apps.values()] == [1]
        finally:
            st.destroy()
        nothing_bills(fakes)
        assert resources(st) == []
        leftover = {pid: seen[4] for pid, seen in processes().items() if str(work) in seen[4] and seen[3] != "Z"}
        assert leftover == {}
        print(f"killed up: {len(run)} processes of the run, none left {gone_after:.1f} s after the kill")
