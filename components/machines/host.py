"""A host the operator owns, adopted by its address: nothing is rented and nothing bills."""
from __future__ import annotations

import pulumi

from components.machines.base import Machine, MachineRequest


def build(req: MachineRequest) -> Machine:
    spec = req.spec
    address = pulumi.Output.from_input(spec.address)
    return Machine(resource=None, id=address, address=address, ssh_host=address,
                   ssh_port=pulumi.Output.from_input(spec.ssh.port),
                   ports=pulumi.Output.from_input(req.service_ports()), hourly_price=pulumi.Output.from_input(0.0))
