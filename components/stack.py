"""The stack as the program reads it: every ``gpu-estate`` key from ``pulumi.Config``, checked once into one
typed ``Stack`` with the config secrets it names, before any resource exists.

The parsing and the rules are the pure layer's (``core.config.parse_spec``); this module is where the
engine's config and secrets come in, so that ``core`` imports no Pulumi.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Dict, List, Optional

import pulumi

from core import spend
from core.config import GCP_PROJECT_ENV, SSH_PRIVATE_KEY, parse_spec, top_level_problems, unused_secrets
from core.errors import ConfigError
from core.spec import NAMESPACE, TOP_LEVEL_KEYS, EstateSpec
from core.topology import EstatePlan, plan_estate
from core.vendors import VENDOR_KEYS, Vendor


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


def _vendor_key(config: Any, cloud: str, why: str) -> Optional[Any]:
    """A marketplace's API key for the gateway host, as a secret: its config secret, else its environment
    variable on the machine running `pulumi up`; a warning saying ``why`` it is needed when neither is set."""
    vendor = Vendor(cloud).info
    env, key = vendor.credential_env, vendor.credential_key
    value = config.get_secret(key)
    if value is None and os.environ.get(env):
        value = pulumi.Output.secret(os.environ[env])
    if value is None:
        pulumi.log.warn(f"gateway: no config secret {NAMESPACE}:{key} (nor {env}); {why} until it is set")
    return value


def _check_cloud_settings(spec: EstateSpec) -> None:
    """What the cloud providers need before they can create anything, refused at preview rather than
    at the vendor: GCP resources need a project."""
    uses_gcp = [f"{NAMESPACE}:nodes.{n}.provider" for n, node in spec.nodes.items() if node.provider.value == "gcp"]
    uses_gcp += [f"{NAMESPACE}:storage.{b}.provider" for b, bucket in spec.storage.items() if bucket.provider == "gcs"]
    if uses_gcp and not (pulumi.Config("gcp").get("project") or any(os.environ.get(v) for v in GCP_PROJECT_ENV)):
        raise ConfigError([("gcp:project", f"{uses_gcp[0]} is on GCP: set `pulumi config set gcp:project <id>` "
                                           f"(or {GCP_PROJECT_ENV[0]}) (got none)")])


def namespace_keys() -> List[str]:
    """Every key the stack's config sets in the ``gpu-estate`` namespace, without the prefix. ``pulumi.Config``
    reads one named key at a time and has no listing, so a misspelt key would never be asked for; the whole
    map is what the language host hands the program in ``PULUMI_CONFIG``, which the SDK's public
    ``pulumi.runtime.get_config_env`` reads (as the official language host's own start-up does)."""
    prefix = f"{NAMESPACE}:"
    return sorted(k[len(prefix):] for k in pulumi.runtime.get_config_env() if k.startswith(prefix))


def load_stack(config: Any = None, project: Optional[str] = None, stack: Optional[str] = None) -> Stack:
    """Read every key of the ``gpu-estate`` namespace from the stack's config, parse it once, read the
    secrets it names and derive the plan. Raises ConfigError before any resource exists, also for a key
    of the namespace nothing reads (misspelt, or a secret no workload names)."""
    config = config or pulumi.Config(NAMESPACE)
    given = namespace_keys()
    unknown = top_level_problems(given)
    if unknown:
        raise ConfigError(unknown)
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
    # Warned, not refused: a secret may be set ahead of the node that will name it, or stay behind a node
    # left out for a while, and refusing would make an operator delete it to preview.
    for path, message in unused_secrets(spec, given):
        pulumi.log.warn(f"{path}: {message}")
    for name, node in spec.nodes.items():
        if node.max_usd_per_month is not None:
            pulumi.log.info(f"{NAMESPACE}:nodes.{name}: max_usd_per_month ${node.max_usd_per_month:g} over "
                            f"{node.hours_per_month:g} h a month is a cap of ${node.price_cap:g}/h")
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
    # A job's secret env and an existing bucket's access key are config secrets named the same way.
    named = [(f"jobs.{j}.secret_env[{i}]", name) for j, job in spec.jobs.items() for i, name in enumerate(job.secret_env)]
    named += [(f"storage.{b}.{k}", getattr(bucket, k)) for b, bucket in spec.storage.items()
              for k in ("access_key_secret", "secret_key_secret") if getattr(bucket, k)]
    for path, name in named:
        env[name] = config.get_secret(name)
        if env[name] is None:
            missing.append((f"{NAMESPACE}:{path}", f"no config secret {NAMESPACE}:{name}: run `pulumi config set "
                                                   f"--secret {NAMESPACE}:{name} ...` (got {name!r})"))
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
    if spec.spend is not None or spec.health is not None:  # the spend watcher and the health agent post there
        webhook = config.get(spend.WEBHOOK_KEY)  # checked here, used only as a secret
        if webhook is None:
            pulumi.log.warn(f"no config secret {NAMESPACE}:{spend.WEBHOOK_KEY}; the spend and health alerts go to "
                            "their journals only")
        elif not re.fullmatch(spend.WEBHOOK_PATTERN, webhook):
            raise ConfigError([(f"{NAMESPACE}:{spend.WEBHOOK_KEY}", "not an http(s) URL without spaces or quotes "
                                                                   "(value hidden: a secret)")])
        else:
            external[spend.WEBHOOK_ENV] = config.get_secret(spend.WEBHOOK_KEY)
    if spec.health is not None:
        # The health agent asks an idle node's marketplace whether its idle watcher stopped it.
        for name, node in spec.nodes.items():
            for cloud in ((node.provider, *node.failover) if node.power.value == "idle" else ()):
                if cloud.is_marketplace:
                    needs.setdefault(cloud.value, f"the health agent cannot tell {name} stopped from down")
    if spec.spend is not None:
        # The watcher asks each marketplace node's vendor what it bills, and stops it at the budget.
        for name, node in spec.nodes.items():
            for cloud in (node.provider, *node.failover):
                if cloud.is_marketplace:
                    needs.setdefault(cloud.value, f"the spend watcher cannot see or stop {name}")
        for name, job in spec.jobs.items():
            for cloud in (job.provider, *job.failover):
                needs.setdefault(cloud.value, f"the spend watcher cannot release job {name}'s machine")
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
