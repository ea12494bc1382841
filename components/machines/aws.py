"""An AWS GPU VM: a launch template, a security group, the account's quota checked first, and the instance.

What the VM is launched from is pinned: an AMI the stack names (``image: ami-...``) changes only when the
stack does; otherwise the newest Deep Learning AMI at first launch is kept (a newer AMI, published any day,
must not replace a running VM).
"""
from __future__ import annotations

import base64
import os
from typing import Optional, Tuple

import pulumi

from components.machines.base import Machine, MachineRequest
from core import catalog
from core.spec import Market, NodeSpec, PowerState
from core.stamps import to_tags


def region(req: MachineRequest) -> Tuple[Optional[str], Optional[pulumi.ProviderResource]]:
    """The region an AWS node runs in, and the provider that puts it there: the node's first region.
    A node in the region the default provider already uses (``aws:region``, else the SDK's
    ``AWS_REGION``/``AWS_DEFAULT_REGION``) keeps that provider, so a VM launched there before stays
    as it is; a node elsewhere gets a provider of its own region."""
    import pulumi_aws as aws

    default = pulumi.Config("aws").get("region") or os.environ.get("AWS_REGION") or \
        os.environ.get("AWS_DEFAULT_REGION")
    wanted = req.spec.regions[0] if req.spec.regions else None
    if wanted is None or wanted == default:
        return default, None
    return wanted, aws.Provider(f"{req.name}-aws-{wanted}", region=wanted, opts=pulumi.ResourceOptions(parent=req.parent))


def _market(spec: NodeSpec):
    import pulumi_aws as aws

    if spec.market is not Market.SPOT:
        return None
    return aws.ec2.LaunchTemplateInstanceMarketOptionsArgs(
        market_type="spot",
        spot_options=aws.ec2.LaunchTemplateInstanceMarketOptionsSpotOptionsArgs(
            instance_interruption_behavior="stop", spot_instance_type="persistent",
            max_price=str(spec.price_cap) if spec.price_cap else None))


def build(req: MachineRequest) -> Machine:
    import pulumi_aws as aws

    spec, name = req.spec, req.name
    opts, machine_opts = req.child(), req.machine_opts()
    where, provider = region(req)
    if provider is not None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(provider=provider))
        machine_opts = pulumi.ResourceOptions.merge(machine_opts, pulumi.ResourceOptions(provider=provider))
    tags = {"Name": req.label, **to_tags(req.stamp)}
    ingress = [aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=p, to_port=p,
                                                cidr_blocks=["0.0.0.0/0"], description=f"port {p}")
               for p in (spec.ssh.port, *req.open_ports)]
    security_group = aws.ec2.SecurityGroup(
        f"{name}-sg", description=f"{req.label}: SSH and the ports the estate publishes", ingress=ingress,
        egress=[aws.ec2.SecurityGroupEgressArgs(protocol="-1", from_port=0, to_port=0, cidr_blocks=["0.0.0.0/0"])],
        tags=tags, opts=opts)
    key_name = None
    if spec.ssh.public_key:
        key_name = aws.ec2.KeyPair(f"{name}-key", public_key=spec.ssh.public_key, tags=tags, opts=opts).key_name
    pinned = spec.image.startswith("ami-")
    image_id = spec.image if pinned else aws.ec2.get_ami(
        most_recent=True, owners=["amazon"], filters=[aws.ec2.GetAmiFilterArgs(
            name="name", values=["Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)*"])],
        opts=pulumi.InvokeOptions(provider=provider)).id
    user_data = base64.b64encode(req.cloud_init.encode()).decode()
    launch_template = aws.ec2.LaunchTemplate(
        f"{name}-lt", image_id=image_id, instance_type=req.estimate.instance_type, key_name=key_name,
        vpc_security_group_ids=[security_group.id], user_data=user_data, instance_market_options=_market(spec),
        block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
            device_name="/dev/sda1", ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                volume_size=spec.disk_gb, volume_type="gp3", encrypted="true", delete_on_termination="true"))],
        metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(http_tokens="required"),
        tag_specifications=[aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type="instance", tags=tags)],
        tags=tags, opts=opts if pinned else pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(ignore_changes=["imageId"])))
    # The account's vCPU quota for this family and market, read before the VM is launched: a new
    # account's GPU quotas are 0, and the vendor would refuse only after the rest was made.
    from providers.aws_quota import Quota

    spot = spec.market is Market.SPOT
    itype = req.estimate.instance_type
    quota = Quota(f"{name}-quota", node=name, region=where, instance_type=itype,
                  market="spot" if spot else "on-demand", vcpus=catalog.instance_types("aws")[itype]["vcpu"],
                  quota_names=catalog.aws_quota_names(itype, spot), opts=pulumi.ResourceOptions(parent=req.parent))
    vm = aws.ec2.Instance(
        f"{name}-vm", launch_template=aws.ec2.InstanceLaunchTemplateArgs(
            id=launch_template.id, version=launch_template.latest_version.apply(str)),
        tags=tags, opts=pulumi.ResourceOptions.merge(machine_opts, pulumi.ResourceOptions(depends_on=[quota])))
    # Declared for power running or stopped, so a VM the idle watcher powered off starts again at the
    # next `up` (pulumi-aws keeps this EC2 resource in its ec2transitgateway module). With power idle
    # the watcher owns the power state and nothing here starts or stops the VM.
    if spec.power is not PowerState.IDLE:
        aws.ec2transitgateway.InstanceState(f"{name}-power", instance_id=vm.id,
                                            state="stopped" if spec.power is PowerState.STOPPED else "running",
                                            opts=opts)
    # The VM prints its host keys to its console, which the EC2 API hands to the account: the key is
    # pinned from there (providers.aws_console), with nothing added to a running VM's launch template.
    return Machine(resource=vm, id=vm.id, address=vm.public_ip, ssh_host=vm.public_ip,
                   ssh_port=pulumi.Output.from_input(spec.ssh.port), ports=pulumi.Output.from_input(req.service_ports()),
                   hourly_price=pulumi.Output.from_input(req.estimate.hourly_usd),
                   console=vm.id.apply(lambda i: {"instance_id": i, "region": where}))
