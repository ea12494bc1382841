"""One listing per GPU cloud account for every machine this host is waiting on.

A host placing many nodes at once waits for each machine to boot (or to stop or start). Reading each
machine every poll interval costs one vendor call per machine per interval: 64 machines booting at the
sandbox's 0.2 s interval made 320 calls a second, which kept the provider host (and the loopback
clouds) so busy that the engine's own calls to the host, one resource at a time, waited behind them; and
TensorDock allows about 100 calls a minute per organisation. Instead each account gets one watcher
thread, running only while someone waits, that lists the account's instances once per interval
(``GpuCloud.statuses``) and wakes a waiter when its machine's listed status is one the waiter wants, or
when the machine has left a listing it was in.

The waiter then reads its machine itself (``get``) as it always did, so what it acts on comes from the
same call as before; and it reads anyway after ``FALLBACK_POLLS`` intervals without news, so a listing
that lags, fails or leaves a machine out only makes it slower, never wrong.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Dict, Optional, Tuple

from providers.gpu_cloud import GpuCloud, Status, env_seconds

FALLBACK_POLLS = 10
"""Intervals a waiter waits for news from the listing before it reads its machine anyway."""

Wake = Callable[[Status], bool]


class Watch:
    """The watcher of one cloud account: one listing per interval while anyone waits."""

    def __init__(self, open_client: Callable[[], GpuCloud]):
        self._open = open_client
        self._cond = threading.Condition()
        self._waiting: Dict[str, int] = {}  # instance id -> waiters
        self._listed: Dict[str, Status] = {}  # the last listing that answered
        self._seen: set = set()  # waited-on ids that some listing showed
        self._rounds = 0  # listings that answered so far
        self._running = False
        self.listings = 0  # listing calls made (answered or not), for the benchmarks and tests

    def wait(self, instance_id: str, wake: Wake, timeout: float) -> Optional[Status]:
        """Block until a listing made after this call shows ``instance_id`` in a status ``wake`` accepts,
        or without it after an earlier listing showed it, or until ``timeout`` seconds pass. Returns
        the status listed (None when it left the listing or nothing came in time)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiting[instance_id] = self._waiting.get(instance_id, 0) + 1
            start = self._rounds
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="status-watch", daemon=True).start()
            try:
                while True:
                    if self._rounds > start:
                        status = self._listed.get(instance_id)
                        if status is not None and wake(status):
                            return status
                        if status is None and instance_id in self._seen:
                            return None
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self._cond.wait(left)
            finally:
                self._waiting[instance_id] -= 1
                if not self._waiting[instance_id]:
                    del self._waiting[instance_id]
                    self._seen.discard(instance_id)

    def _run(self) -> None:
        client: Optional[GpuCloud] = None
        done = False  # set where this thread hands over: a later waiter may have started the next one
        try:
            while True:
                with self._cond:
                    if not self._waiting:
                        self._running, done = False, True
                        return
                listed: Optional[Dict[str, Status]] = None
                try:
                    client = client or self._open()
                    self.listings += 1
                    listed = client.statuses()
                except Exception:  # noqa: BLE001 the waiters read their machines themselves meanwhile
                    listed = None
                with self._cond:
                    if listed is not None:
                        self._listed = listed
                        self._seen.update(i for i in self._waiting if i in listed)
                        self._rounds += 1
                        self._cond.notify_all()
                time.sleep(env_seconds("ESTATE_POLL_SECONDS", 5))
        finally:
            if not done:
                with self._cond:
                    self._running = False
            if client is not None:
                client.close()


_WATCHES: Dict[Tuple[str, ...], Watch] = {}
_WATCHES_LOCK = threading.Lock()


def watch(client: GpuCloud, open_client: Callable[[], GpuCloud]) -> Watch:
    """The watcher of ``client``'s account; ``open_client`` makes the watcher's own client for it."""
    key = client.account()
    with _WATCHES_LOCK:
        found = _WATCHES.get(key)
        if found is None:
            found = _WATCHES[key] = Watch(open_client)
        return found


def wait_for_news(client: GpuCloud, open_client: Callable[[], GpuCloud], instance_id: str, wake: Wake,
                  deadline: float) -> Optional[Status]:
    """Wait on the listing of ``client``'s account for ``instance_id`` (see ``Watch.wait``), at most
    ``FALLBACK_POLLS`` intervals and never past ``deadline`` (a ``time.monotonic`` value)."""
    interval = env_seconds("ESTATE_POLL_SECONDS", 5)
    timeout = min(FALLBACK_POLLS * interval, max(interval, deadline - time.monotonic()))
    return watch(client, open_client).wait(instance_id, wake, timeout)
