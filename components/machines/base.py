"""The record every machine builder returns, and what each is given."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

import pulumi

from core.spec import Access, NodeSpec


@dataclasses.dataclass(frozen=True)
class MachineRequest:
    """What a builder needs to make (or adopt) one node's machine."""

    name: str
    """The node's resource name: the machine's resources are named after it."""
    parent: pulumi.ComponentResource
    """The node component: every resource of the machine is its child."""
    spec: NodeSpec
    label: str
    """``<project>-<stack>-<node>``: the name the machine carries at its vendor."""
    estimate: Any
    """The planned price (``core.pricing.NodeEstimate``)."""
    request: Any
    """The placement request (``core.pricing.NodeRequest``), None for an owned host."""
    stamp: Dict[str, Any]
    """What the policy pack reads, stamped on the billing resource."""
    cloud_init: str
    """The VM's cloud-init (never a secret in it)."""
    open_ports: tuple
    """Ports the machine's own firewall opens besides SSH."""
    reached_over_ssh: bool
    """Whether the program connects to it over SSH (so a host key of its own is worth generating)."""

    def child(self, protect: bool = False) -> pulumi.ResourceOptions:
        """Options of a resource of the machine; only the machine itself may be protected."""
        return pulumi.ResourceOptions(parent=self.parent, protect=True) if protect else \
            pulumi.ResourceOptions(parent=self.parent)

    def machine_opts(self) -> pulumi.ResourceOptions:
        return self.child(protect=self.spec.protect)

    def service_ports(self) -> Dict[str, int]:
        """Service port -> reachable port, where the machine maps nothing (VMs and owned hosts)."""
        return {str(self.spec.port(n)): self.spec.port(n) for n in self.spec.workloads}


@dataclasses.dataclass(frozen=True)
class Machine:
    """One node's machine, whatever its vendor."""

    resource: Optional[pulumi.Resource]
    """The billing resource (None for an owned host). What lives on the machine is ``deleted_with`` it."""
    id: pulumi.Output
    """The machine's id (``<cloud>:<id>`` on a marketplace, the VM's id, the owned host's address)."""
    address: pulumi.Output
    ssh_host: pulumi.Output
    ssh_port: pulumi.Output
    ports: pulumi.Output
    """Service port on the node -> port that reaches it at ``address``/``ssh_host``."""
    hourly_price: pulumi.Output
    launched_host_key: Optional[pulumi.Output] = None
    """The host key the machine was launched with, where the program generated and installed it."""
    console: Optional[pulumi.Output] = None
    """Where the machine's console prints its host keys (an AWS VM's ``{instance_id, region}``)."""


def generated_host_key(req: MachineRequest):
    """A host key of its own (``providers.ssh_key.SshKey``) for the sshd of a VM the program launches and
    connects to, known before first contact because its cloud-init installs it (``providers.host_key``);
    None for a node the program never reaches over SSH."""
    if not (req.spec.access is Access.SSH or req.reached_over_ssh):
        return None
    from providers.ssh_key import SshKey

    return SshKey(f"{req.name}-ssh-host-key", comment=f"{req.label} host key",
                  opts=pulumi.ResourceOptions(parent=req.parent))


def key_pair(key) -> pulumi.Output:
    """``{private, public}`` of a generated host key, as a secret."""
    return pulumi.Output.secret(pulumi.Output.all(private=key.private_key, public=key.public_key))
