"""Where a GPU node lands: adopt the machine carrying its label, or rent the best offer, across clouds.

``Placement`` owns what the creates of one provider process share: the machines they adopted by label
(a delete in the same run must not terminate a machine another resource has just adopted) and the offers
they are renting (nodes placed at once each take a different offer). Its ``place`` walks the node's
clouds in order: on each, adopt the instance carrying the label, else search the live offers
(``core.pricing`` ranks them), spread nodes of the same price over different offers, try the next offer
when one is taken, search again while untried offers remain, and fail over to the next cloud when one has
no capacity; the final error lists what each cloud said.

Why one ``Placement`` per process rather than per provider object: the engine hands each resource its own
pickled copy of the provider, so the host unpickles one ``GpuInstanceProvider`` per resource, and creates
racing for the same offers never share a provider object. What they must share lives in the one
``Placement.of_process()`` of the host process, created on first use; a provider can be given another
(``GpuInstanceProvider(placement=...)``), as tests do for a run of their own. It holds a lock, so it is
never pickled: the provider keeps only the injected one, and none in the program.
"""
from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from typing import Callable, ClassVar, Dict, Iterable, List, Optional, Set, Tuple, TypeVar

import pulumi

from core.pricing import NodeRequest, Offer, PlacementError, choose_offer, rank_offers
from providers.gpu_cloud import GpuCloud, Instance, LaunchSpec, env_seconds
from providers.http import CloudError, LostResponse, NoCapacity, OfferTaken
from providers.wait import WaitTimeout, wait_for, within

R = TypeVar("R")
Account = Tuple[str, ...]

MAX_OFFERS_TRIED = 5
SEARCH_ROUNDS = 50
"""Searches one placement may make while offers it has not tried remain (each round tries new ones)."""
SAME_PRICE = 0.01
"""Offers within this fraction of the cheapest count as the same price for ``spread``."""


@dataclasses.dataclass(frozen=True)
class Placed:
    """Where a create landed on one cloud: an instance adopted by its label, or an offer rented."""

    instance_id: str
    adopted: Optional[Instance] = None
    """The instance as found by its label (None: rented here, not yet read)."""
    offer: Optional[Offer] = None
    """The offer rented (None: adopted)."""


def spread(ranked: List[Offer], label: str) -> List[Offer]:
    """``ranked`` with the offers that cost the same as the cheapest rotated by the node's label, so
    nodes placed at once start at different offers instead of all racing for the first; dearer offers
    keep their order after them (never a dearer machine for the sake of spreading)."""
    if not ranked:
        return ranked
    first = ranked[0].price_per_hour
    n = 1
    while n < len(ranked) and ranked[n].price_per_hour <= first * (1 + SAME_PRICE):
        n += 1
    tied = ranked[:n]
    start = int(hashlib.sha256(label.encode()).hexdigest(), 16) % len(tied)
    return tied[start:] + tied[:start] + ranked[len(tied):]


class Placement:
    """The adoptions and offer claims of one provider process (one ``up``), and the search that uses them."""

    _process: ClassVar[Optional["Placement"]] = None
    _process_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._adopted: Set[str] = set()
        """``<cloud>:<id>`` of every instance a create adopted by label."""
        self._claimed: Dict[Account, Set[str]] = {}
        """Offer ids, by cloud account, that a create is renting or has rented: nodes placed at once each
        take a different offer instead of all launching on the cheapest and failing over one by one (64
        nodes at once made about 450 launch calls for 64 machines)."""

    @classmethod
    def of_process(cls) -> "Placement":
        """The placement every provider object of this process shares (see the module docstring)."""
        with cls._process_lock:
            if cls._process is None:
                cls._process = cls()
            return cls._process

    def forget(self) -> None:
        """Start over as a new provider process does (for callers that reuse one process across runs)."""
        with self._lock:
            self._adopted.clear()
            self._claimed.clear()

    # -- adoptions ----------------------------------------------------------------------------------
    def adopted(self, machine: str) -> bool:
        """Whether a create of this process adopted ``<cloud>:<id>`` by its label."""
        with self._lock:
            return machine in self._adopted

    def _adopt(self, machine: str) -> None:
        with self._lock:
            self._adopted.add(machine)

    # -- offer claims -------------------------------------------------------------------------------
    def claimed(self, account: Optional[Account]) -> Set[str]:
        """The offers creates of this process are renting or rented on ``account`` (None: a cloud whose
        offers hold several machines, where nothing is claimed)."""
        with self._lock:
            return set(self._claimed.get(account, ())) if account else set()

    def claim(self, account: Optional[Account], offer_id: str) -> bool:
        """Take ``offer_id`` for this create; False when another create of this process has it."""
        if not account:
            return True
        with self._lock:
            claimed = self._claimed.setdefault(account, set())
            if offer_id in claimed:
                return False
            claimed.add(offer_id)
            return True

    def release(self, account: Optional[Account], offer_id: str) -> None:
        with self._lock:
            self._claimed.get(account, set()).discard(offer_id)

    # -- the search ---------------------------------------------------------------------------------
    def place(self, label: str, clouds: Iterable[str], open_client: Callable[[str], GpuCloud],
              request: NodeRequest, spec_for: Callable[[str], LaunchSpec],
              settle: Callable[[GpuCloud, Placed], R]) -> R:
        """On the first of ``clouds`` that can: adopt or rent (``on_cloud``), then ``settle`` it (wait for the
        machine, converge its power, build the outputs) with that cloud's client. A cloud that has no
        capacity (here, or while settling a machine it rented) hands over to the next; raises NoCapacity naming
        what each said. A machine it adopted that cannot be settled fails the create instead: another cloud's
        machine would leave it billing outside the state."""
        said: List[str] = []
        for cloud in clouds:
            spec = spec_for(cloud)
            with open_client(cloud) as c:
                placed = None
                try:
                    placed = self.on_cloud(c, request, spec)
                    if placed is None:
                        continue
                    return settle(c, placed)
                except (NoCapacity, PlacementError) as err:
                    if placed is not None and placed.adopted is not None:
                        # A machine carrying the label exists here (adopted, then unable to run, e.g. a spot
                        # machine outbid above its ceiling): renting another elsewhere would leave this one
                        # billing its disk outside the state. The create fails saying why; the next `up`
                        # adopts it again.
                        raise
                    said.append(f"{cloud}: {err}")
                    pulumi.log.warn(f"{label}: {cloud} has no capacity, trying the next provider ({err})")
        raise NoCapacity(f"{label}: no provider could place the node:\n  " + "\n  ".join(said))

    def on_cloud(self, c: GpuCloud, request: NodeRequest, spec: LaunchSpec) -> Optional[Placed]:
        """Adopt the instance carrying our label, or rent the best offer. None means no offer here."""
        existing = c.find(spec.label)
        if existing:
            if len(existing) > 1:
                pulumi.log.warn(f"{spec.label}: {len(existing)} {c.name} instances carry this label; adopting "
                                f"{existing[0].id}, the others are not managed: {[i.id for i in existing[1:]]}")
            pulumi.log.info(f"{spec.label}: adopting {c.name} instance {existing[0].id}")
            inst = existing[0]
            self._adopt(f"{c.name}:{inst.id}")
            return Placed(inst.id, adopted=inst)
        taken: List[str] = []
        tried: Set[str] = set()
        account = c.account() if c.single_rental_offers else None
        # Several nodes placed at once race for the same cheapest offers: where an offer is one machine,
        # each takes an offer no other create of this process is renting (the next cheapest); when every
        # offer of one search was taken, it searches again (the list has moved on) while untried offers
        # remain, before calling it no capacity; nodes start at different offers of the same price.
        for _round in range(SEARCH_ROUNDS):
            offers = c.offers(request)
            ranked = rank_offers(request, offers)
            if not ranked and not taken:
                choose_offer(request, offers)  # raises PlacementError saying why each offer was refused
            untried = [o for o in ranked if o.offer_id not in tried]
            others = self.claimed(account)
            fresh = spread([o for o in untried if o.offer_id not in others], spec.label)[:MAX_OFFERS_TRIED]
            if not fresh:
                if not untried:
                    break
                # Only offers other creates are renting are left: wait for them to rent or let go.
                time.sleep(env_seconds("ESTATE_POLL_SECONDS", 5))
                continue
            for offer in fresh:
                if not self.claim(account, offer.offer_id):
                    continue
                tried.add(offer.offer_id)
                pulumi.log.info(f"{spec.label}: renting {c.name} offer {offer.offer_id} at ${offer.price_per_hour}/h")
                try:
                    iid = c.launch(offer, spec)
                except OfferTaken as err:
                    taken.append(str(err))  # gone: it stays claimed
                    continue
                except LostResponse:
                    found = self._wait_for_label(c, spec.label)
                    if found is None:
                        raise CloudError(
                            f"{spec.label}: {c.name} did not answer the create and lists no instance with this "
                            f"label yet; run `pulumi up` again: it adopts the instance if one appears, never "
                            f"renting twice")
                    iid = found.id
                except BaseException:
                    self.release(account, offer.offer_id)  # not rented: another create may take it
                    raise
                return Placed(iid, offer=offer)
        raise NoCapacity(f"every offer tried was taken: {'; '.join(taken)}")

    @staticmethod
    def _wait_for_label(c: GpuCloud, label: str) -> Optional[Instance]:
        """The instance a lost create made, once the account lists it; None when none shows in time."""
        try:
            found = wait_for(lambda: c.find(label), bool, within(env_seconds("ESTATE_ADOPT_WAIT_SECONDS", 60)),
                             env_seconds("ESTATE_POLL_SECONDS", 5), f"{c.name} lists an instance labelled {label}")
        except WaitTimeout:
            return None
        return found[0]
