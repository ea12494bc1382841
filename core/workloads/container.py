"""A container of the stack's own (an API, a dashboard, a proxy): image, command, ports and health from the
stack. What it serves is unknown, so it is never published without auth."""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Literal, Optional

from pydantic import Field, model_validator

from core.fields import Arg, ContainerPath, ModelName, UrlPath
from core.kinds import KindInfo, WorkloadKind, http_check
from core.workloads.base import BaseWorkload


class Container(BaseWorkload):
    kind: Literal[WorkloadKind.CONTAINER] = WorkloadKind.CONTAINER
    container_port: Optional[int] = Field(None, ge=1, le=65535)
    """The port the image listens on (default ``port``)."""
    args: List[Arg] = Field(default_factory=list)
    """The command its image's entrypoint runs (compose's ``command``)."""
    entrypoint: List[Arg] = Field(default_factory=list)
    """Replaces the image's entrypoint. A Vast.ai node runs ``entrypoint + args`` itself (it replaces every
    image's entrypoint), so give it there when the image has one."""
    health_path: Optional[UrlPath] = None
    """HTTP path answering 200 once the service is up (checked by compose)."""
    data_path: Optional[ContainerPath] = None
    """Where the image keeps what must survive a replacement (bind-mounted from the node)."""
    served_name: Optional[ModelName] = None
    """The model name it answers to when it speaks the OpenAI API (``openai: true``)."""
    openai: Optional[bool] = None
    """Whether it speaks the OpenAI API under ``/v1`` and joins the gateway."""

    @model_validator(mode="after")
    def _own_image(self) -> "Container":
        if not self.image or not self.port:
            raise ValueError("a container of the stack's own needs image and port (got "
                             f"image {self.image!r}, port {self.port!r})")
        if self.openai and not self.served_name:
            raise ValueError("a container speaking the OpenAI API needs served_name: the model name it answers to")
        return self

    def facts(self) -> KindInfo:
        port = self.container_port or self.port
        return dataclasses.replace(super().facts(), image=self.image, port=self.port, container_port=port,
                                   data_path=self.data_path or "", health_path=self.health_path,
                                   healthcheck=http_check(port, self.health_path) if self.health_path else None)

    @property
    def model_name(self) -> Optional[str]:
        return self.served_name if self.openai else None

    def probe(self, routed: List[str]) -> Dict[str, object]:
        if self.openai:
            return {"type": "openai", "path": self.health_path, "models": [self.served_name]}
        return {"type": "http", "path": self.health_path} if self.health_path else {"type": "tcp"}

    def command(self, node, name: str) -> List[str]:
        return list(self.args)

    def entrypoint_words(self) -> List[str]:
        return list(self.entrypoint)

    def problems(self, spec, node_name: str, name: str, path: str):
        node = spec.nodes[node_name]
        if node.provider.info.replaces_entrypoint and not (self.entrypoint or self.args):
            return [(f"{path}.entrypoint", "a Vast.ai instance runs its start script instead of the image's "
                                           f"entrypoint: give the command that starts {name} (entrypoint and args) "
                                           "(got neither)")]
        return []
