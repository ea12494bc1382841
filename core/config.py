"""Reading a stack: its file, its ``pulumi.Config`` and its secrets, once, into one typed ``Stack``.

``parse_spec`` validates a raw mapping (the models, then ``core.rules``) and is what every tool without
the engine calls (the gateway config command, the pack config, the cost diff, the tests).
``load_stack`` is what the program calls: it reads every ``gpu-estate`` key and every config secret the
spec names from ``pulumi.Config``, checks them, and derives the plan, so no component reads config.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from pydantic import ValidationError

from core import spend
from core.catalog import ASSETS
from core.errors import ConfigError, from_validation
from core.rules import check_estate
from core.spec import NAMESPACE, TOP_LEVEL_KEYS, EstateSpec
from core.vendors import VENDOR_KEYS, Vendor
from core.topology import EstatePlan, plan_estate

PROJECT_ROOT = ASSETS.parent
SSH_PRIVATE_KEY = "sshPrivateKey"
"""Config secret holding the operator's SSH private key (``gpu-estate:sshPrivateKey``)."""


def _vendor_key(config: Any, cloud: str, why: str) -> Optional[Any]:
    """A marketplace's API key for the gateway host, as a secret: its config secret, else its environment
    variable on the machine running `pulumi up`; a warning saying ``why`` it is needed when neither is set."""
    import os

    import pulumi

    vendor = Vendor(cloud).info
    env, key = vendor.credential_env, vendor.credential_key
    value = config.get_secret(key)
    if value is None and os.environ.get(env):
        value = pulumi.Output.secret(os.environ[env])
    if value is None:
        pulumi.log.warn(f"gateway: no config secret {NAMESPACE}:{key} (nor {env}); {why} until it is set")
    return value


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


@dataclasses.dataclass(frozen=True)
class StackSecrets:
    """The config secrets the spec names, as Pulumi secret outputs (never plain values)."""

    env: Dict[str, Any] = dataclasses.field(default_factory=dict)
    """``secret_env`` name -> value, for every name any workload lists."""
    external_keys: Dict[str, Any] = dataclasses.field(default_factory=dict)
    """``api_key_env`` of an external gateway provider -> value, where the secret is set."""
    ssh_private_key: Optional[Any] = None
    """The operator's SSH private key (``gpu-estate:sshPrivateKey``), if set."""


@dataclasses.dataclass(frozen=True)
class Stack:
    """One stack as the program builds it: the checked spec, its plan and its secrets."""

    spec: EstateSpec
    plan: EstatePlan
    secrets: StackSecrets
    project: str
    stack: str


GCP_PROJECT_ENV = ("GOOGLE_PROJECT", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT")


def _check_cloud_settings(spec: EstateSpec) -> None:
    """What the cloud providers need before they can create anything, refused at preview rather than
    at the vendor: GCP resources need a project."""
    import os

    import pulumi

    uses_gcp = [f"{NAMESPACE}:nodes.{n}.provider" for n, node in spec.nodes.items() if node.provider.value == "gcp"]
    uses_gcp += [f"{NAMESPACE}:storage.{b}.provider" for b, bucket in spec.storage.items() if bucket.provider == "gcs"]
    if uses_gcp and not (pulumi.Config("gcp").get("project") or any(os.environ.get(v) for v in GCP_PROJECT_ENV)):
        raise ConfigError([("gcp:project", f"{uses_gcp[0]} is on GCP: set `pulumi config set gcp:project <id>` "
                                           f"(or {GCP_PROJECT_ENV[0]}) (got none)")])


def load_stack(config: Any = None, project: Optional[str] = None, stack: Optional[str] = None) -> Stack:
    """Read every key of the ``gpu-estate`` namespace from the stack's config, parse it once, read the
    secrets it names and derive the plan. Raises ConfigError before any resource exists."""
    import pulumi

    config = config or pulumi.Config(NAMESPACE)
    raw: Dict[str, Any] = {}
    for key in TOP_LEVEL_KEYS:
        try:
            value = config.get_object(key)
        except Exception as err:  # malformed JSON in a config value
            raise ConfigError([(f"{NAMESPACE}:{key}", f"not valid structured config: {err}")]) from None
        # Pulumi.yaml gives optional keys an empty default: empty means not set.
        if value is not None and value != {} and value != []:
            raw[key] = value
    if "nodes" not in raw:
        raise ConfigError([(f"{NAMESPACE}:nodes", "missing: the estate needs at least one node")])
    if "budget" not in raw:
        raise ConfigError([(f"{NAMESPACE}:budget", "missing: set budget.monthly_usd")])
    spec = parse_spec(raw)
    env: Dict[str, Any] = {}
    missing = []
    for n, node in spec.nodes.items():
        for k, w in node.workloads.items():
            for i, name in enumerate(w.secret_env):
                value = config.get_secret(name)
                if value is None:
                    missing.append((f"{NAMESPACE}:nodes.{n}.workloads.{k}.secret_env[{i}]",
                                    f"no config secret {NAMESPACE}:{name}: run `pulumi config set --secret "
                                    f"{NAMESPACE}:{name} ...` (got {name!r})"))
                env[name] = value
    if missing:
        raise ConfigError(missing)
    _check_cloud_settings(spec)
    external = {}
    for ext in (spec.gateway.external.values() if spec.gateway else ()):
        value = config.get_secret(ext.api_key_env)
        if value is None:
            pulumi.log.warn(f"gateway: no config secret {NAMESPACE}:{ext.api_key_env}; fallbacks to "
                            f"{', '.join(ext.models)} will fail until it is set")
        else:
            external[ext.api_key_env] = value
    plan = plan_estate(spec)
    needs: Dict[str, str] = {}
    if spec.spend is not None:
        webhook = config.get(spend.WEBHOOK_KEY)  # checked here, used only as a secret
        if webhook is None:
            pulumi.log.warn(f"spend: no config secret {NAMESPACE}:{spend.WEBHOOK_KEY}; the watcher's alerts go to "
                            "its journal only")
        elif not re.fullmatch(spend.WEBHOOK_PATTERN, webhook):
            raise ConfigError([(f"{NAMESPACE}:{spend.WEBHOOK_KEY}", "not an http(s) URL without spaces or quotes "
                                                                   "(value hidden: a secret)")])
        else:
            external[spend.WEBHOOK_ENV] = config.get_secret(spend.WEBHOOK_KEY)
        # The watcher asks each marketplace node's vendor what it bills, and stops it at the budget.
        for name, node in spec.nodes.items():
            for cloud in (node.provider, *node.failover):
                if cloud.is_marketplace:
                    needs.setdefault(cloud.value, f"the spend watcher cannot see or stop {name}")
    if any(plan.endpoints.values()):
        # RunPod's OpenAI route of an endpoint takes the RunPod API key as its bearer token.
        needs["runpod"] = "aliases served by serverless endpoints will fail"
    for wake in plan.wake.values():
        # The gateway starts idle-stopped nodes with the marketplace's own start call.
        for node in wake.nodes:
            for cloud in (spec.nodes[node].provider, *spec.nodes[node].failover):  # wherever it landed
                needs.setdefault(cloud.value, f"the gateway cannot wake {node}")
    for cloud, why in sorted(needs.items()):
        value = _vendor_key(config, cloud, why)
        if value is not None:
            external[VENDOR_KEYS[cloud][0]] = value
    secrets = StackSecrets(env={n: env[n] for n in sorted(env)}, external_keys=external,
                           ssh_private_key=config.get_secret(SSH_PRIVATE_KEY))
    return Stack(spec=spec, plan=plan, secrets=secrets,
                 project=project or pulumi.get_project(), stack=stack or pulumi.get_stack())
