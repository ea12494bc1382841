"""Open WebUI: the chat interface, talking to the node's Ollama when it has one."""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Literal

from core.kinds import WorkloadKind
from core.workloads.base import BaseWorkload

if TYPE_CHECKING:
    from core.spec import NodeSpec


class OpenWebui(BaseWorkload):
    kind: Literal[WorkloadKind.OPEN_WEBUI] = WorkloadKind.OPEN_WEBUI

    def own_env(self, node: "NodeSpec", name: str) -> Dict[str, str]:
        env: Dict[str, str] = {}
        ollama = next((n for n, w in node.workloads.items() if w.speaks_ollama_api), None)
        if ollama is not None:
            env["OLLAMA_BASE_URL"] = f"http://{ollama}:{node.info(ollama).container_port}"
        # The first account made becomes the admin; no one signs up after it, wherever it runs.
        env["ENABLE_SIGNUP"] = "false"
        return env
