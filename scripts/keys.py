"""Print the stack key reference (docs/keys.md) from the spec's own models.

    .venv/bin/python -m scripts.keys > docs/keys.md

Every key a stack may give, with its type, default, unit and one line of meaning, read from the pydantic
models that parse the stack (``core/spec.py``, ``core/fields.py``, ``core/workloads/*.py``) and their
field docstrings, so the reference cannot say what the parser does not. ``tests/unit/core/test_keys.py`` keeps the
committed file equal to what this prints.
"""
from __future__ import annotations

import enum
import re
import sys
import typing
from typing import Any, Iterator, List, Optional, Tuple, Type

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from core.config import SETTING_KEYS, SSH_PRIVATE_KEY
from core.spec import NAMESPACE, TOP_LEVEL_KEYS, EstateSpec
from core.spend import WEBHOOK_KEY
from core.vendors import FLY_API_TOKEN_ENV, FLY_API_TOKEN_KEY, FLY_API_URL_ENV, FLY_API_URL_KEY, FLY_SETTING_KEYS, Vendor
from core.workloads import KINDS_IN_ORDER

TOP_LEVEL = {
    "nodes": "GPU nodes (and hosts of your own) by name: what is rented, where, at what price, and what runs on it.",
    "jobs": "GPU jobs by name: a command run once in an image on a rented machine, with hour and dollar caps.",
    "serverless": "RunPod serverless endpoints by name: workers that start on requests and stop when idle.",
    "services": "Hosted model services by name (Fly.io, Cloud Run): the gateway routes to them like serverless endpoints.",
    "gateway": "The LiteLLM gateway: the node it runs on, its aliases, external providers and fallbacks.",
    "tunnels": "autossh tunnels from the gateway host to nodes, for ports the gateway does not route itself.",
    "routes": "Public hostnames, each to one `<node>/<workload>` behind its auth.",
    "edge": "How public hostnames reach the estate: a Cloudflare tunnel with Access, or Caddy.",
    "storage": "Model storage buckets (GCS or S3) by name, and the nodes that may read them.",
    "budget": "What the estate may cost: checked at preview against its own estimate.",
    "spend": "The spend watcher beside the gateway: alerts, and nodes stopped at the budget.",
    "health": "The health agent beside the gateway: checks every minute, alerts on down and recovery, the status view.",
}
"""One line for each top-level key (its model holds the lines of its own keys)."""

UNITS: Tuple[Tuple[str, str], ...] = (
    ("max_usd_per_month", "USD/month"), ("_per_hour", "USD/h"), ("max_hourly_per_node", "USD/h"),
    ("hours_per_month", "hours/month"), ("_usd", "USD"), ("_gb", "GB"), ("_minutes", "minutes"),
    ("_seconds", "seconds"), ("timeouts", "seconds"), ("_percent", "% of budget.monthly_usd"), ("_days", "days"),
    ("min_reliability", "0-1"), ("port", "TCP port"), ("ports", "TCP ports"), ("container_port", "TCP port"),
)
"""A key's unit, from its name: the keys say their units (``disk_gb``, ``bid_per_hour``), and this reads them."""


def unit(name: str) -> str:
    return next((u for suffix, u in UNITS if name == suffix or name.endswith(suffix)), "")


def description(model: Type[BaseModel], name: str) -> str:
    """A field's docstring; a kind's literal ``kind`` has the base's."""
    for cls in model.__mro__:
        info = getattr(cls, "model_fields", {}).get(name)
        if info is not None and info.description:
            return info.description
    return ""


def one_line(text: str) -> str:
    """A docstring's first sentence (``e.g.`` ends none), on one line, in Markdown."""
    text = " ".join(text.split()).replace("``", "`")
    for m in re.finditer(r"\.\s+(?=[A-Z`(])", text):
        if not text[: m.start() + 1].endswith(("e.g.", "i.e.")):
            text = text[: m.start() + 1]
            break
    return text.replace("|", "\\|")


def _args(t: Any) -> Tuple[Any, ...]:
    return typing.get_args(t)


def strip(t: Any) -> Any:
    """``t`` without ``Annotated`` and ``Optional``."""
    while True:
        if typing.get_origin(t) is typing.Annotated:
            t = _args(t)[0]
        elif typing.get_origin(t) is typing.Union and type(None) in _args(t):
            rest = [a for a in _args(t) if a is not type(None)]
            t = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]
        else:
            return t


def type_name(t: Any) -> str:
    """What a reader writes there, in words."""
    t = strip(t)
    origin = typing.get_origin(t)
    if origin is typing.Literal:
        return " \\| ".join(str(getattr(a, "value", a)) for a in _args(t))
    if isinstance(t, type) and issubclass(t, enum.Enum):
        return " \\| ".join(str(m.value) for m in t)
    if isinstance(t, type) and issubclass(t, BaseModel):
        return "mapping (below)"
    if origin is list:
        return f"list of {type_name(_args(t)[0])}"
    if origin is dict:
        return f"map: name → {type_name(_args(t)[1])}"
    if origin is typing.Union:
        members = [strip(a) for a in _args(t)]
        if all(isinstance(m, type) and issubclass(m, BaseModel) for m in members):
            return "mapping (below, by kind)"
        return " or ".join(type_name(m) for m in members)
    return {str: "string", int: "integer", float: "number", bool: "true \\| false"}.get(t, getattr(t, "__name__", str(t)))


def bounds(info: FieldInfo) -> str:
    """The range a number may take, from the field's constraints."""
    lo = hi = None
    for m in info.metadata:
        lo = getattr(m, "ge", None) if getattr(m, "ge", None) is not None else lo
        lo = f">{m.gt:g}" if getattr(m, "gt", None) is not None else lo
        hi = getattr(m, "le", None) if getattr(m, "le", None) is not None else hi
    if lo is None and hi is None:
        return ""
    if isinstance(lo, str):
        return f" ({lo}" + (f", ≤{hi:g})" if hi is not None else ")")
    return f" ({lo:g}-{hi:g})" if lo is not None and hi is not None else (f" (≥{lo:g})" if lo is not None else f" (≤{hi:g})")


def default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.default_factory() if info.default_factory is not None else info.default
    if value is PydanticUndefined or value is None:
        return "none"
    if isinstance(value, BaseModel):
        return "its defaults"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return str(value).lower()
    if value in ({}, []):
        return "empty"
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def models_within(t: Any) -> List[Type[BaseModel]]:
    """The models a field's type holds (a mapping's values, a list's items, a union's members)."""
    t = strip(t)
    if isinstance(t, type) and issubclass(t, BaseModel):
        return [t]
    return [m for a in _args(t) for m in models_within(a)]


def rows(model: Type[BaseModel]) -> Iterator[str]:
    refused = getattr(model, "belongs_elsewhere", {})
    for name, info in model.model_fields.items():
        if name in refused:
            continue
        kind = type_name(info.annotation) + (bounds(info) if strip(info.annotation) in (int, float) else "")
        yield f"| `{name}` | {kind} | {default(info)} | {unit(name)} | {one_line(description(model, name))} |"


HEAD = ["| key | type | default | unit | meaning |", "|---|---|---|---|---|"]


PLACEHOLDERS = {"nodes": "<node>", "workloads": "<workload>", "serverless": "<endpoint>", "services": "<service>", "external": "<provider>",
                "routes": "<hostname>", "storage": "<bucket>", "model_sizes": "<tag>"}
"""What a map's names are, as a path writes them (``nodes.<node>.workloads.<workload>``)."""


def sub_key(name: str, annotation: Any) -> str:
    """How a path goes on into a field holding models: a map's name, a list's item, or the field itself."""
    origin = typing.get_origin(strip(annotation))
    if origin is dict:
        return f"{name}.{PLACEHOLDERS.get(name, '<name>')}"
    return f"{name}[i]" if origin is list else name


def section(path: str, model: Type[BaseModel], level: int) -> Iterator[str]:
    """``model``'s keys at ``path``, then the models inside it, each under its own heading."""
    yield from [f"{'#' * level} `{path}`", ""]
    doc = " ".join((model.__doc__ or "").split()).replace("``", "`")
    if doc and model.__doc__ is not BaseModel.__doc__ and not doc.startswith("The base of every model"):
        yield from [doc, ""]
    yield from [*HEAD, *rows(model), ""]
    refused = getattr(model, "belongs_elsewhere", {})
    for name, info in model.model_fields.items():
        if name in refused:
            continue
        inner = models_within(info.annotation)
        key = sub_key(name, info.annotation)
        if len(inner) == 1:
            yield from section(f"{path}.{key}", inner[0], level + 1)
        elif inner:
            yield from workloads(f"{path}.{key}", level + 1)


def workloads(path: str, level: int) -> Iterator[str]:
    yield from [f"{'#' * level} `{path}`", "",
                "A workload named after a kind (`ollama`, `open-webui`, `comfyui`, `mlflow`, `pgvector`, `litellm`, "
                "`vllm`, `tgi`, `llama-cpp`) is that kind; any other name is a container of your own unless it says "
                "`kind:`. Each kind has the keys below and no others: a key of another kind, or one the kind would "
                "ignore, is refused saying where it belongs.", ""]
    for cls in KINDS_IN_ORDER:
        kind = cls.model_fields["kind"].default.value
        yield from [f"{'#' * (level + 1)} `{kind}`", ""]
        doc = " ".join((sys.modules[cls.__module__].__doc__ or "").split()).replace("``", "`")
        if doc:
            yield from [doc, ""]
        yield from [*HEAD, *rows(cls), ""]
        if cls.belongs_elsewhere:
            yield from [f"Refused here: {', '.join(f'`{k}` ({v})' for k, v in cls.belongs_elsewhere.items())}.", ""]
        for name, info in cls.model_fields.items():
            inner = models_within(info.annotation)
            if len(inner) == 1 and name not in cls.belongs_elsewhere:
                yield from section(f"{path}.{sub_key(name, info.annotation)}", inner[0], level + 2)


def settings() -> Iterator[str]:
    """The namespace's keys that are not part of the spec."""
    yield from ["## Settings and secrets", "",
                "Keys of the namespace outside the spec; set the secret ones with `pulumi config set --secret`.", "",
                "| key | meaning |", "|---|---|",
                f"| `{NAMESPACE}:{SSH_PRIVATE_KEY}` | The operator's SSH private key for remote commands (else "
                "`ESTATE_SSH_PRIVATE_KEY`, else the SSH agent). |",
                f"| `{NAMESPACE}:{WEBHOOK_KEY}` | The webhook the spend watcher and the health agent post their alerts to. |"]
    for v in Vendor:
        info = v.info
        if info.credential_key:
            yield f"| `{NAMESPACE}:{info.credential_key}` | {v.value}'s API key (else `{info.credential_env}`). |"
        if info.url_key:
            yield f"| `{NAMESPACE}:{info.url_key}` | Where {v.value}'s API answers (else `{info.url_env}`, else its own). |"
    yield f"| `{NAMESPACE}:{FLY_API_TOKEN_KEY}` | Fly.io's API token for its Machines API (else `{FLY_API_TOKEN_ENV}`). |"
    yield (f"| `{NAMESPACE}:{FLY_API_URL_KEY}` | Where Fly.io's Machines API answers (else `{FLY_API_URL_ENV}`, else "
           "its own). |")
    yield (f"| `{NAMESPACE}:<NAME>` | A secret a workload's `secret_env` or a gateway provider's `api_key_env` names "
           "(`HF_TOKEN`, `OPENAI_API_KEY`): upper case, digits and `_`; one nothing names is warned about. |")
    assert len(SETTING_KEYS) == 2 + len(FLY_SETTING_KEYS) + sum(bool(v.info.credential_key) + bool(v.info.url_key) for v in Vendor)
    yield ""


def reference() -> str:
    lines = ["# Stack keys", "",
             "<!-- Generated by `python -m scripts.keys` from the spec's models; edit their docstrings, not this "
             "file (tests/unit/core/test_keys.py compares them). -->", "",
             f"Every key lives in the `{NAMESPACE}` namespace of `Pulumi.<stack>.yaml` (`{NAMESPACE}:nodes`, "
             f"`{NAMESPACE}:budget`, ...). A key that is not here is refused at preview, naming the nearest that is. "
             "Paths below are written as the refusals write them: `<name>` is a name of yours, `[i]` an item of a "
             "list.", ""]
    for key in TOP_LEVEL_KEYS:
        info = EstateSpec.model_fields[key]
        t = strip(info.annotation)
        inner = models_within(info.annotation)
        model = inner[0]
        shape = {dict: f"a map of {PLACEHOLDERS.get(key, '<name>')} → the keys below",
                 list: "a list of the keys below"}.get(typing.get_origin(t), "the keys below")
        lines += [f"## `{NAMESPACE}:{key}`", "", f"{TOP_LEVEL[key]} {'Required' if info.is_required() else 'Optional'}; "
                  f"{shape}.", ""]
        if len(inner) > 1:  # a union told apart by ``provider`` (services): each one's keys
            for cls in inner:
                provider = cls.model_fields["provider"].annotation.__args__[0]
                lines += list(section(f"{sub_key(key, info.annotation)} (provider `{provider}`)", cls, 3))
            continue
        body = list(section(sub_key(key, info.annotation), model, 3))
        lines += body[2:]  # the top-level heading stands for the first
    lines += list(settings())
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
    sys.stdout.write(reference())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
