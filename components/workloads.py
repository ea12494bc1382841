"""One workload description, deployed two ways.

VM-like nodes (TensorDock, AWS, GCP, an owned host) run every workload as a container of one compose
project written by cloud-init: the compose file is plain data the node's own Docker runs at boot, needs no
Docker API reachable from the operator's machine, and survives the operator going away. Container nodes
(Vast.ai, RunPod) are themselves one container: the primary workload's image, env and ports become the
instance's, and a start script runs the idle watcher beside it. Both read the
same workload classes (``core/workloads``) and the same env.

Persistent data lives in bind mounts under ``/opt/estate/data/<workload>``, so replacing a container
(new image, new env) keeps models, chats, runs and databases. Secrets (the pgvector password, bucket
credentials, ``secret_env`` values) arrive after boot over SSH as 0600 files under ``/opt/estate/secrets``
and reach containers as files or an env file: never in a vendor's env, start script or user-data, where
the vendor's API, console and host could read them, and never as values in the compose file.
"""
from __future__ import annotations

import dataclasses
import shlex
from typing import Dict, List, Optional, Tuple

import yaml

from core.fields import Checkpoint
from core.spec import Access, NodeSpec
from core.templates import asset, render
from core.text import heredoc_script
from core.workloads.node_files import (  # noqa: F401  (the node's layout, read by the components through here)
    CHECKPOINT_SCRIPT, COMPOSE_FILE, COMPOSE_PROJECT, DATA_DIR, ESTATE_DIR, IDLE_SCRIPT, RUN_DIR, SECRETS_DIR,
    SECRETS_MANIFEST, WORKLOADS_PID, WORKLOADS_SCRIPT, BucketAccess, NodeSecrets,
)


def bind_address(node: NodeSpec) -> str:
    """Where services listen on a VM: loopback unless the node is reached directly (private networks)."""
    return "127.0.0.1" if node.access is Access.SSH else "0.0.0.0"


def published_ports(node: NodeSpec) -> List[int]:
    """Service ports the provider maps to the outside: none for nodes reached over SSH."""
    if node.access is Access.SSH:
        return []
    return sorted({node.port(n) for n in node.workloads} | {node.serving_port(n) for n in node.workloads})


def data_files(node: NodeSpec, on_vm: bool = True) -> Dict[str, str]:
    """The estate's own files the node's workloads run beside their servers (ComfyUI's images bridge), at
    their paths on a VM (under the workload's data directory) or inside a container node's one container."""
    return {f"{f'{DATA_DIR}/{name}' if on_vm else node.info(name).data_path}/{rel}": content
            for name, w in node.workloads.items() for rel, content in w.data_files(node, name).items()}


def workload_env(node: NodeSpec, name: str) -> Dict[str, str]:
    """The env a workload's container starts with: its kind's, then the stack's ``env``."""
    return node.workloads[name].service_env(node, name)


def preset_args(node: NodeSpec, name: str) -> List[str]:
    """The arguments a workload's image's entrypoint is given: a preset's own, then the stack's ``args``."""
    return node.workloads[name].command(node, name)


def secret_files(node: NodeSpec, secrets: NodeSecrets) -> List[Tuple[str, str]]:
    """(path, content) of every secret file the node needs; written 0600 over SSH."""
    files: List[Tuple[str, str]] = []
    for wname, w in node.workloads.items():
        files += w.secret_files(node, wname, secrets)
    for wname, w in node.workloads.items():
        if w.secret_env:
            missing = [n for n in w.secret_env if n not in secrets.env]
            if missing:
                raise ValueError(f"{wname}: no value for secret env {', '.join(missing)}")
            for n in w.secret_env:
                if "\n" in secrets.env[n] or "\r" in secrets.env[n] or "\x00" in secrets.env[n]:
                    # An env file holds one NAME=value per line: a line break would start a new variable.
                    raise ValueError(f"{wname}: the config secret gpu-estate:{n} holds a line break or NUL; "
                                     "an env value is one line")
            files.append((f"{SECRETS_DIR}/{wname}.env", "".join(f"{n}={secrets.env[n]}\n" for n in w.secret_env)))
    for name, access in sorted(secrets.buckets.items()):
        # Every bucket the node may use, as a credentials file for tools on the node.
        if access.gcs_key_json:
            files.append((f"{SECRETS_DIR}/{name}-gcs.json", access.gcs_key_json))
        else:
            files.append((f"{SECRETS_DIR}/{name}-s3.env", f"AWS_ACCESS_KEY_ID={access.aws_access_key_id}\n"
                                                            f"AWS_SECRET_ACCESS_KEY={access.aws_secret_access_key}\n"
                          + (f"AWS_ENDPOINT_URL_S3={access.endpoint}\n" if access.endpoint else "")))
    for wname, w in node.workloads.items():
        files += w.bucket_files(node, wname, secrets)
    return files


def compose_literal(value: str) -> str:
    """A value compose passes on as it is: compose interpolates ``$VAR`` and ``${VAR}`` in the file, so
    every ``$`` is doubled (the YAML dumper quotes the rest)."""
    return value.replace("$", "$$")


def compose_project(node: NodeSpec, secrets: Optional[NodeSecrets] = None) -> Dict[str, object]:
    """The compose document for a VM-like node. With ``access: ssh`` ports bind to loopback: only SSH
    tunnels and the edge connector reach them, so nothing is published to the internet by the node."""
    services: Dict[str, object] = {}
    top_secrets: Dict[str, object] = {}  # compose's top-level ``secrets``: files the services mount
    for name, w in node.workloads.items():
        if w.on_gateway_host:
            continue  # the gateway host runs it itself (components/gateway_host.py)
        info = node.info(name)
        svc: Dict[str, object] = {
            "image": node.image_for(name),
            "restart": "unless-stopped",
            "environment": {k: compose_literal(v) for k, v in workload_env(node, name).items()},
            "ports": [f"{bind_address(node)}:{node.port(name)}:{info.container_port}"],
            "volumes": [f"{DATA_DIR}/{name}:{info.data_path}"] if info.data_path else None,
            "healthcheck": _healthcheck(info.healthcheck),
        }
        if w.entrypoint_words():
            svc["entrypoint"] = list(w.entrypoint_words())
        args = preset_args(node, name)
        if args:
            svc["command"] = list(args)
        if w.secret_env:
            svc["env_file"] = [f"{SECRETS_DIR}/{name}.env"]
        if node.uses_gpu(name):
            svc["deploy"] = {"resources": {"reservations": {"devices": [
                {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]}}}
        svc, mounted = w.compose_service(node, name, svc, secrets)
        for key in ("entrypoint", "command"):  # the kind's own words too (a shell's $ variables)
            if svc.get(key):
                svc = {**svc, key: [compose_literal(a) for a in svc[key]]}
        top_secrets.update(mounted)
        services[name] = {k: v for k, v in svc.items() if v is not None}
    doc: Dict[str, object] = {"name": COMPOSE_PROJECT, "services": services}
    if top_secrets:
        doc["secrets"] = top_secrets
    return doc


def _healthcheck(test: Optional[Tuple[str, ...]]) -> Optional[Dict[str, object]]:
    if test is None:
        return None
    return {"test": list(test), "interval": "30s", "timeout": "10s", "retries": 5, "start_period": "60s"}


def render_compose(node: NodeSpec, secrets: Optional[NodeSecrets] = None) -> str:
    return yaml.safe_dump(compose_project(node, secrets), sort_keys=False)


@dataclasses.dataclass(frozen=True)
class NodeFile:
    """One file a workload loads from its node's disk (``BaseWorkload.downloads``), where it lives there."""

    workload: str
    file: Checkpoint
    path: str
    """On a VM, under the workload's data directory on the host (its bind mount); on a container node,
    under its data path inside the one container SSH reaches."""
    token_file: Optional[str]
    """The workload's secret env file holding ``HF_TOKEN`` for a file Hugging Face serves, else None."""


def node_files(node: NodeSpec) -> List[NodeFile]:
    """Every file the node's workloads load, as ``providers.model_files`` resources deliver them over SSH
    (never in what the machine is launched with: editing them never replaces it)."""
    out: List[NodeFile] = []
    for name, w in node.workloads.items():
        root = node.info(name).data_path if node.provider.is_container else f"{DATA_DIR}/{name}"
        for c in w.downloads():
            token = f"{SECRETS_DIR}/{name}.env" if w.download_token and c.on_hugging_face else None
            out.append(NodeFile(workload=name, file=c, path=f"{root}/{w.downloads_dir}/{c.kind}/{c.name}",
                                token_file=token))
    return out


def idle_stop_command(node: NodeSpec) -> Optional[str]:
    if not node.idle_shutdown_minutes:
        return None
    return node.provider.info.stop_command


def render_idle_units(node: NodeSpec, script: str = IDLE_SCRIPT) -> Dict[str, str]:
    """The systemd service and timer of the idle watcher on a VM node (empty without idle shutdown)."""
    stop = idle_stop_command(node)
    if stop is None:
        return {}
    # The watcher asks the node's Ollama what it has loaded (its default address when there is none).
    probe = next((n for n, w in node.workloads.items() if w.speaks_ollama_api), None)
    ollama = f"http://127.0.0.1:{node.port(probe)}" if probe else ""
    return {
        "estate-idle.service": render("idle/estate-idle.service.j2", minutes=node.idle_shutdown_minutes,
                                      ollama_url=ollama or "http://127.0.0.1:11434",
                                      stop_command=stop.replace("%", "%%"), script=script),
        "estate-idle.timer": render("idle/estate-idle.timer.j2"),
    }


def delivered_over_ssh(node: NodeSpec, secrets: bool = False) -> bool:
    """Whether a VM-like node's compose project arrives over SSH after boot rather than in cloud-init:
    nodes reached over SSH, and nodes holding ``secrets`` (secret files never ride in user-data, which
    the vendor's API and console and the machine's metadata service give out). Over SSH, editing a
    workload updates the compose project in place, so containers are replaced while the VM and its data
    directories stay; cloud-init delivery (nodes reached directly, without secrets) can only change by
    replacing the machine."""
    return (not node.provider.is_container and bool(compose_project(node)["services"])
            and (node.access is Access.SSH or secrets))


def secrets_over_ssh(node: NodeSpec) -> bool:
    """Whether a container node receives secret files over SSH (its workloads wait for them)."""
    return node.provider.is_container and any(w.secret_env for w in node.workloads.values())


def render_cloud_init(node: NodeSpec, open_ports: Tuple[int, ...] = (), workloads: bool = True) -> str:
    """The node's cloud-init. It never holds a secret. With ``workloads`` false it only bootstraps
    (Docker, toolkit, firewall, idle watcher, data directories) and the compose project arrives over SSH
    (``delivered_over_ssh``)."""
    files = []
    units = render_idle_units(node)
    if units:
        files.append({"path": IDLE_SCRIPT, "content": asset("idle/estate-idle.sh"), "permissions": "0755"})
        files += [{"path": f"/etc/systemd/system/{name}", "content": text, "permissions": "0644"}
                  for name, text in units.items()]
    if workloads:
        files += [{"path": path, "content": text, "permissions": "0644"} for path, text in data_files(node).items()]
    data_dirs = [f"{DATA_DIR}/{n}" for n in node.workloads]
    return render("cloud-init.yaml.j2", compose=render_compose(node) if workloads else None,
                  ssh_port=node.ssh.port, open_ports=sorted(set(open_ports)), files=files, data_dirs=data_dirs,
                  idle_timer=bool(units))


def deploy_script(node: NodeSpec, secrets: Optional[NodeSecrets] = None) -> str:
    """What runs on a node reached over SSH when its workloads change: wait for the bootstrap, write the
    compose project, bring the project to the new state. (Its model files are resources of their own.)"""
    files = {COMPOSE_FILE: render_compose(node, secrets), **data_files(node)}
    # Docker comes with the bootstrap: wait for cloud-init where it booted the machine (an owned host
    # that no cloud-init booted has no /run/cloud-init, and `cloud-init status --wait` would never end).
    lines = ["if [ -d /run/cloud-init ] && command -v cloud-init >/dev/null; then "
             "cloud-init status --wait >/dev/null || true; fi",
             heredoc_script(files).rstrip("\n"),
             "mkdir -p " + " ".join(f"{DATA_DIR}/{n}" for n in node.workloads)]
    lines.append(f"docker compose -f {COMPOSE_FILE} up -d --remove-orphans")
    return "\n".join(lines) + "\n"


def teardown_script() -> str:
    """What removing a node's workloads runs on a host that stays (an owned host, or workloads dropped
    from a node): the containers and the project's files go; the data directories are the operator's
    and stay. On a rented machine this never runs at destroy: the machine and its disk go instead."""
    return (f"if [ -f {COMPOSE_FILE} ]; then docker compose -f {COMPOSE_FILE} down --remove-orphans || true; fi; "
            f"rm -f {COMPOSE_FILE} {CHECKPOINT_SCRIPT}")


def primary_workload(node: NodeSpec) -> str:
    """The workload whose image a container node runs: the one that needs its own image (at most one:
    core/rules refuses more), else the first GPU workload, else the first one. The others run inside it
    as add-ons (``KindInfo.add_on``), started by the start script."""
    names = list(node.workloads)
    own = [n for n in names if node.info(n).add_on is None]
    gpu = [n for n in names if node.info(n).needs_gpu]
    return (own or gpu or names)[0]


LOAD_SECRETS = (f'for f in {SECRETS_DIR}/*.env; do [ -f "$f" ] || continue; '
                'while IFS= read -r line || [ -n "$line" ]; do [ -n "$line" ] && export "$line"; done < "$f"; done')
"""Exports every ``NAME=value`` line of the node's secret env files as it is: a value is data, never run
(no ``.``/``source``, whose shell would expand ``$(...)`` in it)."""


def start_command(node: NodeSpec, name: str) -> Optional[str]:
    """The shell words that start a workload where the image's entrypoint does not run (a Vast.ai start
    script): its kind's start command (a container's ``entrypoint``), then its arguments, each quoted."""
    w = node.workloads[name]
    start = node.info(name).start_command
    words = ([start] if start else []) + [shlex.quote(a) for a in (*w.entrypoint_words(), *preset_args(node, name))]
    return " ".join(words) or None


def container_start(node: NodeSpec) -> str:
    """The start script of a container node: the idle watcher in the background, then the workloads: the add-ons in the background and the primary in the foreground.

    A node with ``secret_env`` has its secrets delivered over SSH once it is up (never in the vendor's
    env): its workloads wait for them, start with them exported, and run as one process group that the
    secret installer stops when the values change, so they start again on the new values."""
    primary = primary_workload(node)
    lines = ["set -eu"]
    stop = idle_stop_command(node)
    if stop:
        watcher = asset("idle/estate-idle.sh")
        lines += [f"cat > {IDLE_SCRIPT} <<'ESTATE_IDLE'", watcher.rstrip("\n"), "ESTATE_IDLE",
                  f"chmod 0755 {IDLE_SCRIPT}",
                  f"ESTATE_IDLE_MINUTES={node.idle_shutdown_minutes} ESTATE_STOP_COMMAND={shlex.quote(stop)} "
                  f"ESTATE_IDLE_STATE=/tmp/estate-idle-since nohup {IDLE_SCRIPT} --loop >/var/log/estate-idle.log 2>&1 &"]
    files = data_files(node, on_vm=False)
    if files:
        lines.append(heredoc_script(files).rstrip("\n").removeprefix("set -eu\n"))
    run: List[str] = []
    for name in node.workloads:
        side = node.workloads[name].side_command(node, name)
        if side:
            run.append(f"nohup {side} >/var/log/estate-{name}-side.log 2>&1 &")
    for name in node.workloads:
        if name == primary:
            continue
        # Every declared workload runs: the others inside the primary's container, pinned to the
        # versions of their own images, each logging to its own file.
        info = node.info(name)
        install, command = info.add_on
        run += [install.format(version=info.version), f"nohup sh -c {shlex.quote(command)} >/var/log/estate-{name}.log 2>&1 &"]
    start = start_command(node, primary)
    if start:
        run.append(f"exec {start}")
    if not secrets_over_ssh(node):
        return "\n".join(lines + run) + "\n"
    body = "\n".join(["set -eu", LOAD_SECRETS, *run])
    lines += [f"mkdir -p {RUN_DIR}", f"cat > {WORKLOADS_SCRIPT} <<'ESTATE_RUN'", body, "ESTATE_RUN",
              'echo "gpu-estate: waiting for this node\'s secrets (delivered over SSH)"',
              f"while [ ! -f {SECRETS_MANIFEST} ]; do sleep 2; done",
              # setsid: the workloads are one process group, stopped together by the secret installer.
              f'while :; do setsid sh {WORKLOADS_SCRIPT} & echo "$!" > {WORKLOADS_PID}; '
              'wait "$!" || true; sleep 1; done']
    return "\n".join(lines) + "\n"


def restart_after_secrets() -> str:
    """Run after a container node's secrets are written: stop its workloads' process group, which the start
    script's loop starts again with the new values (nothing to stop before they first started)."""
    return (f'if [ -f {WORKLOADS_PID} ]; then kill -s TERM -- "-$(cat {WORKLOADS_PID})" 2>/dev/null || true; fi')


def docker_args(node: NodeSpec) -> List[str]:
    """What a RunPod pod's image is given as its command (RunPod's ``dockerArgs``, after the image's own
    entrypoint): a vLLM preset's arguments, or a container's ``args``; for a node on RunPod or failing
    over to it. RunPod runs no start script."""
    if not any(v.info.command_only for v in (node.provider, *node.failover)) or not node.workloads:
        return []
    return preset_args(node, primary_workload(node))


def container_launch(node: NodeSpec) -> Tuple[str, Dict[str, str], List[int], str]:
    """(image, env, ports, start script) of a container node.

    Vast.ai runs the start script as the instance's onstart. RunPod's pod API only overrides the image's
    CMD (``dockerArgs``), which the Ollama image's ``/bin/ollama`` entrypoint would take as arguments, so
    RunPod nodes run the image as it is and get no start script: no idle watcher there (docs/nodes.md, Idle shutdown)."""
    primary = primary_workload(node)
    env: Dict[str, str] = {}
    for name in node.workloads:
        env.update(workload_env(node, name))
    start = container_start(node) if node.provider.info.replaces_entrypoint else ""
    return node.image_for(primary), env, published_ports(node), start
