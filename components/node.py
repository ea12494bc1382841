"""A GPU node on any provider, with the same outputs whatever it runs on.

TensorDock, Vast.ai and RunPod nodes are one ``GpuInstance`` dynamic resource; AWS and GCP nodes are
pulumi-aws / pulumi-gcp VMs with a firewall; an owned host is adopted by address. Every node exposes
``address``, ``ssh_host``, ``ssh_port``, ``ports`` (service port -> reachable port), ``hourly_price`` and
``monthly_estimate`` (the stack exports them as ``nodes``), and stamps on its billing resource what the
policy pack reads.
"""
from __future__ import annotations

import base64
import dataclasses
import os
from typing import Any, Dict, Optional

import pulumi

from components import workloads
from core import catalog, pricing
from core.spec import Access, Market, NodeSpec, PowerState
from core.vendors import Vendor
from core.stamps import node_stamp, to_tags
from core.text import bare_key, digest, install_secrets, secret_bundle
from providers.gpu_instance import GpuInstance, GpuInstanceArgs, LaunchInputs
from providers.host_key import install_in_cloud_init, launched_with
from providers.ollama import SshTarget

TYPE = "gpu-estate:index:GpuNode"


@dataclasses.dataclass(frozen=True)
class GpuNodeArgs:
    spec: NodeSpec
    """The node as the stack's config gives it."""
    label: str
    """Deterministic name the node carries at its provider: ``<project>-<stack>-<node>``."""
    estimate: pricing.NodeEstimate
    """The planned price, from the plan."""
    request: Optional[pricing.NodeRequest] = None
    """The placement request, from the plan (None for an owned host)."""
    open_ports: tuple = ()
    """Ports the node's own firewall opens besides SSH (the reverse proxy's 80/443 where it runs)."""
    bucket_access: Dict[str, pulumi.Output] = dataclasses.field(default_factory=dict)
    """Bucket name -> ``workloads.BucketAccess`` output for the buckets this node reads and writes."""
    secret_env: Dict[str, Any] = dataclasses.field(default_factory=dict)
    """Values (secret outputs) of the ``secret_env`` names this node's workloads list."""
    ssh_private_key: Optional[Any] = None
    """The operator's SSH key (secret output) for remote commands; None uses the SSH agent."""
    reached_over_ssh: bool = False
    """Whether the estate connects to this node over SSH beyond its own needs (the gateway host deployed
    over SSH, a tunnelled node)."""


class GpuNode(pulumi.ComponentResource):
    address: pulumi.Output[Optional[str]]
    """Public address of the node (None until a marketplace instance is up)."""
    ssh_host: pulumi.Output[Optional[str]]
    ssh_port: pulumi.Output[Optional[int]]
    ports: pulumi.Output[Dict[str, int]]
    """Service port on the node -> port that reaches it at ``address``/``ssh_host``."""
    hourly_price: pulumi.Output[float]
    monthly_estimate: pulumi.Output[float]

    def __init__(self, name: str, args: GpuNodeArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE, name, None, opts)
        spec = args.spec
        self.spec = spec
        self.stamp = node_stamp(name, spec, args.estimate)
        self._ssh_private_key = args.ssh_private_key
        self._name = name
        child = pulumi.ResourceOptions(parent=self)
        # Only the machine itself is protected (what lives on it is deleted with it anyway).
        machine_opts = pulumi.ResourceOptions(parent=self, protect=True) if spec.protect else child
        self.secret_env = dict(args.secret_env)
        self.secrets = self._secrets(name, args, child)
        self.launched_host_key: Optional[pulumi.Output] = None
        """The host key the machine was launched with, where the program generated and installed it."""
        self.console: Optional[pulumi.Output] = None
        """Where the machine's console prints its host keys (an AWS VM's ``{instance_id, region}``)."""
        self.over_ssh = workloads.delivered_over_ssh(spec, secrets=self.secrets is not None)
        if spec.provider.is_marketplace:
            self._create_marketplace(name, args, machine_opts)
        elif spec.provider is Vendor.AWS:
            self._create_aws(name, args, child, machine_opts)
        elif spec.provider is Vendor.GCP:
            self._create_gcp(name, args, child, machine_opts)
        else:
            self._adopt_host(spec)
        self.workloads_ready: list = []
        if self.over_ssh:
            self._deliver_workloads(name, spec, child)
        elif workloads.secrets_over_ssh(spec):
            # The same test decides that its start script waits for them (``workloads.container_start``).
            self._deliver_secrets(name, spec, child)
        self.monthly_estimate = pulumi.Output.from_input(args.estimate.monthly_usd)
        # No register_outputs: the node's outputs are the stack's ``nodes`` export. As component outputs
        # they were a copy in state, and their registration, made as the machine came up, was one more
        # write of the whole checkpoint per node (a diy backend writes it after every step, one write at a
        # time) between the machine and its model pulls.

    def _create_marketplace(self, name: str, args: GpuNodeArgs, opts: pulumi.ResourceOptions) -> None:
        spec = args.spec
        # Nothing secret goes to the vendor: its env, start script and user-data are readable through its
        # API and console and by the host. Secrets follow over SSH once the machine is up.
        if spec.provider.is_container:
            image, env, ports, onstart = workloads.container_launch(spec)
            cloud_init = None
        else:
            image, env, ports, onstart = spec.image, {}, workloads.published_ports(spec), ""
            cloud_init = self._cloud_init(args)
        host_key = self._generated_host_key(name, args) if spec.provider is Vendor.TENSORDOCK else None
        self.instance = GpuInstance(f"{name}-instance", GpuInstanceArgs(
            label=args.label,
            clouds=[spec.provider.value, *(p.value for p in spec.failover)],
            request=args.request,
            launch=LaunchInputs(image=image, disk_gb=spec.disk_gb, ports=list(ports), env=env, onstart=onstart,
                                ssh_public_key=spec.ssh.public_key, cloud_init=cloud_init,
                                vcpu=spec.vcpu, ram_gb=spec.ram_gb, args=workloads.docker_args(spec) or None),
            power=spec.power.value,
            bid_per_hour=spec.bid_per_hour,
            stamps={**self.stamp, "regions": list(spec.regions)},
            host_key=host_key,
        ), opts)
        self.machine_id = self.instance.id
        self.launched_host_key = self.instance.host_public_key
        self.address = self.instance.address
        self.ssh_host = self.instance.ssh_host
        self.ssh_port = self.instance.ssh_port
        self.ports = self.instance.ports
        self.hourly_price = self.instance.launch_price_per_hour.apply(
            lambda p: p if p is not None else args.estimate.hourly_usd)

    def _generated_host_key(self, name: str, args: GpuNodeArgs) -> Optional[pulumi.Output]:
        """A host key of its own for the sshd of a VM the program launches and connects to, known before
        first contact because its cloud-init installs it (``providers.host_key``): ``{private, public}``
        as a secret, or None for a node the program never reaches over SSH."""
        spec = args.spec
        if not (spec.access is Access.SSH or self.over_ssh or args.reached_over_ssh):
            return None
        from providers.ssh_key import SshKey

        self.ssh_host_key = SshKey(f"{name}-ssh-host-key", comment=f"{args.label} host key",
                                   opts=pulumi.ResourceOptions(parent=self))
        return pulumi.Output.secret(pulumi.Output.all(private=self.ssh_host_key.private_key,
                                                      public=self.ssh_host_key.public_key))

    def host_key(self) -> pulumi.Output[str]:
        """The node's SSH host key that every connection to it verifies: the stack's ``ssh.host_key``, else
        the one recorded on first contact with this machine (``providers.host_key``)."""
        if getattr(self, "_host_key", None) is None:
            from providers.host_key import HostKey

            machine = (self.machine_id if self.machine is not None
                       else pulumi.Output.from_input(f"host:{self.spec.address}"))
            expected = self.spec.ssh.host_key or self.launched_host_key
            resource = HostKey(f"{self._name}-host-key", node=self._name, host=self.ssh_host,
                               port=self.ssh_port.apply(lambda p: int(p or self.spec.ssh.port)), machine=machine,
                               expected=expected, console=self.console,
                               opts=self.on_machine(pulumi.ResourceOptions(parent=self)))
            self._host_key = resource.host_key
        return self._host_key

    def ssh_connection(self):
        """How pulumi-command reaches the node: its SSH endpoint, its pinned host key and the operator key
        (config secret ``gpu-estate:sshPrivateKey``, else the SSH agent)."""
        from pulumi_command import remote

        return remote.ConnectionArgs(
            host=self.ssh_host, port=self.ssh_port.apply(lambda p: float(p or self.spec.ssh.port)),
            user=self.spec.ssh.user, private_key=self._ssh_private_key, host_key=self.host_key())

    def command(self, name: str, create: pulumi.Input[str], delete: pulumi.Input[str], opts: pulumi.ResourceOptions,
                depends: Optional[list] = None, stdin: Optional[pulumi.Input[str]] = None,
                silent: bool = False):
        """A command run on this node's machine over SSH that never undoes itself.

        pulumi-command replaces a command whose ``triggers`` change create-before-delete, so the old
        command's ``delete`` (compose down, removing secret files, disabling units) would run on the host
        after its replacement started everything again. These commands have no triggers: a changed script,
        secret bundle or connection is an update, which runs ``create`` again in place, and ``delete`` runs
        only when the command itself goes (never when the machine goes: ``deleted_with``). A new machine
        (replaced or re-rented) changes the script's first line, so it gets everything again. Should a
        replace ever be forced, the old ``delete`` runs before the new ``create``."""
        from pulumi_command import remote

        script = pulumi.Output.all(self.machine_id, create).apply(lambda a: f"# machine {a[0]}\n{a[1]}")
        return remote.Command(
            name, connection=self.ssh_connection(), create=script, delete=delete, stdin=stdin,
            logging="none" if silent else None,
            opts=pulumi.ResourceOptions.merge(self.on_machine(opts, depends),
                                              pulumi.ResourceOptions(delete_before_replace=True)))

    def _secret_bundle(self, spec: NodeSpec) -> pulumi.Output:
        return pulumi.Output.secret(self.secrets.apply(lambda s: secret_bundle(workloads.secret_files(spec, s))))

    def _deliver_secrets(self, name: str, spec: NodeSpec, opts: pulumi.ResourceOptions) -> None:
        """A container node's secret files over SSH; its workloads wait for them and start again when they
        change (``workloads.container_start``)."""
        self.deploy = self.command(
            f"{name}-secrets", create=f"{install_secrets(workloads.SECRETS_MANIFEST)}; "
                                      f"{workloads.restart_after_secrets()}",
            delete=f"rm -rf {workloads.SECRETS_DIR}", stdin=self._secret_bundle(spec), silent=True, opts=opts)
        self.workloads_ready = [self.deploy]

    def _deliver_workloads(self, name: str, spec: NodeSpec, opts: pulumi.ResourceOptions) -> None:
        """The compose project (and its secret files) over SSH: a changed workload re-runs
        ``docker compose up``, which recreates exactly the services whose configuration changed, while the
        VM, the other containers and the data directories stay."""
        depends = []
        secrets_line: pulumi.Input[str] = ""
        if self.secrets is not None:
            bundle = self._secret_bundle(spec)
            # The deploy runs again when a secret changes, so containers reading it are recreated.
            secrets_line = bundle.apply(lambda b: f"# secrets {digest(b)}\n")
            depends.append(self.command(
                f"{name}-secrets", create=install_secrets(workloads.SECRETS_MANIFEST),
                delete=f"rm -rf {workloads.SECRETS_DIR}", stdin=bundle, silent=True, opts=opts))
        script = self.secrets.apply(lambda s: workloads.deploy_script(spec, s)) if self.secrets is not None \
            else workloads.deploy_script(spec)
        self.deploy = self.command(
            f"{name}-workloads", create=pulumi.Output.concat(secrets_line, script),
            delete=workloads.teardown_script(), opts=opts, depends=depends)
        self.workloads_ready = [self.deploy]

    def _machine(self) -> list:
        return [r for r in (getattr(self, "instance", None), getattr(self, "vm", None)) if r is not None]

    @property
    def machine(self) -> Optional[pulumi.Resource]:
        """The billing resource the program rents (None for an owned host). What lives on the machine is
        ``deleted_with`` it: destroying the machine never waits on its SSH, Docker or Ollama answering."""
        found = self._machine()
        return found[0] if found else None

    def on_machine(self, opts: pulumi.ResourceOptions, depends_on: Optional[list] = None) -> pulumi.ResourceOptions:
        """Options for a resource that lives on this node's machine."""
        return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
            depends_on=(depends_on or []) + self._machine(), deleted_with=self.machine))

    def _secrets(self, name: str, args: GpuNodeArgs, opts: pulumi.ResourceOptions) -> Optional[pulumi.Output]:
        """The node's secrets as one secret output: the generated pgvector password, bucket credentials."""
        spec = args.spec
        parts: Dict[str, pulumi.Input] = {}
        if any(w.generated_password for w in spec.workloads.values()):
            import pulumi_random as random

            self.pg_password = random.RandomPassword(f"{name}-pg-password", length=32, special=False, opts=opts)
            parts["pg"] = self.pg_password.result
        for bucket, access in args.bucket_access.items():
            parts[f"bucket:{bucket}"] = access
        parts.update({f"env:{n}": v for n, v in self.secret_env.items()})
        if not parts:
            return None
        return pulumi.Output.secret(pulumi.Output.all(**parts)).apply(lambda p: workloads.NodeSecrets(
            pg_password=p.get("pg"),
            buckets={k.removeprefix("bucket:"): v for k, v in p.items() if k.startswith("bucket:")},
            env={k.removeprefix("env:"): v for k, v in p.items() if k.startswith("env:")}))

    def _cloud_init(self, args: GpuNodeArgs) -> str:
        """The node's cloud-init: never a secret in it. Nodes whose workloads arrive over SSH get the
        bootstrap only, which no workload edit changes."""
        return workloads.render_cloud_init(args.spec, args.open_ports, workloads=not self.over_ssh)

    def _service_ports(self, spec: NodeSpec) -> Dict[str, int]:
        return {str(spec.port(n)): spec.port(n) for n in spec.workloads}

    def _create_aws(self, name: str, args: GpuNodeArgs, opts: pulumi.ResourceOptions,
                    machine_opts: pulumi.ResourceOptions) -> None:
        import pulumi_aws as aws

        spec = args.spec
        region, provider = self._aws_region(name, spec)
        if provider is not None:
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(provider=provider))
            machine_opts = pulumi.ResourceOptions.merge(machine_opts, pulumi.ResourceOptions(provider=provider))
        tags = {"Name": args.label, **to_tags(self.stamp)}
        ingress = [aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=p, to_port=p,
                                                    cidr_blocks=["0.0.0.0/0"], description=f"port {p}")
                   for p in (spec.ssh.port, *args.open_ports)]
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg", description=f"{args.label}: SSH and the ports the estate publishes", ingress=ingress,
            egress=[aws.ec2.SecurityGroupEgressArgs(protocol="-1", from_port=0, to_port=0, cidr_blocks=["0.0.0.0/0"])],
            tags=tags, opts=opts)
        key_name = None
        if spec.ssh.public_key:
            self.key_pair = aws.ec2.KeyPair(f"{name}-key", public_key=spec.ssh.public_key, tags=tags, opts=opts)
            key_name = self.key_pair.key_name
        # What the VM is launched from is pinned: an AMI the stack names (``image: ami-...``) changes only
        # when the stack does; otherwise the newest Deep Learning AMI at first launch is kept (a newer
        # AMI, published any day, must not replace a running VM).
        pinned = spec.image.startswith("ami-")
        image_id = spec.image if pinned else aws.ec2.get_ami(
            most_recent=True, owners=["amazon"], filters=[aws.ec2.GetAmiFilterArgs(
                name="name", values=["Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)*"])],
            opts=pulumi.InvokeOptions(provider=provider)).id
        market = None
        if spec.market is Market.SPOT:
            market = aws.ec2.LaunchTemplateInstanceMarketOptionsArgs(
                market_type="spot",
                spot_options=aws.ec2.LaunchTemplateInstanceMarketOptionsSpotOptionsArgs(
                    instance_interruption_behavior="stop", spot_instance_type="persistent",
                    max_price=str(spec.max_price_per_hour) if spec.max_price_per_hour else None))
        user_data = base64.b64encode(self._cloud_init(args).encode()).decode()
        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-lt", image_id=image_id, instance_type=args.estimate.instance_type, key_name=key_name,
            vpc_security_group_ids=[self.security_group.id], user_data=user_data, instance_market_options=market,
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
        itype = args.estimate.instance_type
        self.quota = Quota(f"{name}-quota", node=name, region=region, instance_type=itype,
                           market="spot" if spot else "on-demand",
                           vcpus=catalog.instance_types("aws")[itype]["vcpu"],
                           quota_names=catalog.aws_quota_names(itype, spot), opts=pulumi.ResourceOptions(parent=self))
        self.vm = aws.ec2.Instance(
            f"{name}-vm", launch_template=aws.ec2.InstanceLaunchTemplateArgs(
                id=self.launch_template.id, version=self.launch_template.latest_version.apply(str)),
            tags=tags, opts=pulumi.ResourceOptions.merge(machine_opts, pulumi.ResourceOptions(depends_on=[self.quota])))
        # Declared for power running or stopped, so a VM the idle watcher powered off starts again at the
        # next `up` (pulumi-aws keeps this EC2 resource in its ec2transitgateway module). With power idle
        # the watcher owns the power state and nothing here starts or stops the VM.
        if spec.power is not PowerState.IDLE:
            aws.ec2transitgateway.InstanceState(f"{name}-power", instance_id=self.vm.id,
                                  state="stopped" if spec.power is PowerState.STOPPED else "running", opts=opts)
        # The VM prints its host keys to its console, which the EC2 API hands to the account: the key is
        # pinned from there (providers.aws_console), with nothing added to a running VM's launch template.
        self.console = self.vm.id.apply(lambda i: {"instance_id": i, "region": region})
        self.machine_id = self.vm.id
        self.address = self.vm.public_ip
        self.ssh_host = self.vm.public_ip
        self.ssh_port = pulumi.Output.from_input(spec.ssh.port)
        self.ports = pulumi.Output.from_input(self._service_ports(spec))
        self.hourly_price = pulumi.Output.from_input(args.estimate.hourly_usd)

    def _aws_region(self, name: str, spec: NodeSpec):
        """The region an AWS node runs in, and the provider that puts it there: the node's first region.
        A node in the region the default provider already uses (``aws:region``, else the SDK's
        ``AWS_REGION``/``AWS_DEFAULT_REGION``) keeps that provider, so a VM launched there before stays
        as it is; a node elsewhere gets a provider of its own region."""
        import pulumi_aws as aws

        default = pulumi.Config("aws").get("region") or os.environ.get("AWS_REGION") or \
            os.environ.get("AWS_DEFAULT_REGION")
        wanted = spec.regions[0] if spec.regions else None
        if wanted is None or wanted == default:
            return default, None
        return wanted, aws.Provider(f"{name}-aws-{wanted}", region=wanted, opts=pulumi.ResourceOptions(parent=self))

    def _create_gcp(self, name: str, args: GpuNodeArgs, opts: pulumi.ResourceOptions,
                    machine_opts: pulumi.ResourceOptions) -> None:
        import pulumi_gcp as gcp

        spec = args.spec
        row = catalog.instance_types("gcp")[args.estimate.instance_type]
        zone = spec.regions[0] if spec.regions else "us-east1-c"
        labels = to_tags(self.stamp)
        tag = f"estate-{name}"
        self.firewall = gcp.compute.Firewall(
            f"{name}-fw", network="default", target_tags=[tag], source_ranges=["0.0.0.0/0"],
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp",
                                                  ports=[str(p) for p in (spec.ssh.port, *args.open_ports)])],
            description=f"{args.label}: SSH and the ports the estate publishes", opts=opts)
        spot = spec.market is Market.SPOT
        bootstrap = self._cloud_init(args)
        metadata: Dict[str, pulumi.Input[str]] = {"user-data": bootstrap}
        host_key = self._generated_host_key(name, args)
        if host_key is not None:
            # GCP updates metadata in place: a VM launched before the key keeps its own (see below).
            metadata["user-data"] = pulumi.Output.secret(host_key.apply(lambda k: install_in_cloud_init(
                bootstrap, k["private"], k["public"])))
        if spec.ssh.public_key:
            metadata["ssh-keys"] = f"{spec.ssh.user}:{spec.ssh.public_key}"
        self.vm = gcp.compute.Instance(
            f"{name}-vm", name=args.label, zone=zone, machine_type=row["machine_type"], tags=[tag], labels=labels,
            boot_disk=gcp.compute.InstanceBootDiskArgs(initialize_params=gcp.compute.InstanceBootDiskInitializeParamsArgs(
                image="projects/deeplearning-platform-release/global/images/family/common-cu124-ubuntu-2204-py310",
                size=spec.disk_gb)),
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
            opts=machine_opts)
        if host_key is not None:
            # Only a VM launched after the key existed booted with it; an older one keeps the key it had,
            # which is then recorded on first contact.
            self.launched_host_key = pulumi.Output.all(self.vm.creation_timestamp, self.ssh_host_key.created_at,
                                                       self.ssh_host_key.public_key).apply(
                lambda a: bare_key(a[2]) if launched_with(a[0], a[1]) else None)
        self.machine_id = self.vm.id
        self.address = self.vm.network_interfaces.apply(
            lambda nics: (nics[0].access_configs or [None])[0].nat_ip if nics and nics[0].access_configs else None)
        self.ssh_host = self.address
        self.ssh_port = pulumi.Output.from_input(spec.ssh.port)
        self.ports = pulumi.Output.from_input(self._service_ports(spec))
        self.hourly_price = pulumi.Output.from_input(args.estimate.hourly_usd)

    def _adopt_host(self, spec: NodeSpec) -> None:
        self.machine_id = pulumi.Output.from_input(spec.address)
        self.address = pulumi.Output.from_input(spec.address)
        self.ssh_host = pulumi.Output.from_input(spec.address)
        self.ssh_port = pulumi.Output.from_input(spec.ssh.port)
        self.ports = pulumi.Output.from_input(self._service_ports(spec))
        self.hourly_price = pulumi.Output.from_input(0.0)

    def service_target(self, workload: str) -> Dict[str, pulumi.Input]:
        """How a provider on the operator's machine reaches one of the node's services: an ``endpoint``
        URL for directly reachable nodes, or the ``ssh`` forward to the node's loopback otherwise.
        ``instance`` changes when the machine does, so what lives on it is checked again."""
        spec = self.spec
        port = spec.port(workload)
        if spec.access is Access.SSH:
            def ssh(args):
                host, ssh_port, host_key = args
                return None if not host else dataclasses.asdict(SshTarget(
                    host=host, port=ssh_port or spec.ssh.port, user=spec.ssh.user,
                    key_env=spec.ssh.private_key_env, remote_port=port, host_key=host_key))
            return {"endpoint": None, "ssh": pulumi.Output.all(self.ssh_host, self.ssh_port, self.host_key()).apply(ssh),
                    "instance": self.machine_id}

        def url(args):
            address, ports = args
            return f"http://{address}:{(ports or {}).get(str(port), port)}" if address else None
        return {"endpoint": pulumi.Output.all(self.address, self.ports).apply(url), "ssh": None,
                "instance": self.machine_id}
