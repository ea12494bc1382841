"""A GCP GPU VM: a firewall of its own and the instance, its host key installed by its cloud-init."""
from __future__ import annotations

from typing import Dict

import pulumi

from components.machines.base import Machine, MachineRequest, generated_host_key, key_pair
from core import catalog
from core.spec import Market, PowerState
from core.stamps import to_tags
from core.text import bare_key
from providers.host_key import install_in_cloud_init, launched_with

IMAGE = "projects/deeplearning-platform-release/global/images/family/common-cu124-ubuntu-2204-py310"


def build(req: MachineRequest) -> Machine:
    import pulumi_gcp as gcp

    spec, name = req.spec, req.name
    row = catalog.instance_types("gcp")[req.estimate.instance_type]
    zone = spec.regions[0] if spec.regions else "us-east1-c"
    tag = f"estate-{name}"
    gcp.compute.Firewall(
        f"{name}-fw", network="default", target_tags=[tag], source_ranges=["0.0.0.0/0"],
        allows=[gcp.compute.FirewallAllowArgs(protocol="tcp",
                                              ports=[str(p) for p in (spec.ssh.port, *req.open_ports)])],
        description=f"{req.label}: SSH and the ports the estate publishes", opts=req.child())
    spot = spec.market is Market.SPOT
    metadata: Dict[str, pulumi.Input[str]] = {"user-data": req.cloud_init}
    key = generated_host_key(req)
    if key is not None:
        # GCP updates metadata in place: a VM launched before the key keeps its own (see below).
        metadata["user-data"] = pulumi.Output.secret(key_pair(key).apply(lambda k: install_in_cloud_init(
            req.cloud_init, k["private"], k["public"])))
    if spec.ssh.public_key:
        metadata["ssh-keys"] = f"{spec.ssh.user}:{spec.ssh.public_key}"
    vm = gcp.compute.Instance(
        f"{name}-vm", name=req.label, zone=zone, machine_type=row["machine_type"], tags=[tag],
        labels=to_tags(req.stamp),
        boot_disk=gcp.compute.InstanceBootDiskArgs(initialize_params=gcp.compute.InstanceBootDiskInitializeParamsArgs(
            image=IMAGE, size=spec.disk_gb)),
        guest_accelerators=[gcp.compute.InstanceGuestAcceleratorArgs(type=row["accelerator"], count=row["gpu_count"])]
        if not row["machine_type"].startswith(("g2-", "a2-")) else None,
        network_interfaces=[gcp.compute.InstanceNetworkInterfaceArgs(
            network="default", access_configs=[gcp.compute.InstanceNetworkInterfaceAccessConfigArgs()])],
        scheduling=gcp.compute.InstanceSchedulingArgs(
            provisioning_model="SPOT" if spot else "STANDARD", preemptible=spot,
            automatic_restart=not spot, on_host_maintenance="TERMINATE",
            instance_termination_action="STOP" if spot else None),
        metadata=metadata,
        desired_status={PowerState.STOPPED: "TERMINATED", PowerState.RUNNING: "RUNNING"}.get(spec.power),
        opts=req.machine_opts())
    launched = None
    if key is not None:
        # Only a VM launched after the key existed booted with it; an older one keeps the key it had,
        # which is then recorded on first contact.
        launched = pulumi.Output.all(vm.creation_timestamp, key.created_at, key.public_key).apply(
            lambda a: bare_key(a[2]) if launched_with(a[0], a[1]) else None)
    address = vm.network_interfaces.apply(
        lambda nics: (nics[0].access_configs or [None])[0].nat_ip if nics and nics[0].access_configs else None)
    return Machine(resource=vm, id=vm.id, address=address, ssh_host=address,
                   ssh_port=pulumi.Output.from_input(spec.ssh.port), ports=pulumi.Output.from_input(req.service_ports()),
                   hourly_price=pulumi.Output.from_input(req.estimate.hourly_usd), launched_host_key=launched)
