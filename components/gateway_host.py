"""The gateway host: LiteLLM, its autossh tunnels and the edge connector, installed over SSH.

The gateway's config depends on other nodes (their addresses, their prices), so it is not baked into any
node's cloud-init, which would replace a VM whenever another node changed. pulumi-command's
``remote.Command`` writes the files and units over SSH instead, and its ``triggers`` carry a hash of
every file, so a changed config restarts exactly the units whose files changed. Secrets (the master key,
external API keys, the tunnel key, the Cloudflare connector token) travel on the command's stdin as
Pulumi secrets, land in 0600 files, and are never part of a command line, a file the proxy renders, or
the log (those commands log nothing).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import pulumi

from components import gateway as gw
from components.workloads import INSTALL_SECRETS, digest, heredoc_script, secret_bundle
from components.spec import EstateSpec, WorkloadKind

TYPE = "gpu-estate:index:Gateway"


def render_outputs(spec: EstateSpec, nodes: Mapping[str, object]) -> pulumi.Output:
    """(LiteLLM config, gateway units) once the nodes the gateway reaches directly have addresses and
    every node its price; the tunnelled nodes' SSH hosts go into the autossh units."""
    plan = gw.tunnel_plan(spec)
    direct = {n: pulumi.Output.all(nodes[n].address, nodes[n].ports) for n in spec.nodes
              if spec.nodes[n].access.value == "direct" and n != spec.gateway.node}
    prices = {n: nodes[n].hourly_price for n in spec.nodes}
    ssh = {n: pulumi.Output.all(nodes[n].ssh_host, nodes[n].ssh_port) for n in plan}

    def render(args: Dict[str, object]) -> Tuple[str, Dict[str, str]]:
        endpoints = {n: tuple(v) for n, v in args["direct"].items()}
        hourly = {n: float(p) for n, p in args["prices"].items() if p is not None}
        config = gw.render_litellm_config(spec, endpoints, hourly)
        hosts = {n: (h, int(p or spec.nodes[n].ssh.port), spec.nodes[n].ssh.user) for n, (h, p) in args["ssh"].items()}
        return config, gw.gateway_units(spec, plan, hosts)

    return pulumi.Output.all(direct=pulumi.Output.all(**direct) if direct else {},
                             prices=pulumi.Output.all(**prices), ssh=pulumi.Output.all(**ssh) if ssh else {}
                             ).apply(render)


class GatewayHost(pulumi.ComponentResource):
    master_key: pulumi.Output[str]
    config: pulumi.Output[str]
    """The rendered LiteLLM config, exactly as written to the host."""
    units: pulumi.Output[Dict[str, str]]

    def __init__(self, name: str, spec: EstateSpec, nodes: Mapping[str, object],
                 extra_units: Optional[pulumi.Output] = None, extra_secrets: Optional[Mapping[str, pulumi.Output]] = None,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE, name, None, opts)
        import pulumi_random as random
        from pulumi_command import remote

        child = pulumi.ResourceOptions(parent=self)
        g = spec.gateway
        host_node = nodes[g.node]
        plan = gw.tunnel_plan(spec)
        self.tunnels = {n: [(f.remote, f.local) for f in fwds] for n, fwds in plan.items()}

        self.master_key_password = random.RandomPassword(f"{name}-master-key", length=40, special=False, opts=child)
        self.master_key = pulumi.Output.secret(self.master_key_password.result.apply(lambda r: f"sk-{r}"))

        rendered = render_outputs(spec, nodes)
        self.config = rendered.apply(lambda r: r[0])
        units = rendered.apply(lambda r: r[1])
        if extra_units is not None:
            units = pulumi.Output.all(units, extra_units).apply(lambda u: {**u[0], **u[1]})
        self.units = units

        connection = host_node.ssh_connection()

        # Secrets: the env file (master key, external keys) and the tunnel key, written 0600.
        cfg = pulumi.Config("gpu-estate")
        env_parts: Dict[str, pulumi.Input] = {gw.MASTER_KEY_ENV: self.master_key}
        for ext in g.external.values():
            value = cfg.get_secret(ext.api_key_env)
            if value is None:
                pulumi.log.warn(f"gateway: no config secret gpu-estate:{ext.api_key_env}; fallbacks to "
                                f"{', '.join(ext.models)} will fail until it is set")
            else:
                env_parts[ext.api_key_env] = value
        env_file = pulumi.Output.secret(pulumi.Output.all(**env_parts)).apply(
            lambda kv: "".join(f"{k}={v}\n" for k, v in sorted(kv.items())))
        secrets: Dict[str, pulumi.Input] = {f"{gw.CONFIG_DIR}/gateway.env": env_file}
        if plan:
            key = cfg.get_secret("sshPrivateKey")
            if key is not None:
                secrets[f"{gw.CONFIG_DIR}/tunnel_key"] = key.apply(lambda k: k.strip() + "\n")
            else:
                pulumi.log.warn(f"gateway: no config secret gpu-estate:sshPrivateKey; the tunnels to "
                                f"{', '.join(plan)} need it on the gateway host")
        for path, value in (extra_secrets or {}).items():
            secrets[path] = value
        # All secret files in one silent command, the same way nodes get theirs (workloads.INSTALL_SECRETS);
        # the tunnel key then belongs to the user the autossh units run as.
        key = f"{gw.CONFIG_DIR}/tunnel_key"
        bundle = pulumi.Output.secret(pulumi.Output.all(**secrets)).apply(
            lambda files: secret_bundle(sorted(files.items())))
        self.secret_commands = [remote.Command(
            f"{name}-secrets", connection=connection,
            create=(f"id estate-tunnel >/dev/null 2>&1 || useradd --system --home-dir /var/lib/estate-tunnel "
                    f"--shell /usr/sbin/nologin estate-tunnel; {INSTALL_SECRETS}; "
                    f"if [ -f {key} ]; then chown estate-tunnel {key}; fi"),
            delete="rm -f " + " ".join(sorted(secrets)), stdin=bundle,
            triggers=[bundle.apply(digest), host_node.machine_id], logging="none", opts=child)]

        files = pulumi.Output.all(self.config, units).apply(lambda cu: {
            f"{gw.CONFIG_DIR}/config.yaml": cu[0],
            **{f"/etc/systemd/system/{u}": text for u, text in cu[1].items()}})
        names = units.apply(lambda u: " ".join(sorted(u)))
        script = pulumi.Output.all(files, names).apply(lambda fn: heredoc_script(fn[0]) + "\n".join([
            "command -v autossh >/dev/null || (apt-get update -qq && apt-get install -y -qq autossh)",
            "systemctl daemon-reload",
            f"systemctl enable {fn[1]}",
            f"systemctl restart {fn[1]}",
        ]) + "\n")
        stop = names.apply(lambda n: f"systemctl disable --now {n} || true; rm -f "
                                     + " ".join(f"/etc/systemd/system/{u}" for u in n.split())
                                     + f" {gw.CONFIG_DIR}/config.yaml; systemctl daemon-reload")
        self.deploy = remote.Command(
            f"{name}-deploy", connection=connection, create=script, delete=stop,
            triggers=[files.apply(lambda f: digest(repr(sorted(f.items())))), host_node.machine_id],
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.secret_commands))
        self.register_outputs({"config": self.config})


def route_upstreams(spec: EstateSpec) -> Dict[str, str]:
    """Public hostname -> how the gateway host reaches the service behind it."""
    plan = gw.tunnel_plan(spec)
    out: Dict[str, str] = {}
    for host, route in spec.routes.items():
        node, _, wname = route.service.partition("/")
        port = spec.nodes[node].port(WorkloadKind(wname))
        out[host] = gw.service_url(spec, plan, node, port, {})
    return out

