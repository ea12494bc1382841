"""The estate's images bridge (``assets/comfyui/images_bridge.py``, the file a ComfyUI node runs) served on
this machine in front of a loopback ComfyUI: what the sandbox's marketplace node maps its bridge port to,
and what the tests send OpenAI's images requests through."""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import threading
from types import ModuleType
from typing import Any, Dict, Iterator, Tuple

from core.catalog import ASSETS
from core.config import PROJECT_ROOT, estate_config, parse_spec, stack_file_config
from loopback.comfyui import FakeComfyUI

BRIDGE_FILE = ASSETS / "comfyui" / "images_bridge.py"


def bridge_module() -> ModuleType:
    """The bridge as a module, loaded from the very file nodes are given (it is no package of ours)."""
    spec = importlib.util.spec_from_file_location("estate_images_bridge", BRIDGE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def running_bridge(config: Dict[str, Any], host: str = "127.0.0.1", port: int = 0) -> Iterator[Any]:
    """The bridge serving ``config`` (the document a node's ``config.json`` holds) on a free port; yields
    its HTTP server (``server_address`` has the port)."""
    module = bridge_module()
    httpd = module.serve(module.Bridge(config), host, port)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@dataclasses.dataclass(frozen=True)
class NodeBridge:
    httpd: Any
    port: int
    """The bridge's port on its node (``images_port``), which the node's vendor maps to ``httpd``."""


@contextlib.contextmanager
def node_bridge(stack: str, node: str) -> Iterator[Tuple[FakeComfyUI, NodeBridge]]:
    """A loopback ComfyUI and the bridge with the config the stack's ``node`` is given (``bridge_config``:
    its workflows and how long outputs stay), pointed at that ComfyUI and its output directory."""
    spec = parse_spec(estate_config(stack_file_config(stack, PROJECT_ROOT)))
    name, workload = next((n, w) for n, w in spec.nodes[node].workloads.items() if w.data_files(spec.nodes[node], n))
    config = json.loads(workload.bridge_config(spec.nodes[node], name))
    comfy = FakeComfyUI()
    try:
        with running_bridge({**config, "comfyui": comfy.url, "output_dir": comfy.output_dir}) as httpd:
            yield comfy, NodeBridge(httpd, spec.nodes[node].serving_port(name))
    finally:
        comfy.close()
