"""Where a node's machine comes from: one builder per vendor family, each returning one ``Machine``.

A ``GpuNode`` asks ``build`` for its machine and gets the same record whatever it runs on: the billing
resource, the machine's id, its address and SSH endpoint, its service ports, its price and the host key
it was launched with. The node's other half is delivering its workloads (``components/node.py``).
Adding a family is adding a module here with a ``build(request) -> Machine`` and its row in ``BUILDERS``.
"""
from __future__ import annotations

from typing import Callable, Dict

from components.machines import aws, gcp, host, marketplace
from components.machines.base import Machine, MachineRequest
from core.vendors import Family

BUILDERS: Dict[Family, Callable[[MachineRequest], Machine]] = {
    Family.MARKETPLACE: marketplace.build,
    Family.AWS: aws.build,
    Family.GCP: gcp.build,
    Family.HOST: host.build,
}

__all__ = ["Machine", "MachineRequest", "BUILDERS", "build"]


def build(request: MachineRequest) -> Machine:
    """The machine of the node ``request`` describes, from the builder of its vendor's family."""
    return BUILDERS[request.spec.provider.info.family](request)
