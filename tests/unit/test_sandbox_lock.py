"""Two sandboxes on one machine take turns with the VM node instead of wiping it under each other."""
import subprocess
import sys

import sandbox
from tests import ROOT


def test_a_second_sandbox_waits_for_the_vm_node_until_the_first_lets_go(tmp_path):
    # A lock file of the test's own: the machine's real one may be held by a sandbox running beside it.
    lock = str(tmp_path / "vm-node.lock")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, sandbox\n"
         f"with sandbox._vm_node_lock(sandbox.Path({lock!r})):\n"
         "    print('held', flush=True)\n"
         "    sys.stdin.readline()\n"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        waiter = subprocess.Popen(
            [sys.executable, "-c",
             "import sandbox\n"
             f"with sandbox._vm_node_lock(sandbox.Path({lock!r})):\n"
             "    print('got it', flush=True)\n"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert waiter.stdout.readline().strip().startswith("waiting for the VM node")
        assert waiter.poll() is None  # still waiting while the first one holds the machine
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert waiter.stdout.readline().strip() == "got it"
        assert waiter.wait(timeout=30) == 0
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_registry_port_already_taken_is_named_not_served_by_whatever_holds_it():
    """A server left on the registry's port by a killed run would answer the start's wait in its place."""
    import socket

    import pytest

    from sandbox import registry
    from tests.conftest import required_or_skip

    required_or_skip(registry.missing(), "the loopback registry")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(RuntimeError, match=rf"127\.0\.0\.1:{port} is already taken"):
            registry.LoopbackRegistry(port=port)
