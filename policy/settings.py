"""A policy's own settings: its value from ``--policy-pack-config`` or the module's default, and the
config schema CrossGuard validates that file against, typed from the default."""
from __future__ import annotations

from typing import Any, Mapping

from pulumi_policy import PolicyConfigSchema


def setting(args: Any, defaults: Mapping[str, Any], key: str) -> Any:
    return (args.get_config() or {}).get(key, defaults[key])


def schema(defaults: Mapping[str, Any], key: str) -> PolicyConfigSchema:
    default = defaults[key]
    if isinstance(default, bool):
        prop = {"type": "boolean"}
    elif isinstance(default, (int, float)):
        prop = {"type": "number"}
    else:
        prop = {"type": "array", "items": {"type": "string"}}
    return PolicyConfigSchema(properties={key: {**prop, "default": default}})
