"""Configuration errors that name the key path and the bad value.

``ConfigError`` carries ``(key path, message)`` pairs such as ``gpu-estate:nodes.inference.gpu.model``;
``from_validation`` turns pydantic's error locations into those paths, with the value found there.
"""
from __future__ import annotations

from typing import Any, List, Mapping, Tuple

from pydantic import ValidationError

from core.spec import NAMESPACE

Problem = Tuple[str, str]


class ConfigError(ValueError):
    """Bad stack configuration. ``problems`` holds ``(key path, message)`` pairs."""

    def __init__(self, problems: List[Problem]):
        self.problems = problems
        super().__init__(
            "invalid stack configuration:\n" + "\n".join(f"  {path}: {msg}" for path, msg in problems)
        )


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

    kinds = {k.value for k in WorkloadKind}
    return tuple(p for i, p in enumerate(loc)
                 if not (i >= 2 and loc[i - 2] == "workloads" and isinstance(p, str) and p in kinds))


def from_validation(err: ValidationError, raw: Mapping[str, Any]) -> ConfigError:
    """The key paths and bad values of a validation error of the estate's models over ``raw``."""
    problems = []
    for e in err.errors():
        loc = _without_tags(tuple(p for p in e["loc"]
                                  if not (isinstance(p, str) and (p.startswith("function-") or p == "[key]"))))
        head, rest = (loc[0], loc[1:]) if loc else ("", ())
        path = f"{NAMESPACE}:{head}" + (f".{_path(rest)}" if rest else "")
        bad = e.get("input") if e["type"] != "missing" else None
        if bad is None or isinstance(bad, (dict, list)):
            leaf = _bad_value(raw, loc)
            bad = leaf if not isinstance(leaf, (dict, list)) else None
        msg = e["msg"].removeprefix("Value error, ")
        problems.append((path, msg + (f" (got {bad!r})" if bad is not None else "")))
    return ConfigError(problems)
