"""The gateway: LiteLLM with its tunnels and the edge connector, on the host the stack names.

One component, two ways to deploy, the same outputs (``url``, ``master_key``, ``config``, ``tunnels``):

- ``deploy: ssh``: over SSH on the gateway node. The gateway's config depends on other nodes (their
  addresses, their prices), so it is not baked into any node's cloud-init, which would replace a VM
  whenever another node changed. pulumi-command's ``remote.Command`` writes the files and units over SSH
  instead (``GpuNode.command``): a changed config or unit is an update that writes the files again and
  restarts the units in place; nothing is replaced, so no old command's delete stops them afterwards.
  Secrets (the master key, external API keys, the tunnel key, the Cloudflare
  connector token) travel on the command's stdin as Pulumi secrets, land in 0600 files, and are never
  part of a command line, a file the proxy renders, or the log (those commands log nothing).
  The tunnels sign in with a key of their own (``providers.ssh_key``), generated for the estate and
  authorized on each tunnelled node only for the forwards the gateway needs: the operator's key never
  sits on the internet-facing gateway host.
- ``deploy: local``: a LiteLLM process on the machine running `pulumi up` (``providers.local_gateway``),
  reaching nodes directly, or a node reached over SSH through an ``ssh -N`` forward of its own on free
  local ports (``providers.local_tunnel``, the operator's key, the node's pinned host key); for a
  workstation and the sandbox.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from typing import Any, Dict, List, Mapping, Optional, Tuple

import pulumi

from components import gateway as gw
from components.stack import StackSecrets
from core import health, identity, spend
from core.text import RUN_STDIN, digest, heredoc_script, install_secrets, secret_bundle
from core.topology import EstatePlan

TYPE = "gpu-estate:index:Gateway"


def identity_env(keys: Mapping[str, str], bearer: str) -> str:
    """The identity proxy's env file: each service's key file as one line of JSON (``docker --env-file`` takes
    a value as it stands), and the bearer it accepts."""
    doc = {n: json.loads(k) for n, k in sorted(keys.items())}
    return (f"{identity.KEYS_ENV}={json.dumps(doc, sort_keys=True, separators=(',', ':'))}\n"
            f"{identity.BEARER_ENV}={bearer}\n")


def render_outputs(plan: EstatePlan, nodes: Mapping[str, Any], pinned: bool = False,
                   serverless: Optional[Mapping[str, pulumi.Input[str]]] = None, library: bool = False,
                   forwarded: Optional[Mapping[str, pulumi.Output]] = None,
                   services: Optional[Mapping[str, pulumi.Input[str]]] = None,
                   identity_url: Optional[pulumi.Input[str]] = None) -> pulumi.Output:
    """(LiteLLM config, gateway units, tunnels' known_hosts, the files of its config directory) once the
    nodes the gateway reaches directly
    have addresses, every node its price and every serverless endpoint its OpenAI route; the tunnelled
    nodes' SSH hosts go into the autossh units and, with ``pinned``, their host keys into the known_hosts
    the units verify. ``forwarded`` (a local gateway) gives the ports of 127.0.0.1 its own forwards reach
    each tunnelled node's services on; ``identity_url`` (a local gateway) where its identity proxy listens."""
    spec = plan.spec
    direct = {n: pulumi.Output.all(nodes[n].address, nodes[n].ports) for n in spec.nodes
              if spec.nodes[n].access.value == "direct" and n != spec.gateway.node}
    prices = {n: nodes[n].hourly_price for n in spec.nodes}
    ssh = {n: pulumi.Output.all(nodes[n].ssh_host, nodes[n].ssh_port, *([nodes[n].host_key()] if pinned else []))
           for n in plan.tunnels}
    # The wake hook starts its aliases' nodes; the spend watcher looks at every pay-per-use node.
    watched = [n for n, node in spec.nodes.items() if node.is_pay_per_use] if spec.spend is not None else []
    # The health agent asks the marketplace whether an idle node is stopped before calling it down.
    asleep = [n for n, node in spec.nodes.items() if node.power.value == "idle"] if spec.health is not None else []
    machines = {n: nodes[n].machine_id for n in [*(n for w in plan.wake.values() for n in w.nodes), *watched, *asleep]}

    def render(args: Dict[str, Any]) -> Tuple[str, Dict[str, str]]:
        endpoints = {n: tuple(v) for n, v in args["direct"].items()}
        # Numbers read back from state may be floats: a URL takes the port as an integer.
        endpoints.update({n: ("127.0.0.1", {k: int(v) for k, v in (ports or {}).items()})
                          for n, ports in args["forwarded"].items()})
        hourly = {n: float(p) for n, p in args["prices"].items() if p is not None}
        doc = gw.litellm_config(plan, endpoints, hourly, args["serverless"], args["services"], args["identity"] or None)
        config = gw.config_text(doc)
        hosts = {n: (v[0], int(v[1] or spec.nodes[n].ssh.port), spec.nodes[n].ssh.user, *v[2:])
                 for n, v in args["ssh"].items()}
        watch = (spend.watch_document(spec, f"{pulumi.get_project()}-{pulumi.get_stack()}", args["machines"], hourly)
                 if spec.spend is not None else None)
        checks = (health.check_document(plan, f"{pulumi.get_project()}-{pulumi.get_stack()}", endpoints, args["machines"],
                                        hourly, doc) if spec.health is not None else None)
        signed = identity.document(spec.services, args["services"]) if identity.needs_proxy(spec.services) else None
        files = gw.gateway_files(plan, config, args["machines"], endpoints, library, watch, checks, signed)
        return config, gw.gateway_units(plan, hosts), gw.known_hosts(hosts), files

    return pulumi.Output.all(machines=pulumi.Output.all(**machines) if machines else {},
                             direct=pulumi.Output.all(**direct) if direct else {},
                             prices=pulumi.Output.all(**prices), ssh=pulumi.Output.all(**ssh) if ssh else {},
                             serverless=pulumi.Output.all(**serverless) if serverless else {},
                             services=pulumi.Output.all(**services) if services else {},
                             forwarded=pulumi.Output.all(**forwarded) if forwarded else {},
                             identity=identity_url or "").apply(render)


@dataclasses.dataclass(frozen=True)
class GatewayArgs:
    plan: EstatePlan
    """The estate's plan: aliases, serving nodes, tunnels, prices."""
    nodes: Mapping[str, Any]
    """Node name -> its ``GpuNode`` (addresses, prices, SSH connection)."""
    secrets: StackSecrets
    """External API keys and the operator's SSH key."""
    state_dir: str = ""
    """``deploy: local``: where the process keeps its config, log and pid."""
    edge_units: Optional[pulumi.Output] = None
    """Units of the edge (connector or Caddy) to run beside LiteLLM."""
    edge_secrets: Mapping[str, pulumi.Output] = dataclasses.field(default_factory=dict)
    """Path on the host -> secret file content, for the edge."""
    serverless: Mapping[str, pulumi.Input[str]] = dataclasses.field(default_factory=dict)
    """Serverless endpoint name -> its OpenAI route (known once RunPod has given it an id)."""
    services: Mapping[str, pulumi.Input[str]] = dataclasses.field(default_factory=dict)
    """Hosted service name -> its URL (known once its vendor has given it one)."""
    service_keys: Mapping[str, pulumi.Input[str]] = dataclasses.field(default_factory=dict)
    """The gateway's env name -> the bearer a hosted service's provider made (a secret), which its route sends."""
    service_identities: Mapping[str, pulumi.Input[str]] = dataclasses.field(default_factory=dict)
    """Hosted service name -> the key file (JSON, a secret) of the account the gateway invokes it as, for a
    service checking a Google ID token: the identity proxy's (``agents.identity``)."""
    ready: List[pulumi.Resource] = dataclasses.field(default_factory=list)
    """What must exist before the gateway routes to it (the model library, the serverless endpoints)."""


class Gateway(pulumi.ComponentResource):
    url: pulumi.Output[str]
    """Where clients on the gateway host reach LiteLLM."""
    master_key: pulumi.Output[str]
    """LiteLLM's master key (a secret)."""
    config: pulumi.Output[str]
    """The rendered LiteLLM config, exactly as the gateway runs it."""
    tunnels: Dict[str, List[Tuple[int, int]]]
    """Node -> (remote port, local port) forwards the gateway host keeps."""
    status_url: Optional[pulumi.Output[str]] = None
    """Where the health agent's status view, document and metrics answer on the gateway host (with ``health``)."""

    def __init__(self, name: str, args: GatewayArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE, name, None, opts)
        plan = args.plan
        g = plan.spec.gateway
        self.tunnels = {n: [(f.remote, f.local) for f in fwds] for n, fwds in plan.tunnels.items()}
        forwarded = self._create_local_tunnels(name, args) if g.deploy == "local" else None
        self.identity_bearer = self._identity(name, args)
        rendered = render_outputs(plan, args.nodes, pinned=g.deploy != "local", serverless=args.serverless,
                                  services=args.services, library=g.deploy != "local", forwarded=forwarded,
                                  identity_url=self.identity_url)
        self.config = rendered.apply(lambda r: r[0])
        self.files = rendered.apply(lambda r: r[3])
        if g.deploy == "local":
            self._create_local(name, args, opts)
        else:
            self._create_ssh(name, args, rendered.apply(lambda r: r[1]), rendered.apply(lambda r: r[2]))
        self.register_outputs({"url": self.url, "master_key": self.master_key, "config": self.config,
                               "tunnels": self.tunnels})

    @property
    def watcher(self) -> Optional[pulumi.Resource]:
        """What a GPU job waits for before its machine is rented: the local spend watcher's process, or the
        gateway host's deploy, which enables the spend watcher's timer."""
        return getattr(self, "spend_watcher", None) or getattr(self, "deploy", None)

    def _identity(self, name: str, args: GatewayArgs) -> Optional[pulumi.Output]:
        """With a service checking a Google ID token: the bearer LiteLLM's route presents to the identity proxy
        (a secret), and on a local gateway the proxy's process (``providers.local_identity``), whose free port
        the config reads. None without one."""
        self.identity_url: Optional[pulumi.Output] = None
        signed = identity.needs_proxy(args.plan.spec.services)
        if not signed:
            return None
        import pulumi_random as random

        child = pulumi.ResourceOptions(parent=self)
        password = random.RandomPassword(f"{name}-identity-bearer", length=40, special=False, opts=child)
        bearer = pulumi.Output.secret(password.result)
        if args.plan.spec.gateway.deploy == "local":
            from providers.local_identity import LocalIdentityProxy, LocalIdentityProxyArgs

            urls = pulumi.Output.all(**{n: args.services[n] for n in signed}).apply(
                lambda u: json.dumps(identity.document(args.plan.spec.services, u), indent=2, sort_keys=True) + "\n")
            self.identity_proxy = LocalIdentityProxy(f"{name}-identity", LocalIdentityProxyArgs(
                document=urls, state_dir=args.state_dir, bearer=bearer,
                keys=pulumi.Output.secret(pulumi.Output.all(**{n: args.service_identities[n] for n in signed})),
            ), child)
            self.identity_url = self.identity_proxy.url
        return bearer

    def _create_local_tunnels(self, name: str, args: GatewayArgs) -> Dict[str, pulumi.Output]:
        """``deploy: local``: an SSH forward process of its own to each serving node it reaches over SSH
        (``providers.local_tunnel``); node -> its ports on 127.0.0.1, which the config reads."""
        from providers.local_tunnel import LocalTunnel, LocalTunnelArgs

        spec = args.plan.spec
        self.local_tunnels: Dict[str, Any] = {}
        for node, forwards in sorted(args.plan.tunnels.items()):
            if not spec.nodes[node].power.serves:
                continue  # a stopped node: nothing answers there (the aliases it serves fall back)
            n, ssh = args.nodes[node], spec.nodes[node].ssh
            self.local_tunnels[node] = LocalTunnel(f"{name}-tunnel-{node}", LocalTunnelArgs(
                node=node, host=n.ssh_host, port=n.ssh_port.apply(lambda p, default=ssh.port: int(p or default)),
                user=ssh.user, host_key=n.host_key(), remote_ports=[f.remote for f in forwards],
                state_dir=args.state_dir), pulumi.ResourceOptions(parent=self))
        return {node: t.ports for node, t in self.local_tunnels.items()}

    def _create_local(self, name: str, args: GatewayArgs, opts: Optional[pulumi.ResourceOptions]) -> None:
        from providers.local_gateway import LocalGateway, LocalGatewayArgs

        # Stacks written before this component existed hold the process directly under the estate.
        parent = opts.parent if opts is not None else None
        # The wake hook and its document sit beside the config (only for a stack with an alias to wake, so
        # a gateway without one keeps its inputs as they were).
        extra = self.files.apply(lambda f: {k: v for k, v in f.items()
                                            if k not in ("config.yaml", spend.LOCAL_DOCUMENT_FILE, health.DOCUMENT_FILE,
                                                         identity.DOCUMENT_FILE)})
        env = {**args.service_keys, **({identity.BEARER_ENV: self.identity_bearer} if self.identity_bearer else {})}
        self.process = LocalGateway(name, LocalGatewayArgs(
            config=self.config, port=args.plan.spec.gateway.port, state_dir=args.state_dir,
            files=extra if args.plan.wake or args.plan.spec.health is not None else None,
            env=pulumi.Output.secret(pulumi.Output.all(**env)) if env else None,
        ), pulumi.ResourceOptions(parent=self, depends_on=list(args.ready),
                                  aliases=[pulumi.Alias(parent=parent)] if parent is not None else None))
        self.url = self.process.url
        self.master_key = self.process.master_key
        checks = args.plan.spec.health
        if checks is not None:
            from providers.gpu_cloud import env_seconds
            from providers.local_health import LocalHealthAgent, LocalHealthAgentArgs

            # The gateway's own check goes to where the process listens (a free port when gateway.port is 0).
            document = pulumi.Output.all(self.files, self.process.url).apply(lambda fu: gw.with_gateway_url(
                fu[0][health.DOCUMENT_FILE], fu[1]))
            self.health_agent = LocalHealthAgent(f"{name}-health", LocalHealthAgentArgs(
                document=document, every_seconds=env_seconds(health.EVERY_ENV, float(checks.every_seconds)),
                state_dir=args.state_dir, master_key=self.master_key, port=0,
                webhook=args.secrets.external_keys.get(spend.WEBHOOK_ENV),
            ), pulumi.ResourceOptions(parent=self))
            self.status_url = self.health_agent.status_url
        watch = args.plan.spec.spend
        if watch is not None:
            from providers.gpu_cloud import env_seconds
            from providers.local_spend import LocalSpendWatcher, LocalSpendWatcherArgs

            # The document rewritten in place on each `up`; the process restarts only for a new interval
            # or webhook. The environment may look more often than the stack says (tests, the sandbox).
            self.spend_watcher = LocalSpendWatcher(f"{name}-spend", LocalSpendWatcherArgs(
                document=self.files.apply(lambda f: f[spend.LOCAL_DOCUMENT_FILE]),
                every_seconds=env_seconds("ESTATE_SPEND_EVERY_SECONDS", watch.every_minutes * 60.0),
                state_dir=args.state_dir, webhook=args.secrets.external_keys.get(spend.WEBHOOK_ENV),
            ), pulumi.ResourceOptions(parent=self))

    def _create_ssh(self, name: str, args: GatewayArgs, units: pulumi.Output, known_hosts: pulumi.Output) -> None:
        import pulumi_random as random

        plan = args.plan
        g = plan.spec.gateway
        child = pulumi.ResourceOptions(parent=self)
        host_node = args.nodes[g.node]
        self.url = pulumi.Output.from_input(f"http://127.0.0.1:{g.port}")
        if plan.spec.health is not None:
            self.status_url = pulumi.Output.from_input(f"http://127.0.0.1:{plan.spec.health.port}")

        self.master_key_password = random.RandomPassword(f"{name}-master-key", length=40, special=False, opts=child)
        self.master_key = pulumi.Output.secret(self.master_key_password.result.apply(lambda r: f"sk-{r}"))
        if args.edge_units is not None:
            units = pulumi.Output.all(units, args.edge_units).apply(lambda u: {**u[0], **u[1]})
        self.units = units

        # Secrets: the env file (master key, external keys) and the tunnel key, written 0600.
        env_parts: Dict[str, pulumi.Input] = {gw.MASTER_KEY_ENV: self.master_key, **args.secrets.external_keys,
                                              **args.service_keys}
        signed = identity.needs_proxy(plan.spec.services)
        if signed:
            env_parts[identity.BEARER_ENV] = self.identity_bearer
        env_file = pulumi.Output.secret(pulumi.Output.all(**env_parts)).apply(
            lambda kv: "".join(f"{k}={v}\n" for k, v in sorted(kv.items())))
        secrets: Dict[str, pulumi.Input] = {f"{gw.CONFIG_DIR}/gateway.env": env_file}
        authorized = self._authorize_tunnels(name, args, child)
        if authorized:
            secrets[f"{gw.CONFIG_DIR}/tunnel_key"] = self.tunnel_key.private_key
        secrets.update(args.edge_secrets)
        if signed:
            # The identity proxy's own env file: the service accounts' keys (one line of JSON) and its bearer.
            secrets[gw.IDENTITY_ENV] = pulumi.Output.all(
                pulumi.Output.all(**{n: args.service_identities[n] for n in signed}), self.identity_bearer).apply(
                lambda kb: identity_env(kb[0], kb[1]))
        # All secret files in one silent command, the same way nodes get theirs (core.text.INSTALL_SECRETS);
        # the tunnel key then belongs to the user the autossh units run as.
        key_path = f"{gw.CONFIG_DIR}/tunnel_key"
        bundle = pulumi.Output.secret(pulumi.Output.all(**secrets)).apply(
            lambda files: secret_bundle(sorted(files.items())))
        remove_secrets = "rm -f " + " ".join(sorted(secrets)) + f" {gw.SECRETS_MANIFEST}"

        # the wake hook, the spend watcher or the health agent
        shipped = bool(plan.wake) or plan.spec.spend is not None or plan.spec.health is not None or bool(signed)
        library = gw.library_script() if shipped else ""
        # Each unit carries a digest of what it reads, so its file changes exactly when that does and the
        # deploy restarts it then only (``gw.units_script``). A secret file enters as an HMAC under a key of
        # the estate's own (a secret in state), never as a plain digest someone could test guesses against.
        inputs_key = random.RandomPassword(f"{name}-inputs-key", length=40, special=False, opts=child)
        keyed = pulumi.Output.unsecret(pulumi.Output.all(inputs_key.result, pulumi.Output.all(**secrets)).apply(
            lambda ks: {path: hmac.new(ks[0].encode(), text.encode(), hashlib.sha256).hexdigest()
                        for path, text in ks[1].items()}))
        lib_digest = {f"{gw.CONFIG_DIR}/lib": digest(library)} if shipped else {}
        files = pulumi.Output.all(self.files, known_hosts).apply(lambda fk: {
            **{f"{gw.CONFIG_DIR}/{path}": text for path, text in {**fk[0], **gw.front_files(plan)}.items()},
            gw.SWITCH_SCRIPT: gw.switch_script(plan),
            **({gw.KNOWN_HOSTS: fk[1]} if plan.tunnels else {})})
        stamped = pulumi.Output.all(units, files, keyed).apply(
            lambda ufk: gw.stamp_units(ufk[0], ufk[1], {**ufk[2], **lib_digest}))
        names = units.apply(lambda u: " ".join(sorted(u)))
        script = pulumi.Output.all(files, stamped).apply(lambda fu: heredoc_script(fu[0]) + library + "\n".join([
            "command -v autossh >/dev/null || (apt-get update -qq && apt-get install -y -qq autossh)",
            "command -v curl >/dev/null || (apt-get update -qq && apt-get install -y -qq curl)",
        ]) + "\n" + gw.units_script(fu[1]))
        dirs = [d for d, used in (("front", True), ("wake", plan.wake), ("spend", plan.spec.spend is not None),
                                  ("health", plan.spec.health is not None), ("identity", bool(signed)),
                                  ("lib", shipped)) if used]
        stop = names.apply(lambda n: f"systemctl disable --now {n} || true; rm -f "
                                     + " ".join(f"/etc/systemd/system/{u}" for u in n.split())
                                     + f" {gw.CONFIG_DIR}/config.yaml {gw.SWITCH_SCRIPT} {gw.UNITS_MANIFEST}"
                                     + "".join(f"; rm -rf {gw.CONFIG_DIR}/{d}" for d in dirs)
                                     + "; systemctl daemon-reload")
        # On a host the estate does not rent, what these commands leave is removed by a cleanup that warns
        # instead of failing when the host cannot be reached (the nodes' deletes wait on theirs).
        left = names.apply(lambda n: f"the gateway's systemd units {', '.join(n.split())} (in "
                                     f"/etc/systemd/system, still enabled) and its files under {gw.CONFIG_DIR}, secrets "
                                     f"included ({', '.join(sorted(secrets))})")
        on_host = self._on_owned_host(f"{name}-cleanup", host_node, [stop, remove_secrets], left)
        self.secret_commands = [host_node.command(
            f"{name}-secrets",
            create=(f"id estate-tunnel >/dev/null 2>&1 || useradd --system --home-dir /var/lib/estate-tunnel "
                    f"--shell /usr/sbin/nologin estate-tunnel; {install_secrets(gw.SECRETS_MANIFEST)}; "
                    f"if [ -f {key_path} ]; then chown estate-tunnel {key_path}; fi"),
            delete=remove_secrets, stdin=bundle, silent=True, opts=on_host)]
        # A changed config or unit re-runs the script in place: the units whose inputs changed restart, and
        # LiteLLM switches to a new instance behind its front.
        self.deploy = host_node.command(
            f"{name}-deploy", create=RUN_STDIN, stdin=script, delete=stop, opts=on_host,
            depends=list(self.secret_commands) + authorized)

    def _on_owned_host(self, cleanup: str, node: Any, deletes: List[pulumi.Input[str]],
                       left: pulumi.Input[str]) -> pulumi.ResourceOptions:
        """Options for commands on ``node``. On a rented machine they are deleted with it (``GpuNode.command``).
        On a host the estate does not rent they are ``deleted_with`` a ``HostCleanup`` that runs ``deletes``
        over SSH when they go and, with the host unreachable, warns naming ``left`` instead of stopping the
        destroy before the nodes that bill (``providers.host_cleanup``). A command's own delete, which
        would fail there, then runs only if it goes without the cleanup."""
        child = pulumi.ResourceOptions(parent=self)
        if node.machine is not None:
            return child
        resource = node.cleanup(cleanup, script=pulumi.Output.all(*deletes).apply(lambda d: "\n".join(d) + "\n"),
                                left=left, opts=child)
        return pulumi.ResourceOptions(parent=self, deleted_with=resource, depends_on=[resource])

    def _authorize_tunnels(self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions) -> list:
        """The estate's tunnel key, and on each tunnelled node a command that authorizes it for exactly
        that node's forwards (replacing the line it wrote before; removing it when the tunnel goes)."""
        from providers.ssh_key import SshKey

        plan = args.plan
        if not plan.tunnels:
            return []
        marker = f"gpu-estate-tunnel:{pulumi.get_project()}-{pulumi.get_stack()}"
        self.tunnel_key = SshKey(f"{name}-tunnel-key", comment=marker, opts=opts)
        commands = []
        for node, forwards in sorted(plan.tunnels.items()):
            ports = [f.remote for f in forwards]
            user = plan.spec.nodes[node].ssh.user
            on_host = self._on_owned_host(
                f"{name}-authorize-{node}-cleanup", args.nodes[node], [gw.revoke_tunnel(marker)],
                f"the estate's tunnel key (the line ending {marker}) in {user}'s ~/.ssh/authorized_keys, "
                f"allowed to forward ports {', '.join(map(str, ports))} only")
            commands.append(args.nodes[node].command(
                f"{name}-authorize-{node}",
                create=self.tunnel_key.public_key.apply(lambda key, p=ports: gw.authorize_tunnel(marker, key, p)),
                delete=gw.revoke_tunnel(marker), opts=on_host))
        self.tunnel_authorizations = commands
        return commands
