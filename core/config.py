"""Reading a stack's configuration without the engine: its file, and the spec parsed and checked.

``parse_spec`` validates a raw mapping (the models, then ``core.rules``) and is what every tool calls
(the program through ``components.stack.load_stack``, the gateway config command, the pack config, the
cost diff, the tests).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping

from pydantic import ValidationError

from core.catalog import ASSETS
from core.errors import ConfigError, from_validation
from core.rules import check_estate
from core.spec import NAMESPACE, TOP_LEVEL_KEYS, EstateSpec

PROJECT_ROOT = ASSETS.parent
SSH_PRIVATE_KEY = "sshPrivateKey"
"""Config secret holding the operator's SSH private key (``gpu-estate:sshPrivateKey``)."""


def parse_spec(raw: Mapping[str, Any]) -> EstateSpec:
    """Parse and cross-check a raw config mapping (keys without the namespace prefix)."""
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError([(f"{NAMESPACE}:{k}", f"unknown key; known: {', '.join(TOP_LEVEL_KEYS)}") for k in unknown])
    try:
        spec = EstateSpec.model_validate(dict(raw))
    except ValidationError as err:
        raise from_validation(err, raw) from None
    problems = check_estate(spec)
    if problems:
        raise ConfigError(problems)
    return spec


def stack_file_config(stack: str, root: Any = None) -> Dict[str, Any]:
    """The ``config`` map of ``Pulumi.<stack>.yaml`` as committed (secure values stay encrypted): what
    the tools that run without the engine read (the gateway config command, the pack config, the cost
    diff) and what the tests run the program with."""
    import yaml

    path = Path(root or PROJECT_ROOT) / f"Pulumi.{stack}.yaml"
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("config", {})


def estate_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The estate's keys of a stack config without the namespace, as ``parse_spec`` takes them (config
    secrets such as ``gpu-estate:HF_TOKEN`` are not part of the spec)."""
    prefix = f"{NAMESPACE}:"
    return {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix) and k[len(prefix):] in TOP_LEVEL_KEYS}


GCP_PROJECT_ENV = ("GOOGLE_PROJECT", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT")
