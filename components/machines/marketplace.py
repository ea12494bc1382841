"""A machine rented by the hour on a GPU marketplace (TensorDock, Vast.ai, RunPod): one ``gpu:Instance``.

Nothing secret goes to the vendor: its env, start script and user-data are readable through its API and
console and by the host. Secrets follow over SSH once the machine is up.
"""
from __future__ import annotations

from components import workloads
from components.machines.base import Machine, MachineRequest, generated_host_key, key_pair
from providers.gpu_instance import GpuInstance, GpuInstanceArgs, LaunchInputs


def build(req: MachineRequest) -> Machine:
    spec = req.spec
    if spec.provider.is_container:
        image, env, ports, onstart = workloads.container_launch(spec)
        cloud_init = None
        host_key = None
    else:
        image, env, ports, onstart = spec.image, {}, workloads.published_ports(spec), ""
        cloud_init = req.cloud_init
        # A VM's cloud-init installs a host key of its own, so the first connection is verified too.
        key = generated_host_key(req)
        host_key = key_pair(key) if key is not None else None
    instance = GpuInstance(f"{req.name}-instance", GpuInstanceArgs(
        label=req.label,
        clouds=[spec.provider.value, *(p.value for p in spec.failover)],
        request=req.request,
        launch=LaunchInputs(image=image, disk_gb=spec.disk_gb, ports=list(ports), env=env, onstart=onstart,
                            ssh_public_key=spec.ssh.public_key, cloud_init=cloud_init,
                            vcpu=spec.vcpu, ram_gb=spec.ram_gb, args=workloads.docker_args(spec) or None),
        power=spec.power.value,
        bid_per_hour=spec.bid_per_hour,
        stamps={**req.stamp, "regions": list(spec.regions)},
        host_key=host_key,
    ), req.machine_opts())
    return Machine(
        resource=instance, id=instance.id, address=instance.address, ssh_host=instance.ssh_host,
        ssh_port=instance.ssh_port, ports=instance.ports,
        hourly_price=instance.launch_price_per_hour.apply(lambda p: p if p is not None else req.estimate.hourly_usd),
        launched_host_key=instance.host_public_key)
