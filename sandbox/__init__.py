"""The sandbox's machinery, shared by the sandbox command (``python -m sandbox``), the tests and the
benchmarks: the loopback GPU clouds (and this machine as a VM node over its loopback sshd), the engine's
environment pointing the providers at them, project copies whose stack a test may change, and readings of
what the clouds rent and hold. The engine runs through the automation API with a local file backend and a
passphrase secrets provider. Nothing leaves 127.0.0.1.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, Optional
from urllib.parse import urlsplit

from components import workloads
from core.config import PROJECT_ROOT as ROOT
from core.vendors import (
    MARKETPLACES, RUNPOD_SERVERLESS_DEFAULT_URL, RUNPOD_SERVERLESS_URL_ENV, Vendor,
    FLY_API_TOKEN_ENV, FLY_API_URL_ENV, FLY_APPS_URL_ENV, FLY_DEFAULT_URL,
)
from loopback import machine as loopback_machine
from loopback import sshd as loopback_sshd
from loopback.fly import FakeFly
from loopback.ollama import FakeOllama
from loopback.runpod import FakeRunPod
from loopback.tensordock import FakeTensorDock
from loopback.vastai import FakeVast

CACHE = Path(os.environ.get("GPU_ESTATE_CACHE", Path.home() / ".cache" / "gpu-estate"))


def _pulumi_bin() -> Path:
    """Where scripts/build-pulumi.sh built or found the CLI, the language host and the command plugin."""
    marker = CACHE / "pulumi-bin"
    return Path(marker.read_text().strip()) if marker.exists() else CACHE / "pulumi-v3.259.0" / "bin"


PULUMI_BIN = _pulumi_bin()


def engine_missing() -> str:
    """Why the engine cannot run here, or '' when the CLI and the Python language host are in place."""
    for part in ("pulumi", "pulumi-language-python", "pulumi-language-python-exec", "pulumi-resource-pulumi-python"):
        if not (PULUMI_BIN / part).exists():
            return f"no {part} in {PULUMI_BIN}: run `make setup` (see README, Engine parts)"
    return ""


VM_NODE = "vm"
"""The sandbox stack's VM-like node (access: ssh): this machine, through its loopback sshd."""
VM_MODELS = "data/ollama/models/manifests"
"""Where the VM node's real Ollama keeps its models' manifests, under the machine's root
(``<registry>/<namespace>/<model>/<tag>``)."""
VM_ALIAS = "tiny"
IMAGES_NODE = "qwen"
"""The sandbox's node whose ComfyUI answers the ``dall-e-3`` image alias (a loopback ComfyUI behind the
estate's real images bridge)."""
IMAGES_ALIAS = "dall-e-3"
"""The gateway alias the VM node's real Ollama answers (Pulumi.sandbox.yaml)."""
REGISTRY_PORT = 5000
"""The loopback registry the sandbox stack's VM node pulls from (127.0.0.1:5000 in Pulumi.sandbox.yaml)."""
TINY = ("tiny", "1")
"""The project's tiny model as the registry holds it: ``127.0.0.1:5000/library/tiny:1``."""


def vm_missing() -> str:
    """Why the sandbox's VM node cannot run here (no sshd, Docker, compose, its images, the real Ollama or
    the registry), or ''."""
    from sandbox import real_ollama, registry

    return loopback_machine.missing() or registry.missing() or loopback_machine.missing(real_ollama.IMAGE)


def vm_required() -> bool:
    """The project's CI sets GPU_ESTATE_REQUIRE_VM=1: there the VM node runs, never skips."""
    return os.environ.get("GPU_ESTATE_REQUIRE_VM") == "1"


def label(node: str, stack_name: str = "sandbox") -> str:
    return f"gpu-estate-{stack_name}-{node}"


VM_NODE_LOCK = Path(tempfile.gettempdir()) / "gpu-estate-vm-node.lock"
"""The VM node is this machine (its /opt/estate, its Docker, registry port 5000): one user at a time."""


@contextlib.contextmanager
def _vm_node_lock(path: Path = VM_NODE_LOCK) -> Iterator[None]:
    """Held while a sandbox uses this machine as its VM node; a second sandbox (another test process, a
    second checkout) waits for the first instead of wiping its machine under it."""
    import fcntl

    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for the VM node: another sandbox holds {path}", flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def fake_clouds(vm: bool = False, stack_name: str = "sandbox") -> Iterator[Dict[str, object]]:
    """The three marketplaces, each with a loopback Ollama behind the port its instances map for 11434.
    The Ollama servers are under the ``ollama`` key, by cloud. With ``vm``, this machine stands in for the
    TensorDock VM of the ``vm`` node (under the ``machine`` key): its SSH port is the loopback sshd, and
    deleting that instance wipes the machine's containers and files. A Vast.ai instance of a GPU job is a real
    container of its image reached over a real sshd (``loopback/container_machine.py``, under the
    ``containers`` key), whose SSH lets in the keys attached to the instance."""
    td, vast, rp = FakeTensorDock(), FakeVast(), FakeRunPod()
    fly = FakeFly(token="sandbox-fly-token")  # Fly.io's Machines API, and its proxy in front of each app
    rp.api_key = "sandbox-runpod-key"  # its serverless OpenAI route answers only to the RunPod key
    ollamas = {name: FakeOllama(name=f"{name}-ollama") for name in ("tensordock", "vastai", "runpod")}
    for name, cloud in (("tensordock", td), ("vastai", vast), ("runpod", rp)):
        cloud.port_map[11434] = ollamas[name].httpd.server_address[1]
    machine = registry = None
    held = contextlib.ExitStack()
    # The Vast.ai node's ComfyUI: the estate's images bridge, with the config the stack gives its node, in
    # front of a loopback ComfyUI, behind the port Vast.ai maps for the bridge.
    from sandbox.images_bridge import node_bridge

    comfyui, bridge = held.enter_context(node_bridge("sandbox", IMAGES_NODE))
    vast.port_map[bridge.port] = bridge.httpd.server_address[1]
    containers = None
    if not loopback_sshd.missing():
        # A Vast.ai job's machine is a real container of the job's image, its SSH sessions inside it.
        from loopback.container_machine import ContainerMachines

        vast_jobs = label("job-", stack_name)
        containers = ContainerMachines(lambda inst: str(inst.get("label") or "").startswith(vast_jobs))
        containers.attach(vast)
        held.callback(containers.close)
    try:
        if vm:
            held.enter_context(_vm_node_lock())
            # The registry on the machine's loopback that the VM node's Ollama pulls the tiny model from.
            from sandbox.registry import LoopbackRegistry
            from sandbox.tiny_model import PARAMETERS, write_tiny_gguf

            registry = LoopbackRegistry(port=REGISTRY_PORT)
            registry.publish(*TINY, write_tiny_gguf(registry.dir / "tiny.gguf"), PARAMETERS)
            machine = loopback_machine.LoopbackMachine(workloads.ESTATE_DIR, workloads.COMPOSE_PROJECT)
            td.port_map[22] = machine.sshd.port
            td.on_delete.append(lambda inst: machine.wipe() if inst["name"] == label(VM_NODE, stack_name) else None)
            # A job's machine is this machine too: deleting it ends the job's runner and container.
            jobs = label("job-", stack_name)
            td.on_delete.append(lambda inst: machine.release_job(inst["name"]) if inst["name"].startswith(jobs) else None)
            # Booting with its cloud-init: the host key the program generated becomes the sshd's.
            td.on_create.append(lambda inst: machine.boot(inst["cloud_init"])
                                if inst["name"] == label(VM_NODE, stack_name) or inst["name"].startswith(jobs) else None)
        yield {"tensordock": td, "vastai": vast, "runpod": rp, "fly": fly, "ollama": ollamas, "machine": machine,
               "registry": registry, "comfyui": comfyui, "containers": containers}
    finally:
        for f in (td, vast, rp, fly, *ollamas.values()):
            f.close()
        if machine is not None:
            machine.close()
        if registry is not None:
            registry.close()
        held.close()


@contextlib.contextmanager
def ssh_agent(private_key: str) -> Iterator[Dict[str, str]]:
    """An ssh-agent holding the loopback machine's client key: the ``command`` provider connects with
    it (as an operator's agent would), and the model library's forward reads the key from
    ``ESTATE_SSH_PRIVATE_KEY``. Yields the environment to add."""
    with tempfile.TemporaryDirectory(prefix="sandbox-agent-") as tmp:
        sock = f"{tmp}/agent.sock"
        agent = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            subprocess.run(["ssh-add", "-q", "-"], input=private_key, text=True, check=True,
                           env={**os.environ, "SSH_AUTH_SOCK": sock}, capture_output=True)
            yield {"SSH_AUTH_SOCK": sock, "ESTATE_SSH_PRIVATE_KEY": private_key}
        finally:
            agent.terminate()
            agent.wait(timeout=5)


def engine_parallel() -> str:
    """The engine's operations at once on the sandbox: ``PULUMI_PARALLEL`` if set, else 128."""
    return os.environ.get("PULUMI_PARALLEL", "128")


def vendor_env(fakes: Dict[str, object]) -> Dict[str, str]:
    """Each marketplace's API address and credential variables (``core/vendors.py``) pointed at its loopback
    server, which answers under the vendor's own path (``/api/v2``, ``/graphql``); RunPod's serverless API
    answers on the RunPod server too. A vendor record added is a loopback cloud the sandbox points at."""
    env: Dict[str, str] = {}
    for name in MARKETPLACES:
        info, fake = Vendor(name).info, fakes[name]
        env[info.url_env] = fake.url + urlsplit(info.default_url).path
        env[info.credential_env] = getattr(fake, "token", None) or getattr(fake, "api_key", None) or f"sandbox-{name}-key"
    env[RUNPOD_SERVERLESS_URL_ENV] = fakes[Vendor.RUNPOD.value].url + urlsplit(RUNPOD_SERVERLESS_DEFAULT_URL).path
    if "fly" in fakes:  # Fly.io's Machines API, and the proxy at each app's public address
        env[FLY_API_URL_ENV] = fakes["fly"].url + urlsplit(FLY_DEFAULT_URL).path
        env[FLY_API_TOKEN_ENV] = fakes["fly"].token
        env[FLY_APPS_URL_ENV] = fakes["fly"].app_url("").rstrip("/")
    return env


def engine_env(fakes: Dict[str, object], state_dir: Path, agent: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for the engine and its plugins: loopback endpoints, local state, no downloads, and
    (``agent``) how SSH reaches the loopback machine."""
    state_dir.mkdir(parents=True, exist_ok=True)
    return {**(agent or {}),
        "PATH": f"{PULUMI_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PULUMI_HOME": str(state_dir / "home"),
        "PULUMI_BACKEND_URL": f"file://{state_dir / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": os.environ.get("PULUMI_CONFIG_PASSPHRASE", "sandbox-passphrase"),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "GPU_ESTATE_LITELLM": os.environ.get("GPU_ESTATE_LITELLM", str(ROOT / ".venv-gateway" / "bin" / "litellm")),
        **vendor_env(fakes),
        "ESTATE_POLL_SECONDS": "0.2", "ESTATE_HTTP_BACKOFF": "0.05",
        "ESTATE_SPEND_EVERY_SECONDS": "1",  # the spend watcher beside the local gateway looks every second
        # Loopback machines boot in seconds: a node that does not run within two minutes fails the step
        # instead of holding the run for a real GPU machine's fifteen.
        "ESTATE_READY_TIMEOUT_SECONDS": "120",
        # The engine runs 4 x cores operations at once by default (8 on two cores); the estate's are
        # waits on machines and pulls, and the provider host serves as many (providers/dynamic_host.py).
        "PULUMI_PARALLEL": engine_parallel(),
    }


def stack(env: Dict[str, str], name: str = "sandbox", work_dir: Path = ROOT):
    from pulumi import automation as auto

    for k, v in env.items():
        os.environ[k] = v
    Path(env["PULUMI_BACKEND_URL"].removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    ws = auto.LocalWorkspaceOptions(work_dir=str(work_dir), env_vars=env,
                                    pulumi_command=auto.PulumiCommand(str(PULUMI_BIN.parent), skip_version_check=False))
    return auto.create_or_select_stack(stack_name=name, work_dir=str(work_dir), opts=ws)


PROJECT_FILES = ("Pulumi.yaml", "Pulumi.sandbox.yaml", "__main__.py", "requirements.txt", "core", "components",
                 "providers", "agents", "assets", "policy", "scripts", "sandbox", "loopback", "tests")
"""What a project copy holds: every package of pyproject.toml's (a copy imports its own, and the local
gateway's LiteLLM, which runs from its own venv, finds the wake hook's ``agents`` only here)."""


def project_copy(dest: Path, vm: bool = False) -> Path:
    """A copy of the project to run a stack whose config a test or benchmark changes, so the committed
    stack file stays as it is. Its .venv is a link to the project's. Without ``vm`` its sandbox stack
    has no VM node, so it runs without Docker or sshd."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest / name)
    venv = dest / ".venv"
    if not venv.exists():
        venv.symlink_to(ROOT / ".venv")
    if not vm:
        import yaml

        path = dest / "Pulumi.sandbox.yaml"
        doc = yaml.safe_load(path.read_text())
        doc["config"]["gpu-estate:nodes"].pop(VM_NODE, None)
        doc["config"].pop("gpu-estate:WEBUI_SECRET_KEY", None)
        doc["config"]["gpu-estate:gateway"]["aliases"].pop(VM_ALIAS, None)  # the VM node's alone
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def auto_config(value: object):
    """A structured config value for the automation API's set_config."""
    import json

    from pulumi import automation as auto

    return auto.ConfigValue(value=json.dumps(value))


def sent_to_vendors(fakes: Dict[str, object]) -> str:
    """Every request body the loopback vendors received, as one text to search for secrets."""
    return json.dumps([fakes[name].requests for name in ("tensordock", "vastai", "runpod", "fly") if name in fakes],
                      default=str)


def alive(fakes: Dict[str, object]) -> Dict[str, int]:
    return {name: len(fakes[name].alive()) for name in ("tensordock", "vastai", "runpod")}


def pulled(fakes: Dict[str, object]) -> Dict[str, list]:
    """The models on each cloud's machine disk. The loopback Ollama outlives the loopback instance, but a
    real disk does not: once a cloud has no machine, none of its models remain. The VM node's models are
    the manifests its containerised Ollama keeps on the machine's disk, named as Ollama names them."""
    found = {name: sorted(o.installed) if fakes[name].alive() else [] for name, o in fakes["ollama"].items()}
    if fakes.get("machine") is not None:
        root = fakes["machine"].root / VM_MODELS
        names = []
        for manifest in root.glob("*/*/*/*"):
            host, namespace, model, tag = manifest.relative_to(root).parts
            own = (host, namespace) == ("registry.ollama.ai", "library")
            names.append(f"{model}:{tag}" if own else f"{host}/{namespace}/{model}:{tag}")
        found[VM_NODE] = sorted(names)
    return found
