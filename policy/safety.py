"""Safety policies: where nodes may run and on what, spot use, model servers never open without auth,
credentials never in fields others can read, and models that fit the GPU they are pulled onto.

Each policy reads what the program stamps (``core/stamps.py``) or the resource's own properties,
so it judges the plan a preview produces, before anything is rented.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Iterator, List, Tuple

from pulumi_policy import (
    EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy, StackValidationArgs,
    StackValidationPolicy,
)

from core.demand import VRAM_USABLE_FRACTION, resident_vram
from core.kinds import WorkloadKind, model_server_ports
from core.vendors import SERVERLESS_PROVIDER, SPOT_VENDORS, Vendor
from policy.settings import schema, setting
from core.stamps import from_tags
from policy.stamps import GPU_INSTANCE, SERVERLESS_ENDPOINT, node_stamps

OLLAMA_MODEL = "pulumi-python:dynamic/ollama:Model"
DNS_RECORD = "cloudflare:index/dnsRecord:DnsRecord"
ACCESS_APP = "cloudflare:index/zeroTrustAccessApplication:ZeroTrustAccessApplication"
AWS_SG = "aws:ec2/securityGroup:SecurityGroup"
GCP_FIREWALL = "gcp:compute/firewall:Firewall"
REMOTE_COMMAND = "command:remote:Command"

MODEL_SERVER_KINDS = tuple(k.value for k in WorkloadKind if k.is_model_server)
# Their default ports on the host and inside their containers.
MODEL_SERVER_PORTS = model_server_ports()
ALL_PROVIDERS = [p.value for p in Vendor] + [SERVERLESS_PROVIDER]

DEFAULTS: Dict[str, Any] = {
    "providers": ALL_PROVIDERS,
    "gpus": [],                 # empty: any GPU
    "regions": [],              # empty: anywhere
    "spot_providers": list(SPOT_VENDORS),
    "allow_direct_access": False,
    "vram_usable_fraction": VRAM_USABLE_FRACTION,
}


def _cfg(args, key: str) -> Any:
    return setting(args, DEFAULTS, key)


def allowed_providers(args: ResourceValidationArgs, report_violation) -> None:
    s = node_stamps(args.resource_type, args.props)
    if not s:
        return
    allowed = _cfg(args, "providers")
    if s.get("provider") not in allowed:
        report_violation(f"node {s['node']!r} runs on {s.get('provider')!r}; allowed providers: {', '.join(allowed)}")


def allowed_gpus(args: ResourceValidationArgs, report_violation) -> None:
    s = node_stamps(args.resource_type, args.props)
    allowed = _cfg(args, "gpus")
    if not s or not allowed or not s.get("gpu"):
        return
    # A serverless endpoint names every pool its workers may start on, comma-separated.
    for gpu in str(s["gpu"]).split(","):
        if gpu not in allowed:
            report_violation(f"node {s['node']!r} asks for {gpu!r}; allowed GPUs: {', '.join(allowed)}")


def allowed_regions(args: ResourceValidationArgs, report_violation) -> None:
    s = node_stamps(args.resource_type, args.props)
    allowed = [r.lower() for r in _cfg(args, "regions")]
    if not s or not allowed or s.get("provider") == "host":
        return
    wanted = [str(r) for r in (s.get("regions") or [s.get("region")]) if r]
    if not wanted:
        report_violation(f"node {s['node']!r} may be placed anywhere; allowed regions: {', '.join(allowed)}")
        return
    bad = [r for r in wanted if r.lower() not in allowed]
    if bad:
        report_violation(f"node {s['node']!r} may be placed in {', '.join(bad)}; allowed regions: {', '.join(allowed)}")


def spot_where_allowed(args: ResourceValidationArgs, report_violation) -> None:
    s = node_stamps(args.resource_type, args.props)
    if not s or s.get("market") != "spot":
        return
    allowed = _cfg(args, "spot_providers")
    if s.get("provider") not in allowed:
        report_violation(f"node {s['node']!r} uses spot on {s.get('provider')!r}; spot is allowed on: "
                         f"{', '.join(allowed) or 'no provider'}")


def _open_to_world(rule_cidrs: List[str]) -> bool:
    return any(c in ("0.0.0.0/0", "::/0") for c in rule_cidrs or [])


def _model_ports(stamps: Dict[str, Any]) -> set:
    """The ports the node's model servers listen on (stamped, whatever the stack chose), and every model
    server's default port."""
    stamped = {int(p) for p in str(stamps.get("model_ports") or "").split("-") if p.isdigit()}
    return stamped | set(MODEL_SERVER_PORTS)


def model_servers_not_exposed(args: ResourceValidationArgs, report_violation) -> None:
    """No model server open to the internet, on any port: an instance publishing its model servers' ports
    (unless ``allow_direct_access``: a private network), or a firewall opening to the world anything but
    SSH and the edge's 80/443. Env keys a marketplace would read as docker options are refused too."""
    props = args.props
    if args.resource_type == GPU_INSTANCE:
        s = props.get("stamps") or {}
        launch = props.get("launch") if isinstance(props.get("launch"), dict) else {}
        ports = [int(p) for p in (launch.get("ports") or [])]
        exposed = sorted(p for p in ports if p in _model_ports(s))
        if exposed and not _cfg(args, "allow_direct_access"):
            report_violation(f"node {s.get('node', args.name)!r} publishes model server ports {exposed} without auth "
                             "(access: direct); use access: ssh, or allow_direct_access for a private network")
        bad = sorted(k for k in (launch.get("env") or {}) if not ENV_KEY.match(str(k)))
        if bad:
            report_violation(f"node {s.get('node', args.name)!r}: env keys {bad} are not variable names; Vast.ai "
                             "reads a key starting with '-' as a docker option (a port mapping, '-p ...')")
    elif args.resource_type == AWS_SG:
        allowed = _public_ports(from_tags(props.get("tags") or {}))
        for rule in props.get("ingress") or []:
            if not _open_to_world((rule.get("cidrBlocks") or []) + (rule.get("ipv6CidrBlocks") or [])):
                continue
            lo, hi = int(rule.get("fromPort", 0)), int(rule.get("toPort", 0))
            if str(rule.get("protocol")) == "-1" or lo > hi:
                lo, hi = 0, 65535
            opened = set(range(lo, hi + 1)) - allowed
            if opened:
                report_violation(f"security group {args.name!r} opens {_ranges(opened)} to the internet; only "
                                 f"SSH and the edge's 80/443 may be")
    elif args.resource_type == GCP_FIREWALL:
        if _open_to_world(props.get("sourceRanges") or []):
            for allow in props.get("allows") or []:
                specs = allow.get("ports") or (["0-65535"] if allow.get("protocol") in ("tcp", "udp", "all") else [])
                opened = {p for spec in specs for p in _expand(spec)} - _public_ports({})
                if opened:
                    report_violation(f"firewall {args.name!r} opens {_ranges(opened)} to the internet; only SSH "
                                     "and the edge's 80/443 may be")


ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PUBLIC_PORTS = {22, 80, 443}


def _public_ports(stamps: Dict[str, Any]) -> set:
    """What a node may open to the world: SSH (its stamped port) and the edge's HTTP(S)."""
    return PUBLIC_PORTS | ({int(stamps["ssh_port"])} if stamps.get("ssh_port") else set())


def _ranges(ports: set) -> str:
    """Ports as short ranges: ``11434, 8000-8100``."""
    out, ordered = [], sorted(ports)
    start = prev = ordered[0]
    for p in ordered[1:] + [None]:
        if p is not None and p == prev + 1:
            prev = p
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if p is not None:
            start = prev = p
    return ", ".join(out)


def _expand(spec: str) -> Iterator[int]:
    lo, _, hi = str(spec).partition("-")
    yield from range(int(lo), int(hi or lo) + 1)


ROUTE_COMMENT = re.compile(r"route (?P<service>[a-z0-9-]+/[a-z][a-z0-9-]*) auth=(?P<auth>[a-z]+)( kind=(?P<kind>[a-z-]+))?")
KNOWN_KINDS = tuple(k.value for k in WorkloadKind)


def routes_behind_auth(args: StackValidationArgs, report_violation) -> None:
    """Every public hostname of a model server has auth: an Access application (tunnel mode) or basic
    auth in Caddy (the record says ``auth=basic``); ``auth=none`` is refused for model servers."""
    apps = {str(r.props.get("domain", "")).split("/")[0] for r in args.resources if r.resource_type == ACCESS_APP}
    for r in args.resources:
        if r.resource_type != DNS_RECORD:
            continue
        m = ROUTE_COMMENT.search(str(r.props.get("comment") or ""))
        if not m:
            continue
        host, service, auth = r.props.get("name"), m["service"], m["auth"]
        kind = m["kind"] or service.split("/")[1]
        # A kind this pack does not know is treated as the model server it may be.
        if auth == "none" and (kind in MODEL_SERVER_KINDS or kind not in KNOWN_KINDS):
            report_violation(f"{host} publishes {service} without auth", r.urn)
        elif auth == "access" and host not in apps:
            report_violation(f"{host} ({service}) says auth=access but no Access application covers it", r.urn)


CREDENTIAL_PATTERNS = [
    ("an OpenAI/LiteLLM style key", re.compile(r"\bsk-[A-Za-z0-9_-]{20,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("an AWS access key id", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    # Values recognised by their shape, whatever variable holds them.
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("a GitHub token", re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})")),
    ("a GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("a RunPod API key", re.compile(r"\brpa_[A-Za-z0-9]{30,}")),
    ("a Stripe key", re.compile(r"\b[sr]k_live_[A-Za-z0-9]{20,}")),
    ("a URL with a password", re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@]+:[^\s/@]+@[^\s/]+")),
    # A value, not a reference to one (os.environ/NAME as LiteLLM reads it, $NAME in a shell).
    ("a credential assignment", re.compile(
        r"(?i)\b[A-Z0-9_]*(API_KEY|TOKEN|PASSWORD|SECRET)[A-Z0-9_]*\s*[=:]\s*['\"]?(?!os\.environ/|\[secret\]|\{\{)[^\s'\"$]{8,}")),
]
# Fields that others can read (vendor consoles, process lists, logs, tags): no credential belongs there.
VISIBLE_FIELDS: Dict[str, Tuple[str, ...]] = {
    GPU_INSTANCE: ("launch.env", "launch.onstart", "stamps", "label"),
    # A template's env is readable in RunPod's console: only values and {{ RUNPOD_SECRET_<name> }} references.
    SERVERLESS_ENDPOINT: ("template.env", "template.docker_args", "stamps", "name"),
    REMOTE_COMMAND: ("create", "delete", "update", "environment"),
    DNS_RECORD: ("content", "comment", "name"),
    "aws:ec2/launchTemplate:LaunchTemplate": ("tags",),
    "gcp:compute/instance:Instance": ("labels",),
}


def _field(props: Dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        props = props.get(part) if isinstance(props, dict) else None
    return props


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            for text in _strings(v):
                yield f"{k}={text}"
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def no_credentials_in_visible_fields(args: ResourceValidationArgs, report_violation) -> None:
    for path in VISIBLE_FIELDS.get(args.resource_type, ()):
        for text in _strings(_field(args.props, path)):
            for what, pattern in CREDENTIAL_PATTERNS:
                if pattern.search(text):
                    report_violation(f"{args.name}: {path} holds {what} in plain text; pass it as a Pulumi secret "
                                     "(config --secret) so it travels encrypted")
                    return


def models_fit_vram(args: StackValidationArgs, report_violation) -> None:
    """Per node, the largest ``max_loaded`` models (all when unset) within the usable VRAM."""
    per_node: Dict[str, Dict[str, Any]] = {}
    for r in args.resources:
        if r.resource_type != OLLAMA_MODEL:
            continue
        s = r.props.get("stamps") or {}
        node = per_node.setdefault(s.get("node", r.props.get("node")), {"sizes": [], "vram": 0.0, "max_loaded": 0})
        node["sizes"].append(float(s.get("model_vram_gb") or 0))
        node["vram"] = float(s.get("vram_gb") or 0)
        node["max_loaded"] = int(s.get("max_loaded") or 0)
    fraction = float(_cfg(args, "vram_usable_fraction"))
    for name, n in sorted(per_node.items()):
        need, usable = resident_vram(n["sizes"], n["max_loaded"]), n["vram"] * fraction
        if n["vram"] and need > usable + 1e-9:
            report_violation(f"node {name!r}: resident models need {need:.1f} GB VRAM, above the {usable:.1f} GB usable "
                             f"({fraction:.0%} of {n['vram']:.0f} GB)")


POLICIES = [
    ResourceValidationPolicy(name="allowed-providers", description="Nodes only on the providers the stack allows.",
                             validate=allowed_providers, enforcement_level=EnforcementLevel.MANDATORY,
                             config_schema=schema(DEFAULTS, "providers")),
    ResourceValidationPolicy(name="allowed-gpus", description="Nodes only with the GPU types the stack allows.",
                             validate=allowed_gpus, enforcement_level=EnforcementLevel.MANDATORY,
                             config_schema=schema(DEFAULTS, "gpus")),
    ResourceValidationPolicy(name="allowed-regions", description="Nodes only in the regions the stack allows.",
                             validate=allowed_regions, enforcement_level=EnforcementLevel.MANDATORY,
                             config_schema=schema(DEFAULTS, "regions")),
    ResourceValidationPolicy(name="spot-where-allowed", description="Spot capacity only on the providers allowed.",
                             validate=spot_where_allowed, enforcement_level=EnforcementLevel.MANDATORY,
                             config_schema=schema(DEFAULTS, "spot_providers")),
    ResourceValidationPolicy(name="model-servers-not-exposed",
                             description="Ollama, ComfyUI, MLflow and pgvector ports are never open to the internet.",
                             validate=model_servers_not_exposed, enforcement_level=EnforcementLevel.MANDATORY,
                             config_schema=schema(DEFAULTS, "allow_direct_access")),
    StackValidationPolicy(name="routes-behind-auth",
                          description="Public hostnames of model servers always have auth in front.",
                          validate=routes_behind_auth, enforcement_level=EnforcementLevel.MANDATORY),
    ResourceValidationPolicy(name="no-plaintext-credentials",
                             description="No API key, token, password or private key in fields others can read.",
                             validate=no_credentials_in_visible_fields, enforcement_level=EnforcementLevel.MANDATORY),
    StackValidationPolicy(name="models-fit-vram", description="Each node's resident models fit its GPUs' VRAM.",
                          validate=models_fit_vram, enforcement_level=EnforcementLevel.MANDATORY,
                          config_schema=schema(DEFAULTS, "vram_usable_fraction")),
]
