"""Configuration errors that name the key path and the bad value.

``ConfigError`` carries ``(key path, message)`` pairs such as ``gpu-estate:nodes.inference.gpu.model``;
``from_validation`` turns pydantic's error locations into those paths, with the value found there. An
unknown key, at any level, is named with the nearest key that exists there ("did you mean `tunnels`?").
"""
from __future__ import annotations

import typing
from typing import Any, List, Mapping, Tuple

from pydantic import BaseModel, ValidationError

from core.fields import NAMESPACE
from core.spelling import nearest, unknown_key

Problem = Tuple[str, str]


class ConfigError(ValueError):
    """Bad stack configuration. ``problems`` holds ``(key path, message)`` pairs."""

    def __init__(self, problems: List[Problem]):
        self.problems = problems
        super().__init__(
            "invalid stack configuration:\n" + "\n".join(f"  {path}: {msg}" for path, msg in problems)
        )


def _unwrap(t: Any) -> Any:
    """``t`` without ``Annotated`` and ``Optional``."""
    while True:
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            t = typing.get_args(t)[0]
        elif origin is typing.Union and type(None) in typing.get_args(t) and len(typing.get_args(t)) == 2:
            t = next(a for a in typing.get_args(t) if a is not type(None))
        else:
            return t


def _step(t: Any, part: Any) -> Tuple[Any, bool]:
    """The type found at ``part`` inside ``t``, and whether ``part`` was a union's tag (a workload's kind,
    which pydantic puts in the location after the workload's name)."""
    t = _unwrap(t)
    origin = typing.get_origin(t)
    if isinstance(t, type) and issubclass(t, BaseModel):
        field = t.model_fields.get(part)
        return (field.annotation if field else None), False
    if origin is dict:
        return typing.get_args(t)[1], False
    if origin is list:
        return typing.get_args(t)[0], False
    if origin is typing.Union:
        for member in typing.get_args(t):
            fields = getattr(member, "model_fields", {})
            literal = fields.get("kind")
            if literal is not None and getattr(literal.default, "value", None) == part:
                return member, True
            provider = fields.get("provider")
            if provider is not None and typing.get_args(provider.annotation) == (part,):
                return member, True
    return None, False


def known_keys(loc: Tuple[Any, ...]) -> List[str]:
    """The keys the stack may give at ``loc`` (a model's location, kinds' tags included), in the model's
    order; empty where ``loc`` is no model."""
    from core.spec import EstateSpec

    t: Any = EstateSpec
    for part in loc:
        t, _ = _step(t, part)
        if t is None:
            return []
    t = _unwrap(t)
    if not (isinstance(t, type) and issubclass(t, BaseModel)):
        return []
    refused = getattr(t, "belongs_elsewhere", {})
    return [k for k in t.model_fields if k not in refused]


def _path(loc: Tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _bad_value(data: Any, loc: Tuple[Any, ...]) -> Any:
    for part in loc:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _without_tags(loc: Tuple[Any, ...]) -> Tuple[Any, ...]:
    """``loc`` without the kind pydantic names after a workload's name (``workloads.<name>.<kind>``): a
    workload's key path is its name's."""
    from core.kinds import WorkloadKind

    from core.services import PROVIDERS

    kinds = {k.value for k in WorkloadKind}
    tags = {"workloads": kinds, "services": set(PROVIDERS)}  # a service's provider is its tag likewise
    return tuple(p for i, p in enumerate(loc)
                 if not (i >= 2 and isinstance(p, str) and p in tags.get(loc[i - 2], ())))


def from_validation(err: ValidationError, raw: Mapping[str, Any]) -> ConfigError:
    """The key paths and bad values of a validation error of the estate's models over ``raw``."""
    problems = []
    for e in err.errors():
        tagged = tuple(p for p in e["loc"] if not (isinstance(p, str) and (p.startswith("function-") or p == "[key]")))
        loc = _without_tags(tagged)
        head, rest = (loc[0], loc[1:]) if loc else ("", ())
        path = f"{NAMESPACE}:{head}" + (f".{_path(rest)}" if rest else "")
        if e["type"] == "extra_forbidden":
            # The key is the mistake: name the keys that exist there, the nearest first.
            problems.append((path, unknown_key(str(tagged[-1]), known_keys(tagged[:-1]))))
            continue
        bad = e.get("input") if e["type"] != "missing" else None
        if bad is None or isinstance(bad, (dict, list)):
            leaf = _bad_value(raw, loc)
            bad = leaf if not isinstance(leaf, (dict, list)) else None
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] in ("union_tag_invalid", "union_tag_not_found") and head == "services":
            from core.services import PROVIDERS

            tag = str(e.get("ctx", {}).get("tag", bad))
            near = nearest(tag, list(PROVIDERS))
            path, bad = f"{path}.provider", None
            msg = (f"unknown service provider {tag!r}; " + (f"did you mean `{near}`? " if near else "")
                   + f"providers: {', '.join(PROVIDERS)}")
        elif e["type"] == "union_tag_invalid":
            from core.kinds import WorkloadKind

            kinds = [k.value for k in WorkloadKind]
            tag = str(e.get("ctx", {}).get("tag", bad))
            near = nearest(tag, kinds)
            path, bad = f"{path}.kind", None
            msg = (f"unknown kind {tag!r}; " + (f"did you mean `{near}`? " if near else "")
                   + f"kinds: {', '.join(kinds)}")
        problems.append((path, msg + (f" (got {bad!r})" if bad is not None else "")))
    return ConfigError(problems)
