"""What each vendor a node can run on is, written once.

One ``VendorInfo`` record per vendor: how its machines are rented (a marketplace client of ours, a
pulumi-aws/gcp VM, or a host the operator owns), whether a machine is a VM or one container, the
credential its client reads (environment variable and the ``gpu-estate:`` config secret standing in for
it), the variables and config keys that point its client elsewhere (the sandbox, a proxy), its API's
address, and how a machine stops itself. The spec, the pricing, the providers, the renderers, the policy
pack and the sandbox all read these records; adding a vendor is adding a record (and its client module).
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Dict, Optional, Tuple


class Vendor(str, enum.Enum):
    """Where a node's machine comes from (a stack's ``nodes.<name>.provider``)."""

    TENSORDOCK = "tensordock"
    VASTAI = "vastai"
    RUNPOD = "runpod"
    AWS = "aws"
    GCP = "gcp"
    HOST = "host"

    @property
    def info(self) -> "VendorInfo":
        return VENDORS[self]

    @property
    def is_marketplace(self) -> bool:
        """Rented through a dynamic provider of ours (as opposed to a pulumi-aws/gcp VM or an owned host)."""
        return self.info.family is Family.MARKETPLACE

    @property
    def is_container(self) -> bool:
        """The node is itself one container: its image, env and ports are the workload's."""
        return self.info.container


class Family(str, enum.Enum):
    """How a machine is had: each family has one machine builder (``components/machines``)."""

    MARKETPLACE = "marketplace"
    """Rented by the hour through this project's dynamic provider (``gpu:Instance``)."""
    AWS = "aws"
    GCP = "gcp"
    HOST = "host"
    """A host the operator owns, adopted by address: nothing billed."""


@dataclasses.dataclass(frozen=True)
class VendorInfo:
    family: Family
    container: bool = False
    """A machine is one container (Vast.ai, RunPod) rather than a VM running a compose project."""
    credential_env: Optional[str] = None
    """The environment variable its client reads the API key from."""
    credential_key: Optional[str] = None
    """The config secret (``gpu-estate:<key>``) that stands in for ``credential_env``."""
    url_env: Optional[str] = None
    """The environment variable that points its client at another API address (the sandbox's loopback)."""
    url_key: Optional[str] = None
    """The config key (``gpu-estate:<key>``) that does the same."""
    default_url: Optional[str] = None
    stop_command: Optional[str] = None
    """The least privileged way a machine stops itself (the idle watcher); None where it cannot."""
    replaces_entrypoint: bool = False
    """It runs its start script instead of the image's entrypoint (Vast.ai): a container of the stack's
    own must say how it starts."""
    needs_ssh_key: bool = False
    """It creates a machine only with the operator's SSH public key to put on it (TensorDock)."""
    command_only: bool = False
    """It runs the image as it is and takes only its command (RunPod's ``dockerArgs``): no start script,
    no entrypoint of the stack's own."""
    instance_token: str = "pulumi-python:dynamic/gpu:Instance"
    """The type of the resource that bills for a machine."""
    spot: bool = False
    """It rents interruptible (spot) capacity: a node there may say ``market: spot``."""
    bid_per_gpu: bool = False
    """A spot bid there is per GPU-hour (RunPod's ``bidPerGpu``); elsewhere it is for the whole machine."""

    @property
    def config_key(self) -> Optional[str]:
        return f"gpu-estate:{self.credential_key}" if self.credential_key else None


POWEROFF = "systemctl poweroff"
"""Guest power-off: a stopped VM bills no GPU; `pulumi up` with power running starts it again."""

VENDORS: Dict[Vendor, VendorInfo] = {
    Vendor.TENSORDOCK: VendorInfo(
        family=Family.MARKETPLACE, credential_env="TENSORDOCK_API_TOKEN", credential_key="tensordockToken",
        url_env="TENSORDOCK_API_URL", url_key="tensordockApiUrl",
        default_url="https://dashboard.tensordock.com/api/v2", needs_ssh_key=True, stop_command=POWEROFF),
    Vendor.VASTAI: VendorInfo(
        family=Family.MARKETPLACE, container=True, credential_env="VASTAI_API_KEY", credential_key="vastaiApiKey",
        url_env="VASTAI_API_URL", url_key="vastaiApiUrl", default_url="https://console.vast.ai/api/v0",
        replaces_entrypoint=True, spot=True,
        # Vast.ai gives each container a key that can manage that one instance only.
        stop_command=('curl -fsS -X PUT -H "Authorization: Bearer $CONTAINER_API_KEY" '
                      "-H 'Content-Type: application/json' -d '{\"state\":\"stopped\"}' "
                      '"https://console.vast.ai/api/v0/instances/$CONTAINER_ID/"')),
    Vendor.RUNPOD: VendorInfo(
        family=Family.MARKETPLACE, container=True, credential_env="RUNPOD_API_KEY", credential_key="runpodApiKey",
        url_env="RUNPOD_API_URL", url_key="runpodApiUrl", default_url="https://api.runpod.io/graphql",
        command_only=True, spot=True, bid_per_gpu=True,
        # RunPod gives each pod a pod-scoped key that runpodctl picks up.
        stop_command='runpodctl stop pod "$RUNPOD_POD_ID"'),
    Vendor.AWS: VendorInfo(family=Family.AWS, stop_command=POWEROFF, instance_token="aws:ec2/instance:Instance",
                           spot=True),
    Vendor.GCP: VendorInfo(family=Family.GCP, stop_command=POWEROFF, instance_token="gcp:compute/instance:Instance",
                           spot=True),
    Vendor.HOST: VendorInfo(family=Family.HOST, instance_token=""),
}

MARKETPLACES: Tuple[str, ...] = tuple(v.value for v in Vendor if v.is_marketplace)
"""The vendors rented through this project's dynamic provider, by their names in a stack and a machine id."""

SPOT_VENDORS: Tuple[str, ...] = tuple(v.value for v in Vendor if v.info.spot)
"""The vendors that rent spot capacity."""

MARKETPLACE_CONFIG_KEYS: Tuple[str, ...] = tuple(
    f"gpu-estate:{key}" for v in MARKETPLACES for key in (VENDORS[Vendor(v)].credential_key, VENDORS[Vendor(v)].url_key))
"""The provider config keys a marketplace client reads (its credential and its API address)."""

RUNPOD_API_KEY_ENV = VENDORS[Vendor.RUNPOD].credential_env
"""Where the RunPod API key is read from (or ``gpu-estate:runpodApiKey``), and the gateway's env name for it:
RunPod's serverless OpenAI route takes it as its bearer token."""
RUNPOD_SERVERLESS_URL_ENV = "RUNPOD_SERVERLESS_URL"
RUNPOD_SERVERLESS_URL_KEY = "runpodServerlessUrl"
RUNPOD_SERVERLESS_DEFAULT_URL = "https://api.runpod.ai/v2"
SERVERLESS_PROVIDER = "runpod-serverless"
"""The provider a serverless endpoint's stamps and cost rows name: the policy pack allows it apart from
RunPod's pods."""

FLY_API_TOKEN_ENV = "FLY_API_TOKEN"
FLY_API_TOKEN_KEY = "flyApiToken"
FLY_API_URL_ENV = "FLY_API_URL"
FLY_API_URL_KEY = "flyApiUrl"
FLY_DEFAULT_URL = "https://api.machines.dev/v1"
FLY_APPS_URL_ENV = "FLY_APPS_URL"
"""Where an app's public address is, ``<this>/<app>``, instead of ``https://<app>.fly.dev`` (the sandbox's
loopback Fly proxy)."""
FLY_SETTING_KEYS = (FLY_API_TOKEN_KEY, FLY_API_URL_KEY)
"""Fly.io's Machines API (``providers/fly.py``): its token (``gpu-estate:flyApiToken``, else ``FLY_API_TOKEN``)
and its address (``gpu-estate:flyApiUrl``, else ``FLY_API_URL``, else Fly's own)."""

VENDOR_KEYS: Dict[str, Tuple[str, str]] = {
    v.value: (v.info.credential_env, v.info.credential_key) for v in Vendor if v.info.credential_env}
"""Each marketplace's credential: the environment variable its client reads, and the config secret
(``gpu-estate:<key>``) that stands in for it."""


def marketplace(name: str) -> Vendor:
    """The marketplace vendor called ``name``; ValueError naming the known ones otherwise."""
    if name not in MARKETPLACES:
        raise ValueError(f"unknown GPU cloud {name!r}; known: {', '.join(MARKETPLACES)}")
    return Vendor(name)


def machine_id(instance: str) -> Optional[Tuple[str, str]]:
    """``(cloud, vendor id)`` of a rented machine's ``<cloud>:<id>``; None for anything else: an AWS/GCP
    VM's id, or a node not rented yet when the id was written down."""
    cloud, _, iid = instance.partition(":")
    return (cloud, iid) if cloud in MARKETPLACES and iid else None
