"""The processes the program leaves running on this machine (``providers.local``): a zombie is not running,
a process that will not stop is named and left instead of holding a destroy back, and a provider host
whose engine died stops what it started and exits."""
import os
import signal
import subprocess
import sys
import textwrap
import time

from providers import local as process


def wait_for(check, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_a_zombie_another_parent_does_not_reap_is_not_running(tmp_path):
    # A parent that never reaps: its killed child stays a zombie, as the local gateway did under a
    # provider host of a killed `up` (the "LiteLLM (pid ...) is still running").
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import os, sys, time
        pid = os.fork()
        if pid == 0:
            time.sleep(600)
            os._exit(0)
        print(pid, flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert process.alive(child)
        os.kill(child, signal.SIGKILL)
        assert wait_for(lambda: process._zombie(child))
        assert not process.alive(child)
        assert process.delete_process(child, "gateway: LiteLLM", "here", warn=pytest_fail)
    finally:
        parent.kill()
        parent.wait()


def pytest_fail(message):
    raise AssertionError(f"unexpected warning: {message}")


def test_a_process_that_will_not_stop_is_named_and_left(tmp_path, monkeypatch):
    proc = process.spawn([sys.executable, "-c", "import time; time.sleep(600)"], os.environ, tmp_path / "log", tmp_path)
    try:
        monkeypatch.setattr(process.os, "killpg", lambda pid, sig: None)  # the signals change nothing
        monkeypatch.setattr(process, "STOP_SECONDS", 0.2)
        warned = []
        # As the state holds it: a float.
        assert not process.delete_process(float(proc.pid), "spend: the watcher", f"ledger in {tmp_path}", warned.append)
        (message,) = warned
        assert f"spend: the watcher (pid {proc.pid}) did not stop" in message
        assert f"ledger in {tmp_path}" in message and f"kill -9 -{proc.pid}" in message
    finally:
        monkeypatch.undo()
        proc.kill()
        proc.wait()


def test_a_provider_host_whose_engine_died_stops_what_it_started_and_exits(tmp_path):
    """An 'engine' that starts a host and is SIGKILLed: the host notices it was re-parented, stops the
    process it had spawned (in a session of its own, as the local gateway is) and exits."""
    host = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(process.__file__).rsplit("/agents/", 1)[0]!r})
        from providers import local as process
        process.follow_engine(every=0.1)
        child = process.spawn([sys.executable, "-c", "import time; time.sleep(600)"], os.environ,
                              __import__("pathlib").Path({str(tmp_path / "child.log")!r}), __import__("pathlib").Path("."))
        print(os.getpid(), child.pid, flush=True)
        time.sleep(600)
    """)
    engine = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import subprocess, sys, time
        host = subprocess.Popen([sys.executable, "-c", {host!r}], stdout=sys.stdout)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        host_pid, child_pid = map(int, engine.stdout.readline().split())
        assert process.alive(host_pid) and process.alive(child_pid)
        time.sleep(0.5)
        assert process.alive(host_pid) and process.alive(child_pid)  # the engine lives: nothing happens
        engine.kill()
        engine.wait()
        assert wait_for(lambda: not process.alive(child_pid) and not process.alive(host_pid))
    finally:
        for pid in (locals().get("host_pid"), locals().get("child_pid")):
            if pid and process.alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_killed_engine_s_host_stops_even_with_its_stderr_a_dead_pipe_and_interrupts_the_language_host(tmp_path):
    """As under a real SIGKILLed CLI: the host's stderr is a pipe only the engine read (a write there fails
    once it is gone, which ended the watch before anything was stopped), and the engine's language host,
    started before the host and named ``pulumi-language-*``, is interrupted instead of waiting for its
    five-minute health check."""
    host = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(process.__file__).rsplit("/agents/", 1)[0]!r})
        from providers import local as process
        process.follow_engine(every=0.1)
        child = process.spawn([sys.executable, "-c", "import time; time.sleep(600)"], os.environ,
                              __import__("pathlib").Path({str(tmp_path / "child.log")!r}), __import__("pathlib").Path("."))
        print(os.getpid(), child.pid, file=open({str(tmp_path / "pids")!r}, "w"), flush=True)
        time.sleep(600)
    """)
    language = "import sys, time; print('serving', flush=True); time.sleep(600)"  # SIGINT ends it, as Go's host
    engine = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import subprocess, sys, time
        lang = subprocess.Popen(["pulumi-language-python", "-c", {language!r}], executable=sys.executable,
                                stdout=subprocess.PIPE)
        lang.stdout.readline()
        print(lang.pid, flush=True)
        host = subprocess.Popen([sys.executable, "-c", {host!r}], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        lang_pid = int(engine.stdout.readline())
        assert wait_for(lambda: (tmp_path / "pids").exists() and (tmp_path / "pids").read_text().strip())
        host_pid, child_pid = map(int, (tmp_path / "pids").read_text().split())
        time.sleep(0.5)
        assert all(process.alive(p) for p in (lang_pid, host_pid, child_pid))  # the engine lives: nothing happens
        engine.kill()
        engine.wait()
        assert wait_for(lambda: not any(process.alive(p) for p in (lang_pid, host_pid, child_pid)))
    finally:
        for pid in (locals().get("lang_pid"), locals().get("host_pid"), locals().get("child_pid")):
            if pid and process.alive(pid):
                os.kill(pid, signal.SIGKILL)
