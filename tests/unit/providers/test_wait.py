"""The one wait helper every poll loop uses (providers/wait.py)."""
import time

import pytest

from providers.wait import WaitTimeout, wait_for, within


def test_a_value_accepted_on_the_first_read_returns_at_once_without_sleeping(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail("slept"))
    reads = []
    assert wait_for(lambda: reads.append(1) or "ready", lambda v: v == "ready", within(10), 5, "x") == "ready"
    assert reads == [1]


def test_reads_until_accepted_and_returns_the_accepted_value():
    values = iter(["pending", "pending", "running"])
    seen = []
    out = wait_for(lambda: next(values), lambda v: v == "running", within(5), 0.001, "boot", on_retry=seen.append)
    assert out == "running" and seen == ["pending", "pending"]


def test_past_the_deadline_it_raises_naming_what_and_the_last_value():
    n = iter(range(1000000))
    start = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"machine 7 running: .*last seen: \d+") as err:
        wait_for(lambda: next(n), lambda v: False, within(0.05), 0.01, "machine 7 running")
    assert err.value.what == "machine 7 running" and isinstance(err.value.last, int) and err.value.last >= 1
    assert time.monotonic() - start < 1


def test_a_deadline_already_passed_still_reads_once():
    assert wait_for(lambda: 3, lambda v: v == 3, within(-1), 1, "x") == 3
    with pytest.raises(WaitTimeout):
        wait_for(lambda: 2, lambda v: v == 3, within(-1), 1, "x")


def test_it_never_sleeps_past_the_deadline(monkeypatch):
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    with pytest.raises(WaitTimeout):
        wait_for(lambda: 0, lambda v: False, within(0.0001), 60, "x")
    assert all(s <= 0.0001 for s in slept)


def test_an_exception_from_read_ends_the_wait_at_once():
    calls = []

    def read():
        calls.append(1)
        raise KeyError("vanished")

    with pytest.raises(KeyError, match="vanished"):
        wait_for(read, lambda v: True, within(10), 0.001, "x")
    assert calls == [1]


def test_pause_replaces_the_sleep_and_sees_the_refused_value(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail("slept"))
    values, paused = iter([1, 2, 3]), []
    assert wait_for(lambda: next(values), lambda v: v == 3, within(10), 5, "x", pause=paused.append) == 3
    assert paused == [1, 2]
