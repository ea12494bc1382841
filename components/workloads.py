"""One workload description, deployed two ways.

VM-like nodes (TensorDock, AWS, GCP, an owned host) run every workload as a container of one compose
project written by cloud-init. Container nodes (Vast.ai, RunPod) are themselves one container: the
primary workload's image, env and ports become the instance's, and the others start from its onstart
script. Both read the same ``WorkloadKind`` defaults and the same env.
"""
from __future__ import annotations

import functools
from typing import Dict, List, Tuple

import jinja2
import yaml

from components import catalog
from components.spec import DEFAULT_PORTS, NEEDS_GPU, Access, NodeSpec, WorkloadKind

# Where each workload keeps what must survive a container replacement.
DATA_PATHS = {
    WorkloadKind.OLLAMA: "/root/.ollama",
    WorkloadKind.OPEN_WEBUI: "/app/backend/data",
    WorkloadKind.COMFYUI: "/root",
    WorkloadKind.MLFLOW: "/mlflow",
    WorkloadKind.PGVECTOR: "/var/lib/postgresql/data",
    WorkloadKind.LITELLM: "/app/config",
}
# Port each image listens on inside its container (the spec's port is the host side).
CONTAINER_PORTS = {**DEFAULT_PORTS, WorkloadKind.OPEN_WEBUI: 8080, WorkloadKind.MLFLOW: 5000}
HEALTH = {
    WorkloadKind.OLLAMA: "/api/version",
    WorkloadKind.OPEN_WEBUI: "/health",
    WorkloadKind.COMFYUI: "/system_stats",
    WorkloadKind.MLFLOW: "/health",
    WorkloadKind.LITELLM: "/health/liveliness",
}


@functools.lru_cache(maxsize=None)
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(catalog.ASSETS)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render(template: str, **values) -> str:
    return _templates().get_template(template).render(**values)


def workload_env(node: NodeSpec, kind: WorkloadKind) -> Dict[str, str]:
    w = node.workloads[kind]
    env: Dict[str, str] = {}
    if kind is WorkloadKind.OLLAMA:
        env["OLLAMA_HOST"] = "0.0.0.0:11434"
        env["OLLAMA_KEEP_ALIVE"] = "30m"
        if w.max_loaded:
            env["OLLAMA_MAX_LOADED_MODELS"] = str(w.max_loaded)
    if kind is WorkloadKind.OPEN_WEBUI and WorkloadKind.OLLAMA in node.workloads:
        env["OLLAMA_BASE_URL"] = "http://ollama:11434"
        env["ENABLE_SIGNUP"] = "false"
    if kind is WorkloadKind.MLFLOW:
        env["MLFLOW_BACKEND_STORE_URI"] = "sqlite:////mlflow/mlflow.db"
    env.update(w.env)
    return env


def bind_address(node: NodeSpec) -> str:
    """Where services listen on a VM: loopback unless the node is reached directly (private networks)."""
    return "127.0.0.1" if node.access is Access.SSH else "0.0.0.0"


def published_ports(node: NodeSpec) -> List[int]:
    """Service ports the provider maps to the outside: none for nodes reached over SSH."""
    if node.access is Access.SSH:
        return []
    return sorted({node.port(k) for k in node.workloads})


def compose_project(node: NodeSpec) -> Dict[str, object]:
    """The compose document for a VM-like node. With ``access: ssh`` ports bind to loopback: only SSH
    tunnels and the edge connector reach them, so nothing is published to the internet by the node."""
    services: Dict[str, object] = {}
    volumes: Dict[str, object] = {}
    for kind in node.workloads:
        name = kind.value
        svc: Dict[str, object] = {
            "image": node.image_for(kind),
            "restart": "unless-stopped",
            "environment": workload_env(node, kind),
            "ports": [f"{bind_address(node)}:{node.port(kind)}:{CONTAINER_PORTS[kind]}"],
            "volumes": [f"{name}-data:{DATA_PATHS[kind]}"],
        }
        if kind in NEEDS_GPU:
            svc["deploy"] = {"resources": {"reservations": {"devices": [
                {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]}}}
        if kind is WorkloadKind.MLFLOW:
            svc["command"] = ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000",
                              "--backend-store-uri", "sqlite:////mlflow/mlflow.db"]
        if kind is WorkloadKind.PGVECTOR:
            svc["environment"] = {**svc["environment"], "POSTGRES_PASSWORD_FILE": "/run/secrets/pg_password"}
        volumes[f"{name}-data"] = {}
        services[name] = svc
    return {"name": "estate", "services": services, "volumes": volumes}


def render_compose(node: NodeSpec) -> str:
    return yaml.safe_dump(compose_project(node), sort_keys=False)


def render_cloud_init(node: NodeSpec, open_ports: Tuple[int, ...] = ()) -> str:
    return render("cloud-init.yaml.j2", compose=render_compose(node), ssh_port=node.ssh.port,
                  open_ports=sorted(set(open_ports)))


def primary_workload(node: NodeSpec) -> WorkloadKind:
    """The workload whose image a container node runs: the first GPU workload, else the first one."""
    kinds = list(node.workloads)
    gpu = [k for k in kinds if k in NEEDS_GPU]
    return (gpu or kinds)[0]


def container_launch(node: NodeSpec) -> Tuple[str, Dict[str, str], List[int]]:
    """(image, env, ports) of a container node."""
    primary = primary_workload(node)
    env: Dict[str, str] = {}
    for kind in node.workloads:
        env.update(workload_env(node, kind))
    return node.image_for(primary), env, published_ports(node)
