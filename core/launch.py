"""How a workload's server is started: where it listens inside its container and the arguments a
model-server preset is given. Read by the renderers (compose, start scripts, RunPod's ``dockerArgs``) and
by the rules that check what a vendor can pass on."""
from __future__ import annotations

from typing import List

from core.demand import gpu_fraction
from core.kinds import WorkloadKind
from core.spec import Access, NodeSpec


def listen_host(node: NodeSpec) -> str:
    """Where a server listens inside its container: a container node reached over SSH is forwarded to
    inside its own container, so its servers listen on the container's loopback only (not on the host's
    bridge, where the host and other tenants' containers could reach them). In a compose project the
    container's port is published to the VM's loopback (``bind_address``), so it listens on the
    container's network."""
    return "127.0.0.1" if node.provider.is_container and node.access is Access.SSH else "0.0.0.0"


def preset_args(node: NodeSpec, name: str) -> List[str]:
    """The arguments a model-server workload starts with: a vLLM preset's model and options (its image
    runs ``vllm serve``), then the stack's own ``args``. TGI and llama.cpp start from env alone."""
    w = node.workloads[name]
    args: List[str] = []
    if w.kind is WorkloadKind.VLLM:
        args += ["--model", w.model, "--served-model-name", w.model_name, "--host", listen_host(node),
                 "--port", str(node.info(name).container_port)]
        fraction = gpu_fraction(node, name)
        if fraction is not None:
            args += ["--gpu-memory-utilization", f"{fraction:.2f}"]
        if node.gpu is not None and node.gpu.count > 1 and node.uses_gpu(name):
            args += ["--tensor-parallel-size", str(node.gpu.count)]
    return args + list(w.args)
