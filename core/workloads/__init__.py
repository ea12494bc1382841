"""The workload kinds, one class each: a pydantic union discriminated by ``kind``.

A stack's workload is parsed into the class of its kind (``Ollama``, ``Vllm``, ``Container``, ...), which
carries its own fields and behaviour (``base.BaseWorkload``). Adding a kind is adding its row to
``core/kinds.py``, a module here with its class, and the class to ``KINDS_IN_ORDER``.
"""
from __future__ import annotations

from typing import Annotated, Any, Dict, Union

from pydantic import Field

from core.spelling import nearest
from core.kinds import WorkloadKind
from core.workloads.base import BaseWorkload, listen_host
from core.workloads.comfyui import ComfyUi
from core.workloads.container import Container
from core.workloads.litellm import Litellm
from core.workloads.llama_cpp import LlamaCpp
from core.workloads.mlflow import Mlflow
from core.workloads.ollama import Ollama
from core.workloads.open_webui import OpenWebui
from core.workloads.pgvector import Pgvector
from core.workloads.tgi import Tgi
from core.workloads.vllm import Vllm

KINDS_IN_ORDER = (Ollama, OpenWebui, ComfyUi, Mlflow, Pgvector, Litellm, Vllm, Tgi, LlamaCpp, Container)

WorkloadSpec = Annotated[Union[KINDS_IN_ORDER], Field(discriminator="kind")]
"""One workload of a node, parsed into the class of its kind."""

NAMED_AFTER_KIND = tuple(k for k in WorkloadKind if k.named_after_kind)
"""Kinds a node runs at most once, named after the kind (``ollama``, ``open-webui``, ...). Model-server
presets and containers of the stack's own take any name, as many as the node has room for."""

__all__ = ["BaseWorkload", "WorkloadSpec", "WorkloadKind", "KINDS_IN_ORDER", "NAMED_AFTER_KIND", "with_kinds",
           "listen_host"]


def with_kinds(workloads: Any) -> Any:
    """A node's raw ``workloads`` with each one's ``kind`` given: a workload named after a kind is of that
    kind; any other name is a container of the stack's own unless it says ``kind``. The kinds named after
    themselves keep their names (one of each per node)."""
    if not isinstance(workloads, dict):
        return workloads
    values = [k.value for k in NAMED_AFTER_KIND]
    out: Dict[Any, Any] = {}
    for name, w in workloads.items():
        if isinstance(w, dict):
            named = next((k for k in WorkloadKind if k.value == name), None)
            given = w.get("kind")
            near = nearest(str(name), [k.value for k in WorkloadKind if k is not WorkloadKind.CONTAINER])
            if given is None and named is None and near is not None and "image" not in w:
                # A kind's name misspelt would be taken for a container of the stack's own, asking for an
                # image and a port it was never meant to have.
                raise ValueError(f"workload {name!r} looks like `{near}`: name it {near} for that kind, or give "
                                 f"kind: container with image and port for a container of your own (got {name!r})")
            if given is None:
                w = {**w, "kind": named.value if named else WorkloadKind.CONTAINER.value}
            elif named in NAMED_AFTER_KIND and given != named.value:
                raise ValueError(f"workload {name!r} names the {name} kind (got kind {given!r})")
            elif given in values and given != name:
                raise ValueError(f"a {given} workload is named {given!r} (got {name!r})")
        out[name] = w
    return out
