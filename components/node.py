"""A GPU node on any provider, with the same outputs whatever it runs on: a machine and its workloads.

Its machine comes from the builder of its vendor's family (``components/machines``: a marketplace
instance, an AWS or GCP VM, an owned host adopted by address); this component delivers the workloads onto
it (compose over SSH, secret files) and says how its services are reached. Every node exposes
``address``, ``ssh_host``, ``ssh_port``, ``ports`` (service port -> reachable port), ``hourly_price`` and
``monthly_estimate`` (the stack exports them as ``nodes``), and stamps on its billing resource what the
policy pack reads.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

import pulumi

from components import machines, workloads
from components.machines import MachineRequest
from core import pricing
from core.spec import Access, NodeSpec
from core.stamps import node_stamp
from core.text import digest, install_secrets, secret_bundle
from core.vendors import Family
from providers.model_files import NodeSsh
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
        self.secret_env = dict(args.secret_env)
        self.secrets = self._secrets(name, args, child)
        self.over_ssh = workloads.delivered_over_ssh(spec, secrets=self.secrets is not None)
        vm = not spec.provider.is_container and spec.provider.info.family is not Family.HOST
        machine = machines.build(MachineRequest(
            name=name, parent=self, spec=spec, label=args.label, estimate=args.estimate, request=args.request,
            stamp=self.stamp, open_ports=tuple(args.open_ports),
            # Model files are delivered over SSH too (``files_target``).
            reached_over_ssh=args.reached_over_ssh or self.over_ssh or bool(workloads.node_files(spec)),
            # The node's cloud-init: never a secret in it. Nodes whose workloads arrive over SSH get the
            # bootstrap only, which no workload edit changes.
            cloud_init=workloads.render_cloud_init(spec, args.open_ports, workloads=not self.over_ssh) if vm else ""))
        self.machine: Optional[pulumi.Resource] = machine.resource
        """The billing resource the program rents (None for an owned host). What lives on the machine is
        ``deleted_with`` it: destroying the machine never waits on its SSH, Docker or Ollama answering."""
        self.machine_id = machine.id
        self.address = machine.address
        self.ssh_host = machine.ssh_host
        self.ssh_port = machine.ssh_port
        self.ports = machine.ports
        self.hourly_price = machine.hourly_price
        self.launched_host_key = machine.launched_host_key
        self.console = machine.console
        self.gone_with: Optional[pulumi.Resource] = self.machine
        """What the node's own resources (workloads, secrets, models) are deleted with: its machine, or on an
        owned host the cleanup that removes them over SSH and only warns where the host does not answer."""
        if self.machine is None and (self.over_ssh or workloads.secrets_over_ssh(spec)):
            self.gone_with = self._owned_host_cleanup(name, spec, child)
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

    def on_machine(self, opts: pulumi.ResourceOptions, depends_on: Optional[list] = None) -> pulumi.ResourceOptions:
        """Options for a resource that lives on this node's machine: made after it, and deleted with it (or
        with an owned host's cleanup) rather than by itself."""
        return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
            depends_on=(depends_on or []) + ([self.gone_with] if self.gone_with is not None else []),
            deleted_with=self.gone_with))

    def _owned_host_cleanup(self, name: str, spec: NodeSpec, opts: pulumi.ResourceOptions) -> pulumi.Resource:
        """On a host the estate does not rent, nothing is deleted with a machine: the node's workloads and
        secret files are removed by its cleanup (``cleanup``)."""
        return self.cleanup(
            f"{name}-cleanup", script=f"{workloads.teardown_script()}\nrm -rf {workloads.SECRETS_DIR}\n",
            left=(f"the estate's compose project {workloads.COMPOSE_FILE} and its containers, and the secret files "
                  f"under {workloads.SECRETS_DIR}; the data directories under {workloads.DATA_DIR} are yours and "
                  "stay either way"), opts=opts)

    def cleanup(self, name: str, script: pulumi.Input[str], left: pulumi.Input[str],
                opts: pulumi.ResourceOptions) -> pulumi.Resource:
        """A cleanup of this (owned) host: ``script`` runs over SSH, with the node's pinned host key, when it is
        deleted, and where the host does not answer it warns naming ``left`` there and lets the destroy go on
        to what bills (``providers.host_cleanup``). Commands it removes are ``deleted_with`` it."""
        from providers.host_cleanup import HostCleanup, HostCleanupArgs

        spec = self.spec
        return HostCleanup(name, HostCleanupArgs(
            node=self._name, host=self.ssh_host, port=self.ssh_port.apply(lambda p: int(p or spec.ssh.port)),
            user=spec.ssh.user, host_key=self.host_key(), script=script, left=left), opts)

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

    def files_target(self) -> pulumi.Output:
        """How ``providers.model_files`` reaches this node's machine (a container node's one container) over
        SSH: its endpoint, user, pinned host key and where the operator's key is (``ssh.private_key_env``,
        else the config secret or the SSH agent); None until the machine has an SSH endpoint."""
        spec = self.spec

        def target(args):
            host, port, host_key = args
            return None if not host else dataclasses.asdict(NodeSsh(
                host=host, port=int(port or spec.ssh.port), user=spec.ssh.user, host_key=host_key,
                key_env=spec.ssh.private_key_env))
        return pulumi.Output.all(self.ssh_host, self.ssh_port, self.host_key()).apply(target)

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
