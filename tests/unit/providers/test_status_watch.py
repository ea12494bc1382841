"""Machines placed at once wait on one listing per account (providers/status_watch.py), not one read each
per poll interval, and on Vast.ai each rents an offer of its own: driven through the GPU instance
provider against the loopback marketplaces, and the watcher alone with a listing that fails."""
import threading
import time

import pytest

from providers import status_watch
from providers.gpu_cloud import Status, client
from providers.gpu_instance import GpuInstanceProvider
from providers.http import CloudError
from loopback.vastai import FakeVast
from tests.unit.providers.test_gpu_instance_provider import checked, props

MACHINES = {"vastai": 6, "runpod": 6, "tensordock": 2}
"""Nodes placed at once on each loopback cloud (the TensorDock one has two host nodes with free ports)."""


def create_all(fakes: dict, cloud: str, count: int) -> list:
    """Create ``count`` nodes at once, each in its own thread as the provider host runs them, on a cloud
    with room for them all."""
    if cloud == "vastai":
        fakes[cloud].offers = [FakeVast.offer(7000 + i, "RTX 4090", 1, 0.30 + i / 1000, 0.2, "US", 0.99)
                               for i in range(count)]
    if cloud == "runpod":
        fakes[cloud].capacity["NVIDIA GeForce RTX 4090"] = count
    prov, results = GpuInstanceProvider(), [None] * count

    def one(i: int) -> None:
        try:
            results[i] = prov.create(checked(props(clouds=[cloud], label=f"gpu-estate-test-node-{i}")))
        except Exception as err:  # noqa: BLE001 the test reads it
            results[i] = err

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def instance_reads(fake, prefix: str) -> dict:
    """Reads of each single instance (``GET <prefix><id>...``), by path."""
    return {path: n for (method, path), n in fake.calls.items()
            if method == "GET" and path.startswith(prefix) and path[len(prefix):].strip("/")}


@pytest.mark.parametrize("cloud", ["tensordock", "vastai", "runpod"])
def test_machines_booting_together_all_come_up(clouds, cloud, monkeypatch):
    monkeypatch.setenv("ESTATE_POLL_SECONDS", "0.02")
    clouds[cloud].boot_polls = 8
    results = create_all(clouds, cloud, MACHINES[cloud])
    assert all(not isinstance(r, Exception) for r in results), results
    assert {r.outs["status"] for r in results} == {"running"}
    assert len({r.id for r in results}) == MACHINES[cloud]
    assert len(clouds[cloud].alive()) == MACHINES[cloud]


@pytest.mark.parametrize("cloud, prefix", [("vastai", "/api/v0/instances/"), ("tensordock", "/api/v2/instances/")])
def test_each_machine_is_read_a_few_times_not_once_per_interval(clouds, cloud, prefix, monkeypatch):
    monkeypatch.setenv("ESTATE_POLL_SECONDS", "0.02")
    # Listings here take longer than the interval: no read that the timeout makes in case of a silent
    # listing (test_a_failing_listing_only_delays_the_waiter covers those).
    monkeypatch.setattr(status_watch, "FALLBACK_POLLS", 1000)
    fake = clouds[cloud]
    if cloud == "vastai":
        fake.boot_seconds = 0.6  # 30 intervals of booting
    else:
        fake.boot_polls = 30  # every listing reads each machine once: about 30 listings
    results = create_all(clouds, cloud, MACHINES[cloud])
    assert {r.outs["status"] for r in results} == {"running"}
    reads = instance_reads(fake, prefix)
    assert len(reads) == MACHINES[cloud]
    # The read before waiting, the read once the listing shows it running (each machine read once a
    # poll interval made about 30 reads each).
    assert max(reads.values()) <= 3, reads


def test_a_machine_that_vanishes_while_booting_fails_its_create(clouds, monkeypatch):
    monkeypatch.setenv("ESTATE_POLL_SECONDS", "0.02")
    vast = clouds["vastai"]
    vast.boot_seconds = 30.0  # it would not be up before the test's end
    result = []
    worker = threading.Thread(target=lambda: result.append(_create_or_error(vast)))
    worker.start()
    for _ in range(500):  # until it is rented
        if vast.instances:
            break
        time.sleep(0.01)
    iid = next(iter(vast.instances))
    vast.preempt(iid)
    worker.join(timeout=30)
    assert isinstance(result[0], CloudError)
    assert f"instance {iid} vanished while starting" in str(result[0])


def _create_or_error(vast):
    try:
        return GpuInstanceProvider().create(checked(props(clouds=["vastai"])))
    except Exception as err:  # noqa: BLE001 the test reads it
        return err


class FailingList:
    """A real Vast.ai client whose listing fails, as a vendor's list endpoint sometimes does."""

    def __init__(self):
        self.inner = client("vastai")
        self.http = self.inner.http
        self.name = "vastai"

    def statuses(self):
        raise CloudError("Vast.ai: listing instances failed (502)")

    def account(self):
        return ("failing-list", *self.inner.account())

    def close(self):
        self.inner.close()


def test_a_failing_listing_only_delays_the_waiter(clouds, monkeypatch):
    monkeypatch.setenv("ESTATE_POLL_SECONDS", "0.01")
    watch = status_watch.Watch(FailingList)
    started = time.monotonic()
    assert watch.wait("1000", lambda s: s is Status.RUNNING, timeout=0.2) is None
    assert time.monotonic() - started >= 0.2
    assert watch.listings >= 2  # it kept trying while someone waited
    for _ in range(200):  # and stops once nobody does
        if not watch._running:
            break
        time.sleep(0.01)
    assert not watch._running


def test_waiters_share_listings_and_wake_when_their_machine_runs(clouds, monkeypatch):
    monkeypatch.setenv("ESTATE_POLL_SECONDS", "0.02")
    vast = clouds["vastai"]
    vast.boot_seconds = 0.3
    with client("vastai") as c:
        offers = vast.offers[:4]
        from providers.gpu_cloud import LaunchSpec
        from core.pricing import Offer
        ids = [c.launch(Offer(provider="vastai", offer_id=str(o["id"]), gpu_model="rtx3090", gpu_count=1,
                              vram_gb=24, price_per_hour=o["dph_total"], region=o["geolocation"]),
                        LaunchSpec(label=f"w-{i}", image="ollama/ollama", disk_gb=40)) for i, o in enumerate(offers)]
        watch = status_watch.watch(c, lambda: client("vastai"))
        woke = {}

        def wait(iid):
            woke[iid] = watch.wait(iid, lambda s: s is Status.RUNNING, timeout=10)

        threads = [threading.Thread(target=wait, args=(iid,)) for iid in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=15)
    assert woke == {iid: Status.RUNNING for iid in ids}
    # About 0.3 s of booting at 0.02 s a listing, for all four at once (four readers: four times as many).
    assert watch.listings <= 40, watch.listings
    assert not any(m == "GET" and p.rstrip("/").split("/")[-1] in ids for m, p in vast.calls)


def test_machines_placed_together_on_vast_each_rent_their_own_offer(clouds, monkeypatch):
    monkeypatch.setenv("ESTATE_POLL_SECONDS", "0.02")
    vast = clouds["vastai"]
    results = create_all(clouds, "vastai", 8)
    assert all(not isinstance(r, Exception) for r in results), results
    assert len({r.outs["offer_id"] for r in results}) == 8
    # One launch per machine: none launched on an offer another create of the host was renting.
    launches = sum(n for (method, path), n in vast.calls.items() if method == "PUT" and path.startswith("/api/v0/asks/"))
    assert launches == 8
    # The cheapest go first: together they rent the eight cheapest offers.
    cheapest = sorted(vast.offers, key=lambda o: o["dph_total"])[:8]
    assert {r.outs["offer_id"] for r in results} == {str(o["id"]) for o in cheapest}


def test_an_offer_whose_launch_failed_is_free_for_the_next_create(clouds, monkeypatch):
    monkeypatch.setenv("ESTATE_POLL_SECONDS", "0.02")
    vast = clouds["vastai"]
    vast.offers = [FakeVast.offer(7000, "RTX 4090", 1, 0.30, 0.2, "US", 0.99)]
    # Refused outright (nothing rented), as Vast.ai refuses a launch the account's credit cannot pay.
    vast.inject("status", path="/api/v0/asks/", method="PUT", status=400,
                body={"success": False, "error": "insufficient_credit", "msg": "not enough credit"})
    first = _create_or_error(vast)
    assert isinstance(first, CloudError) and "not enough credit" in str(first)
    second = _create_or_error(vast)
    assert not isinstance(second, Exception), second
    assert second.outs["offer_id"] == "7000"
