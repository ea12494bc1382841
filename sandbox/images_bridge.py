"""The estate's images bridge (``assets/comfyui/images_bridge.py``, the file a ComfyUI node runs) served on
this machine in front of a loopback ComfyUI: what the sandbox's marketplace node maps its bridge port to,
and what the tests send OpenAI's images requests through."""
from __future__ import annotations

import contextlib
import importlib.util
import threading
from types import ModuleType
from typing import Any, Dict, Iterator

from core.catalog import ASSETS

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
