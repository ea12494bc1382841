"""The health agent's pgvector probe against Debian's real PostgreSQL: the protocol's first exchange, with no
driver, passes on a server accepting the estate's database (it asks for SCRAM authentication), fails naming
the server's refusal where pg_hba.conf rejects the role, and fails on a stopped server."""
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

import sandbox
from agents import health as agent
from providers.local import spawn, stop_process
from providers.wait import wait_for, within

PROBE = {"type": "postgres", "user": "estate", "database": "vectors"}


def postgres_or_skip() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    why = "" if found and shutil.which("runuser") else "no PostgreSQL server: scripts/install-tools.sh installs Debian's postgresql"
    if why:
        if sandbox.vm_required():
            pytest.fail(f"PostgreSQL must run here: {why}")
        pytest.skip(why)
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def postgres():
    bin_dir = postgres_or_skip()
    home = Path(tempfile.mkdtemp(prefix="estate-pg-"))  # postgres runs as its own user, which /tmp/pytest-of-root hides
    try:
        home.chmod(0o755)
        (home / "pw").write_text("estate-test-password\n")
        shutil.chown(home, "postgres")
        shutil.chown(home / "pw", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(home / "data"), "-U", "estate",
                        "--auth=scram-sha-256", f"--pwfile={home / 'pw'}"], check=True, capture_output=True, timeout=180)
        (home / "data" / "pg_hba.conf").write_text("host all nobody 127.0.0.1/32 reject\n"
                                                   "host all all 127.0.0.1/32 scram-sha-256\n")
        port = free_port()
        proc = spawn([*as_postgres, str(bin_dir / "postgres"), "-D", str(home / "data"), "-p", str(port),
                      "-h", "127.0.0.1", "-k", str(home / "data")], dict(os.environ), home / "server.log", home)
        try:
            wait_for(lambda: listening(port), bool, within(60), 0.3, "PostgreSQL listening")
            yield {"url": f"http://127.0.0.1:{port}", "pid": proc.pid, "log": home / "server.log"}
        finally:
            stop_process(proc.pid, grace=20)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_the_probe_passes_on_postgres_and_names_its_refusal(postgres):
    assert agent.probe(postgres["url"], PROBE, 5) == "asks for authentication"
    with pytest.raises(agent.ProbeFailed, match=r"Postgres refused the startup: .*pg_hba.conf rejects connection"):
        agent.probe(postgres["url"], {**PROBE, "user": "nobody"}, 5)
    stop_process(postgres["pid"], grace=20)
    with pytest.raises(OSError):
        agent.probe(postgres["url"], PROBE, 2)
