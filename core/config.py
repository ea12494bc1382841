"""Reading a stack's configuration without the engine: its file, and the spec parsed and checked.

``parse_spec`` validates a raw mapping (the models, then ``core.rules``) and is what every tool calls
(the program through ``components.stack.load_stack``, the gateway config command, the pack config, the
cost diff, the tests).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping

from pydantic import ValidationError

from core.catalog import ASSETS
from core.errors import ConfigError, Problem, from_validation
from core.spelling import unknown_key
from core.rules import check_estate
from core.spec import NAMESPACE, TOP_LEVEL_KEYS, EstateSpec
from core.spend import WEBHOOK_KEY
from core.vendors import FLY_SETTING_KEYS, Vendor

PROJECT_ROOT = ASSETS.parent
SSH_PRIVATE_KEY = "sshPrivateKey"
"""Config secret holding the operator's SSH private key (``gpu-estate:sshPrivateKey``)."""
SETTING_KEYS = tuple([SSH_PRIVATE_KEY, WEBHOOK_KEY] + [k for v in Vendor for k in (v.info.credential_key, v.info.url_key) if k]
                     + list(FLY_SETTING_KEYS))
"""The namespace's keys that are not part of the spec: the operator's SSH key, the spend webhook, each
marketplace's credential and API address."""
SECRET_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
"""A config secret a workload's ``secret_env`` or an external provider's ``api_key_env`` names
(``gpu-estate:HF_TOKEN``, ``gpu-estate:OPENAI_API_KEY``)."""


def is_spec_key(name: str) -> bool:
    """Whether a key of the namespace (without the prefix) belongs to the spec rather than being a setting
    or a named secret. An unknown one does: the spec refuses it, naming the nearest."""
    return name not in SETTING_KEYS and not SECRET_NAME.fullmatch(name)


def top_level_problems(names: Iterable[str]) -> List[Problem]:
    """The keys of the namespace no part of the program reads, each with the nearest key that exists: a
    misspelt key (``tunnel``) is refused rather than dropped."""
    known = list(TOP_LEVEL_KEYS) + list(SETTING_KEYS)
    return [(f"{NAMESPACE}:{k}", unknown_key(k, known)) for k in sorted(names)
            if is_spec_key(k) and k not in TOP_LEVEL_KEYS]


def unused_secrets(spec: EstateSpec, names: Iterable[str]) -> List[Problem]:
    """Config secrets named like an env var that no workload's ``secret_env`` and no external provider's
    ``api_key_env`` names: a value set for nothing (a token a checkpoint download would not get), which
    the program warns about."""
    used = {n for node in spec.nodes.values() for w in node.workloads.values() for n in w.secret_env}
    used |= {ext.api_key_env for ext in (spec.gateway.external.values() if spec.gateway else ())}
    used |= {n for job in spec.jobs.values() for n in job.secret_env}
    used |= {n for bucket in spec.storage.values() for n in bucket.secret_names}
    where = [f"{NAMESPACE}:nodes.<node>.workloads.<workload>.secret_env"]
    if spec.gateway is not None:
        where.append(f"{NAMESPACE}:gateway.external.<provider>.api_key_env")
    return [(f"{NAMESPACE}:{n}", f"a config secret nothing reads: name it in {' or '.join(where)} "
                                 f"(got {n!r})")
            for n in sorted(names) if SECRET_NAME.fullmatch(n) and n not in used]


def parse_spec(raw: Mapping[str, Any]) -> EstateSpec:
    """Parse and cross-check a raw config mapping (keys without the namespace prefix)."""
    unknown = top_level_problems(raw)
    if unknown:
        raise ConfigError(unknown)
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
    """The estate's keys of a stack config without the namespace, as ``parse_spec`` takes them: every key
    but the settings and named secrets (``gpu-estate:HF_TOKEN``), so that an unknown one is refused there."""
    prefix = f"{NAMESPACE}:"
    return {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix) and is_spec_key(k[len(prefix):])}


GCP_PROJECT_ENV = ("GOOGLE_PROJECT", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT")
