"""The one interface every GPU marketplace client implements, and the router that picks a client.

A node can fail over from one marketplace to the next only because they all look alike here: search
offers for a ``NodeRequest``, launch one offer with a ``LaunchSpec``, and get / find (by label) / start /
stop / terminate instances. Each backend module (tensordock, vastai, runpod) exports ``Client``.
"""
from __future__ import annotations

import abc
import enum
import importlib
import os
from typing import Dict, List, Optional, Self, Tuple

from pydantic import BaseModel, ConfigDict, Field

from core.pricing import NodeRequest, Offer
from core.vendors import VENDOR_KEYS, Vendor, marketplace
from providers.http import ApiSession



class Status(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    GONE = "gone"
    """Deleted, being deleted, or preempted: nothing is billed and the node must be recreated."""


class Instance(BaseModel):
    """One rented machine as the estate sees it, whatever the vendor's shape."""

    model_config = ConfigDict(extra="ignore")

    id: str
    label: str = ""
    status: Status
    address: Optional[str] = None
    ssh_host: Optional[str] = None
    ssh_port: Optional[int] = None
    ports: Dict[int, int] = Field(default_factory=dict)
    """Container/VM port -> public port."""
    price_per_hour: Optional[float] = None
    detail: str = ""


class LaunchSpec(BaseModel):
    """What to run on the rented machine. VM backends use ``cloud_init``; container backends the rest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    image: str
    disk_gb: int
    ports: Tuple[int, ...] = ()
    env: Dict[str, str] = Field(default_factory=dict)
    onstart: str = ""
    ssh_public_key: Optional[str] = None
    cloud_init: Optional[str] = None
    bid_per_hour: Optional[float] = None
    vcpu: int = 1
    ram_gb: int = 1
    args: Tuple[str, ...] = ()
    """The container's command after its image's entrypoint (RunPod's ``dockerArgs``)."""


class GpuCloud(abc.ABC):
    """A GPU marketplace. Implementations are cheap to build: create one per provider call."""

    name: str = ""
    http: ApiSession
    single_rental_offers: bool = False
    """Each offer is one machine that rents once (Vast.ai's asks), not a kind of machine with room for
    several (a TensorDock host node, a RunPod GPU type): creates of one host then never launch on the same
    offer at once."""

    def account(self) -> Tuple[str, str, str]:
        """The cloud, API address and token digest this client speaks with: one status watcher
        (providers/status_watch.py) serves every client of the same account."""
        return (self.name, *self.http.account)

    @abc.abstractmethod
    def offers(self, request: NodeRequest) -> List[Offer]:
        """Live offers matching the request's hardware (the pricing module applies every constraint)."""

    @abc.abstractmethod
    def launch(self, offer: Offer, spec: LaunchSpec) -> str:
        """Rent ``offer`` and start ``spec`` on it. Returns the vendor's instance id.

        Raises NoCapacity, OfferTaken, InsufficientCredit, AuthError, or LostResponse when the outcome
        is unknown.
        """

    @abc.abstractmethod
    def get(self, instance_id: str) -> Optional[Instance]:
        """The instance as the vendor reports it, the same for every vendor:

        - an ``Instance`` with status ``GONE`` while the vendor still shows the id deleted, being deleted,
          destroyed, terminated or preempted (TensorDock's ``deleting``/``deleted``, Vast.ai's
          ``deleted``/``destroyed``, RunPod's ``TERMINATED``): nothing bills and the node must be re-rented;
        - None only when the vendor does not know the id (a 404, ``no_such_instance``, "pod not found"):
          never rented, or forgotten since;
        - otherwise its status, address and ports. A failed call raises (``CloudError``), never None.

        Callers that only ask "is it still there" treat None and ``GONE`` alike.
        """

    @abc.abstractmethod
    def listed(self) -> List[Instance]:
        """Every instance the account lists, from one listing call, as the listing gives them (a vendor's
        list items may carry only id, name and status)."""

    def find(self, label: str) -> List[Instance]:
        """Instances carrying ``label`` (our idempotency key), gone ones excluded."""
        return [i for i in self.listed() if i.label == label and i.status is not Status.GONE]

    def statuses(self) -> Dict[str, Status]:
        """The status of every instance the account lists, by id, from one listing call (what a host
        waiting on many machines polls instead of reading each one)."""
        return {i.id: i.status for i in self.listed()}

    @abc.abstractmethod
    def start(self, instance_id: str) -> None: ...

    @abc.abstractmethod
    def stop(self, instance_id: str) -> None: ...

    @abc.abstractmethod
    def terminate(self, instance_id: str) -> None:
        """Destroy the instance; an instance that is already gone is not an error."""

    def attach_ssh_key(self, instance_id: str, public_key: str) -> None:
        """Let ``public_key`` into the instance's SSH. A VM vendor takes the key at create (``LaunchSpec``), so
        this does nothing; Vast.ai lets in the account's keys and those attached to the instance."""

    def set_bid(self, instance_id: str, bid_per_hour: float) -> None:
        """Change a spot bid in place where the vendor allows it."""
        raise NotImplementedError(f"{self.name} cannot change a bid in place")

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def env_or_config(config: Dict[str, str], env_var: str, config_key: str) -> Optional[str]:
    return os.environ.get(env_var) or config.get(config_key)


def credential(config: Dict[str, str], cloud: str) -> Optional[str]:
    """The marketplace's API key: its environment variable, else its ``gpu-estate:`` config secret."""
    env, key = VENDOR_KEYS[cloud]
    return env_or_config(config, env, f"gpu-estate:{key}")


def api_session(vendor: Vendor, config: Dict[str, str], title: str) -> ApiSession:
    """The session a marketplace client speaks through: the API address its vendor record names (its
    environment variable, its ``gpu-estate:`` config key, else the vendor's own) and its credential."""
    info = vendor.info
    url = env_or_config(config, info.url_env, f"gpu-estate:{info.url_key}") or info.default_url
    return ApiSession(url, credential(config, vendor.value), title)


def env_seconds(env: str, default: float) -> float:
    """A duration (polling interval, timeout) the environment may shorten, as tests and the sandbox do."""
    return float(os.environ.get(env, str(default)))


def client(cloud: str, config: Optional[Dict[str, str]] = None) -> GpuCloud:
    """The backend client for ``cloud``. Imported lazily so a stack pays only for what it uses."""
    marketplace(cloud)  # a ValueError naming the known ones for any other
    module = importlib.import_module(f"providers.{cloud}")
    impl = module.Client(config or {})
    if not isinstance(impl, GpuCloud):
        raise TypeError(f"providers.{cloud}.Client does not implement GpuCloud")
    return impl
