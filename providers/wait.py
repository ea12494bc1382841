"""One way to wait for something outside the program: read it until it is what we want, or give up.

Every poll loop of the providers (a machine booting, stopping, being deleted; an adopted instance showing
up in a listing; a Vast.ai start leaving ``scheduling``; an SSH host key answering; a serverless endpoint
going away) is ``wait_for``: read, accept, deadline, interval. What each caller does on a timeout (fail
naming the machine, leave it stopped, return nothing) stays with the caller, which catches ``WaitTimeout``
and has the last value read.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """``what`` did not come before the deadline; ``last`` is the value read last. It imports nothing of the
    project, so the agents on the gateway host wait the same way."""

    def __init__(self, what: str, last: Any):
        super().__init__(f"{what}: still not so at the deadline (last seen: {last!r})")
        self.what = what
        self.last = last


def within(seconds: float) -> float:
    """The deadline (a ``time.monotonic`` value) ``seconds`` from now."""
    return time.monotonic() + seconds


def wait_for(read: Callable[[], T], accept: Callable[[T], bool], deadline: float, interval: float, what: str, *,
             pause: Optional[Callable[[T], None]] = None, on_retry: Optional[Callable[[T], None]] = None) -> T:
    """Call ``read`` until ``accept`` takes what it returned, and return that value.

    ``deadline`` is a ``time.monotonic`` value (``within(seconds)``): once a value is refused at or past it,
    raise ``WaitTimeout(what, last value)``. There is always at least one read. Between reads, ``on_retry``
    (if given) sees the refused value, then ``pause`` (if given) waits for a reason to read again (given the
    refused value; it must return by the deadline), else the wait sleeps ``interval`` seconds, never past
    the deadline. An exception from ``read`` or ``accept`` ends the wait at once: it is the caller's to
    handle, never retried here.
    """
    while True:
        value = read()
        if accept(value):
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(what, value)
        if on_retry is not None:
            on_retry(value)
        if pause is not None:
            pause(value)
        else:
            time.sleep(min(interval, left))
