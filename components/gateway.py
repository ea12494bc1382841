"""The LiteLLM gateway's files, rendered from the estate's plan: its config and the host's units.

Everything here is plain data from the spec and its plan (``core.topology``) plus the endpoints of nodes
reached directly, so the same functions serve the program (inside an ``apply``), the
``scripts/gateway_config.py`` command (no engine, addresses not known yet) and the tests (loopback
endpoints).

- ``litellm_config``: one model_list entry per (alias, node serving its tag), so an alias served by
  several nodes is load-balanced; external models with ``os.environ/`` key references; fallbacks in the
  spec's order; per-alias timeouts; ``input_cost_per_second`` from the node's hourly price; the master
  key as ``os.environ/LITELLM_MASTER_KEY``. No secret value is ever part of the document.
- ``gateway_units``: LiteLLM as a container on the host network, one autossh unit per tunnelled node, and
  the identity proxy (``agents.identity``) when a service checks a Google ID token.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import shlex
import tarfile
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import yaml

from agents import library
from core.config import PROJECT_ROOT
from core.images import default_image
from core.jobs import WATCH_DIR
from core.vendors import RUNPOD_API_KEY_ENV
from core import health, identity
from core.spend import LEDGER_FILE, LOCAL_DOCUMENT_FILE, UNRENTED
from core.templates import asset, render
from core.text import digest, known_hosts_line
from core.topology import Endpoint, EstatePlan, unknown_address, unknown_serverless_base, unknown_service_url

MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
WAKE_HOOK = "estate_wake.py"
"""The wake-on-request hook LiteLLM loads from beside its config (``assets/gateway/estate_wake.py``)."""
WAKE_DOCUMENT = "wake.json"
"""What the hook wakes: aliases, their nodes' instance ids and URLs (``wake_document``)."""
LIBRARY = library.files(library.GATEWAY_AGENTS)
"""The estate's files the wake hook and the spend watcher run on a gateway host (the agents, the marketplace
clients and what they import, followed through their imports by ``agents.library``), shipped under
``lib/``: LiteLLM's image has their third-party packages (pydantic, requests), so both run in it
(``library_script``)."""
SPEND_DOCUMENT = "spend/watch.json"
"""What the spend watcher watches (``core.spend.watch_document``), under the config directory."""
SPEND_JOBS = f"{SPEND_DOCUMENT.rsplit('/', 1)[0]}/{WATCH_DIR}"
"""Beside it, each GPU job's watch entry (``providers/job_watch.py``), mounted into the watcher's container."""
SPEND_UNIT = "estate-spend.service"
SPEND_TIMER = "estate-spend.timer"
"""Started by its timer alone: enabling or restarting the one-shot service would run a look inside `up`."""
SPEND_DIR = "/var/lib/estate/spend"
"""Where the watcher keeps its ledger on the gateway host (``core.spend.LEDGER_FILE``)."""
HEALTH_DOCUMENT = "health/checks.json"
"""What the health agent checks (``core.health.check_document``), under the config directory."""
HEALTH_UNIT = "estate-health.service"
HEALTH_DIR = "/var/lib/estate/health"
"""Where the health agent keeps its alert state and status document, and the usage callback its lines."""
CONFIG_DIR = "/etc/estate/gateway"
IDENTITY_ENV = f"{CONFIG_DIR}/identity.env"
"""The identity proxy's secrets (``core.identity.KEYS_ENV``, ``BEARER_ENV``), a 0600 file on the gateway host."""
SECRETS_MANIFEST = f"{CONFIG_DIR}/.secrets-manifest"
KNOWN_HOSTS = f"{CONFIG_DIR}/known_hosts"
"""The tunnelled nodes' pinned host keys: autossh accepts no other (``StrictHostKeyChecking=yes``)."""
DOCKER = "/usr/bin/docker"
LITELLM_UNITS = {"blue": "estate-litellm-blue.service", "green": "estate-litellm-green.service"}
"""LiteLLM's two instances: one is live behind the front, the other starts on a new config (``switch_script``)."""
FRONT_UNIT = "estate-gateway-front.service"
"""Caddy on ``gateway.port``, proxying to the live LiteLLM instance; a switch reloads it, never restarts it."""
FRONT_DIR = f"{CONFIG_DIR}/front"
FRONT_ADMIN = "/run/estate-gateway-front.sock"
"""The front's admin socket, inside its container (the edge's Caddy keeps its own admin port)."""
FRONT_WAIT_SECONDS = 30
"""How long a request the front finds no instance for waits for one (a host's reboot, a crashed instance)."""
SWITCH_SCRIPT = f"{CONFIG_DIR}/litellm-switch.sh"
SWITCH_WAIT_SECONDS = 180
"""How long a new LiteLLM instance has to become ready before the switch gives up and keeps the live one."""
UNITS_MANIFEST = f"{CONFIG_DIR}/.units"
"""The units the last deploy wrote: one no longer named is stopped and removed by the next."""
LEGACY_UNITS = ("estate-litellm.service",)
"""What a deploy made before the front existed, taken down once the front holds the gateway's port."""
LIVE_READ = (f"{CONFIG_DIR}/spend/", KNOWN_HOSTS)
"""Files every reader reads afresh, so a change restarts nothing: the spend document and the jobs' watch
entries (the wake hook looks at them per request through a directory mount, the watcher per run), and the
tunnels' ``known_hosts`` (ssh reads it on each connection; a node with a new key is a new connection)."""
SYSTEMD_DIR = "/etc/systemd/system"


def tunnel_authorization(public_key: str, remote_ports: Iterable[int]) -> str:
    """The ``authorized_keys`` line that lets the estate's tunnel key open exactly the gateway's forwards
    to the node's loopback: no shell, no command (a forced ``/bin/false``), no agent, X11, pty or remote
    forwarding, and local forwarding only to ``127.0.0.1:<port>`` for each port."""
    permits = ",".join(f'permitopen="127.0.0.1:{int(p)}"' for p in sorted(set(remote_ports)))
    return f'restrict,port-forwarding,command="/bin/false",{permits} {public_key.strip()}'


def _authorized_keys_edit(marker: str, line: Optional[str]) -> str:
    """Shell that drops every ``authorized_keys`` line ending in `` <marker>`` and appends ``line``."""
    add = f"printf '%s\\n' {shlex.quote(line)} >> \"$f.estate\"; " if line else ""
    return ('set -eu; umask 077; mkdir -p "$HOME/.ssh"; f="$HOME/.ssh/authorized_keys"; touch "$f"; '
            f'grep -v -F -e {shlex.quote(" " + marker)} "$f" > "$f.estate" || true; {add}mv "$f.estate" "$f"')


def authorize_tunnel(marker: str, public_key: str, remote_ports: Iterable[int]) -> str:
    """Install (or replace) the estate's tunnel key on a node, restricted to its forwards."""
    return _authorized_keys_edit(marker, tunnel_authorization(public_key, remote_ports))


def revoke_tunnel(marker: str) -> str:
    return _authorized_keys_edit(marker, None)


def litellm_config(plan: EstatePlan, endpoints: Mapping[str, Endpoint] = None,
                   hourly: Mapping[str, float] = None, serverless: Mapping[str, str] = None,
                   services: Mapping[str, str] = None, identity: Optional[str] = None) -> Dict[str, object]:
    """The proxy's config document. ``hourly`` is each node's $/h (the plan's estimate where not given);
    ``serverless`` each serverless endpoint's OpenAI base URL once RunPod has given it an id; ``services``
    each hosted service's URL once its vendor has given it one; ``identity`` where the identity proxy listens
    (``gateway.identity_port`` on the gateway host where not given)."""
    spec = plan.spec
    g = spec.gateway
    if g is None:
        raise ValueError("the stack has no gateway")
    endpoints = endpoints or {}
    hourly = {**{n: e.hourly_usd for n, e in plan.estimates.items()}, **(hourly or {})}
    default_timeout = g.timeout("default")
    identity = identity or f"http://127.0.0.1:{g.identity_port}"
    model_list: List[Dict[str, object]] = []
    for alias, model in g.aliases.items():
        timeout = g.timeout(alias)
        for server in plan.serving[model]:
            node = spec.nodes[server.node]
            if not node.power.serves:
                continue
            url = plan.service_url(server.node, node.serving_port(server.workload), endpoints)
            workload = server.workload_spec(spec)
            params: Dict[str, object] = workload.gateway_params(model, url)
            params.update({"timeout": timeout, "stream_timeout": timeout,
                           **workload.gateway_prices(model, hourly.get(server.node, 0.0))})
            headers = workload.gateway_headers(timeout)
            if headers:
                params["extra_headers"] = headers
            # One id per serving workload (``gateway_id``).
            where = workload.gateway_id(server.node, server.workload)
            info = {"id": f"{alias}@{where}", "node": server.node}
            if workload.serves_images(model):
                info["mode"] = "image_generation"
            model_list.append({"model_name": alias, "litellm_params": params, "model_info": info})
        for name in plan.endpoints.get(model, ()):
            # RunPod's OpenAI route of the endpoint, signed with the RunPod API key (a secret in the gateway's
            # env file, never in this document); billed per second while a worker runs.
            price = plan.endpoint_estimates[name].worker_hourly_usd
            model_list.append({"model_name": alias, "litellm_params": {
                "model": f"openai/{model}", "api_base": (serverless or {}).get(name) or unknown_serverless_base(name),
                "api_key": f"os.environ/{RUNPOD_API_KEY_ENV}", "timeout": timeout, "stream_timeout": timeout,
                "input_cost_per_second": price / 3600, "output_cost_per_second": 0,
            }, "model_info": {"id": f"{alias}@serverless/{name}", "endpoint": name}})
        for name in plan.services.get(model, ()):
            # A hosted service's OpenAI route (Fly.io's proxy; Cloud Run's through the identity proxy, which
            # signs it with an ID token), with the bearer from the gateway's env file; billed per second of
            # instance time.
            service = spec.services[name]
            url = (services or {}).get(name) or unknown_service_url(name)
            model_list.append({"model_name": alias, "litellm_params": {
                "model": f"openai/{model}", "api_base": service.gateway_base(name, url, identity),
                "api_key": f"os.environ/{service.gateway_key_env(name)}", "timeout": timeout, "stream_timeout": timeout,
                "input_cost_per_second": plan.service_estimates[name].instance_hourly_usd / 3600,
                "output_cost_per_second": 0,
            }, "model_info": {"id": f"{alias}@{service.provider}/{name}", "service": name}})
    for provider, ext in g.external.items():
        for name, model in ext.models.items():
            params = {"model": model, "api_key": f"os.environ/{ext.api_key_env}",
                      "timeout": g.timeout(name)}
            if ext.api_base:
                params["api_base"] = ext.api_base
            model_list.append({"model_name": name, "litellm_params": params,
                               "model_info": {"id": f"{name}@{provider}"}})
    litellm_settings: Dict[str, object] = {"drop_params": True, "request_timeout": default_timeout}
    hooks = [hook for hook, used in ((WAKE_HOOK, plan.wake), (health.USAGE_HOOK, spec.health is not None)) if used]
    callbacks = [f"{hook.removesuffix('.py')}.handler" for hook in hooks]
    if spec.health is not None:
        # LiteLLM's own request, token, spend and latency series on its /metrics, behind the master key
        # (its default), beside the health agent's: docs/operations.md.
        callbacks.append("prometheus")
    if callbacks:
        litellm_settings["callbacks"] = callbacks
    return {
        "model_list": model_list,
        "router_settings": {
            "routing_strategy": g.routing_strategy,
            "num_retries": g.num_retries,
            "timeout": default_timeout,
            "fallbacks": [{alias: list(chain)} for alias, chain in g.fallbacks.items()],
            "allowed_fails": 1,
            "cooldown_time": 30,
        },
        "litellm_settings": litellm_settings,
        "general_settings": {"master_key": f"os.environ/{MASTER_KEY_ENV}"},
    }


def wake_document(plan: EstatePlan, machines: Mapping[str, str], endpoints: Mapping[str, Endpoint] = None,
                  spend: Optional[Mapping[str, str]] = None) -> Dict[str, object]:
    """What the gateway's wake hook reads: each alias it wakes, with its nodes' marketplace instances
    (``<cloud>:<id>``, from ``machines``), the URLs the gateway reaches them at, the alias's timeout and
    whether it falls back; with ``spend``, where the spend watcher's document and ledger are, so no node is
    woken while the month is over budget. Plain data: no credential (the hook reads those from its
    environment)."""
    spec = plan.spec
    aliases = {}
    for alias, wake in plan.wake.items():
        model = spec.gateway.aliases[alias]
        nodes = []
        for name in wake.nodes:
            server = next(s for s in plan.serving[model] if s.node == name)
            url = plan.service_url(name, spec.nodes[name].serving_port(server.workload), endpoints)
            nodes.append({"node": name, "instance": machines.get(name) or f"{UNRENTED}{name}", "url": url})
        aliases[alias] = {"timeout": wake.timeout, "fallbacks": wake.fallbacks,
                          "retry_after": int(min(max(wake.timeout, 10), 120)), "nodes": nodes}
    return {"aliases": aliases, **({"spend": dict(spend)} if spend else {})}


def _json(doc: Mapping[str, object]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def gateway_files(plan: EstatePlan, config: str, machines: Mapping[str, str],
                  endpoints: Mapping[str, Endpoint] = None, library: bool = False,
                  watch: Optional[Mapping[str, object]] = None,
                  checks: Optional[Mapping[str, object]] = None,
                  signed: Optional[Mapping[str, object]] = None) -> Dict[str, str]:
    """The files of the gateway's config directory: its config, the wake hook with its document when some
    alias is served only by idle-stoppable nodes, and the spend watcher's document (``watch``) when the
    stack watches its spend, and the identity proxy's (``signed``) when a service checks an ID token. With
    ``library`` (a gateway host over SSH, whose LiteLLM runs in its own image)
    the hook goes under ``wake/``; the estate's modules both need follow in ``library_script``."""
    files = {"config.yaml": config}
    where = "wake/" if library else ""
    spend = None
    if watch is not None:
        # The paths the hook sees: in LiteLLM's container on a gateway host, beside the config locally.
        document = SPEND_DOCUMENT if library else LOCAL_DOCUMENT_FILE
        files[document] = _json(watch)
        spend = ({"document": f"/app/{SPEND_DOCUMENT}", "ledger": f"{SPEND_DIR}/{LEDGER_FILE}"} if library
                 else {"document": LOCAL_DOCUMENT_FILE, "ledger": LEDGER_FILE})
    if checks is not None:
        # The health agent's check document, and the usage callback LiteLLM loads (under health/ on a host).
        files[HEALTH_DOCUMENT if library else health.DOCUMENT_FILE] = _json(checks)
        files[("health/" if library else "") + health.USAGE_HOOK] = asset(f"gateway/{health.USAGE_HOOK}")
    if signed is not None:
        # The identity proxy's document (``core.identity.document``): the URLs it signs requests to.
        files[identity.HOST_DOCUMENT if library else identity.DOCUMENT_FILE] = _json(signed)
    if plan.wake:
        files[where + WAKE_HOOK] = asset(f"gateway/{WAKE_HOOK}")
        files[where + WAKE_DOCUMENT] = _json(wake_document(plan, machines, endpoints, spend))
    return files


def with_gateway_url(document: str, url: str) -> str:
    """The check document (JSON) with the gateway's own check at ``url``: a local gateway's port is known
    once it listens."""
    doc = json.loads(document)
    doc["checks"] = [{**c, "url": url} if c.get("what") == "gateway" else c for c in doc.get("checks") or []]
    return _json(doc)


def library_archive() -> bytes:
    """The modules of ``LIBRARY`` as a gzipped tar, byte for byte the same for the same sources (sorted,
    no times, no owners), so the deploy script changes only when a module does."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path in sorted(LIBRARY):
            data = (PROJECT_ROOT / path).read_bytes()
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def library_script(dest: str = f"{CONFIG_DIR}/lib") -> str:
    """Shell that replaces ``dest`` with the estate's modules the wake hook and the spend watcher run. They
    travel as one archive in base64: the project's own source, never a stack value (its files and digest
    head the block), kept out of the deploy script's text where their code would read as settings."""
    archive = library_archive()
    marker = "ESTATE_LIB_" + digest(base64.b64encode(archive).decode())[:12].upper()
    return "\n".join([
        f"# the estate's modules for the gateway host (sha256 {hashlib.sha256(archive).hexdigest()}): "
        + " ".join(sorted(LIBRARY)),
        f"rm -rf {dest}.new && install -d -m 0755 {dest}.new",
        f"base64 -d <<'{marker}' | tar -xz --no-same-owner -C {dest}.new",
        base64.encodebytes(archive).decode().rstrip("\n"),
        marker,
        f"rm -rf {dest} && mv {dest}.new {dest}",
    ]) + "\n"


def render_litellm_config(plan: EstatePlan, endpoints: Mapping[str, Endpoint] = None,
                          hourly: Mapping[str, float] = None, serverless: Mapping[str, str] = None,
                          services: Mapping[str, str] = None, identity: Optional[str] = None) -> str:
    return config_text(litellm_config(plan, endpoints, hourly, serverless, services, identity))


def config_text(doc: Mapping[str, object]) -> str:
    """LiteLLM's ``config.yaml`` of a config document, keys in the order they were built."""
    return yaml.safe_dump(dict(doc), sort_keys=False)


def gateway_units(plan: EstatePlan, ssh: Mapping[str, Tuple[str, int, str]],
                  image: Optional[str] = None, docker: str = DOCKER) -> Dict[str, str]:
    """The systemd units of the gateway host: LiteLLM (a container on the host network, so the tunnels'
    loopback ports reach it), one autossh unit per tunnelled node, verifying the node's pinned host key
    (``known_hosts``), and the spend watcher's timer with the one-shot service it runs (in LiteLLM's image).
    ``ssh`` is node -> (host, port, user[, host key]); a node whose address is not known yet gets a unit
    naming that in its host."""
    spec = plan.spec
    g = spec.gateway
    node = spec.nodes[g.node]
    image = image or node.image_for(next(n for n, w in node.workloads.items() if w.on_gateway_host))
    signing = bool(identity.needs_proxy(spec.services))
    units = {unit: render(
        "gateway/estate-litellm.service.j2", image=image, port=g.backend_ports[i], config_dir=CONFIG_DIR, docker=docker,
        wake=bool(plan.wake), hook=WAKE_HOOK, document=WAKE_DOCUMENT, spend=spec.spend is not None,
        spend_dir=SPEND_DIR, after=[f"estate-tunnel-{n}.service" for n in plan.tunnels] + ([identity.UNIT] if signing else []),
        usage=spec.health is not None, usage_hook=health.USAGE_HOOK, health_dir=HEALTH_DIR, color=color,
        front_port=g.port, drain=drain_seconds(plan)) for i, (color, unit) in enumerate(LITELLM_UNITS.items())}
    units[FRONT_UNIT] = render("gateway/estate-gateway-front.service.j2", docker=docker, config_dir=CONFIG_DIR,
                               image=default_image("caddy"), port=g.port)
    if spec.health is not None:
        units[HEALTH_UNIT] = render("gateway/estate-health.service.j2", docker=docker, config_dir=CONFIG_DIR, image=image,
                                    document=HEALTH_DOCUMENT, health_dir=HEALTH_DIR, port=spec.health.port,
                                    every=spec.health.every_seconds, spend=spec.spend is not None, spend_dir=SPEND_DIR,
                                    ledger=LEDGER_FILE)
    if signing:
        # The identity proxy, in LiteLLM's image (PyJWT, cryptography and requests are LiteLLM's own), with
        # the keys and its bearer from a 0600 env file of its own (LiteLLM's env file holds only the bearer).
        units[identity.UNIT] = render("gateway/estate-identity.service.j2", docker=docker, config_dir=CONFIG_DIR,
                                      image=image, env_file=IDENTITY_ENV, document=identity.HOST_DOCUMENT,
                                      document_dir=identity.HOST_DOCUMENT.partition("/")[0],
                                      port=g.identity_port)
    if spec.spend is not None:
        units[SPEND_UNIT] = render("gateway/estate-spend.service.j2", docker=docker, config_dir=CONFIG_DIR,
                                   image=image, document=SPEND_DOCUMENT, jobs=SPEND_JOBS, spend_dir=SPEND_DIR,
                                   ledger=LEDGER_FILE)
        units[SPEND_TIMER] = render("gateway/estate-spend.timer.j2", minutes=spec.spend.every_minutes)
    for node, forwards in plan.tunnels.items():
        host, port, user = (ssh.get(node) or (unknown_address(node), 22, spec.nodes[node].ssh.user))[:3]
        units[f"estate-tunnel-{node}.service"] = render(
            "gateway/estate-tunnel.service.j2", node=node, host=host or unknown_address(node), port=port,
            user=user, forwards=forwards, key=f"{CONFIG_DIR}/tunnel_key", known_hosts=KNOWN_HOSTS)
    return units


def known_hosts(ssh: Mapping[str, Tuple]) -> str:
    """The ``known_hosts`` of the tunnels: each node's pinned key at its SSH address."""
    return "".join(known_hosts_line(v[0], v[1], v[3]) + "\n" for _, v in sorted(ssh.items())
                   if len(v) > 3 and v[0] and v[3])


def drain_seconds(plan: EstatePlan) -> int:
    """How long a stopping LiteLLM instance may take to answer what it still has: the longest request timeout."""
    g = plan.spec.gateway
    return int(max([g.timeout("default"), *g.timeouts.values()]))


def front_files(plan: EstatePlan, admin: str = FRONT_ADMIN) -> Dict[str, str]:
    """The front's Caddyfile for each LiteLLM instance, under ``front/`` of the config directory; the switch
    copies the new instance's to ``front/Caddyfile`` and has Caddy reload it."""
    g = plan.spec.gateway
    return {f"front/{color}.Caddyfile": render("gateway/front.Caddyfile.j2", color=color, upstream=port, port=g.port,
                                               admin=admin, wait=FRONT_WAIT_SECONDS, grace=drain_seconds(plan))
            for color, port in zip(LITELLM_UNITS, g.backend_ports)}


def switch_script(plan: EstatePlan, config_dir: str = CONFIG_DIR, reload: Optional[str] = None,
                  wait: int = SWITCH_WAIT_SECONDS) -> str:
    """``litellm-switch.sh``: start the LiteLLM instance that is not live, and once it is ready make it the
    front's upstream and stop the other (``assets/gateway/litellm-switch.sh.j2``). ``reload`` is the command
    that has the front reload its Caddyfile (on a host, Caddy in the front's container)."""
    g = plan.spec.gateway
    reload = reload or (f"docker exec estate-gateway-front caddy reload --config {FRONT_DIR}/Caddyfile "
                        f"--adapter caddyfile --address unix/{FRONT_ADMIN}")
    return render("gateway/litellm-switch.sh.j2", config_dir=config_dir, reload=reload, wait=int(wait),
                  front_port=g.port, ports=dict(zip(LITELLM_UNITS, g.backend_ports)))


def input_paths(unit: str) -> List[str]:
    """The paths under the config directory a unit's text names (its mounts, env files, keys)."""
    return sorted(set(re.findall(re.escape(CONFIG_DIR) + r"(?:/[A-Za-z0-9_.-]+)*", unit)))


def stamp_units(units: Mapping[str, str], files: Mapping[str, str], digests: Mapping[str, str]) -> Dict[str, str]:
    """Each unit with ``Environment=ESTATE_INPUTS=<sha256>`` over what it reads: every file (full path ->
    text) at or under a path its text names, and the digest given for such a path (the shipped modules, a
    secret file's keyed digest), except what is read afresh anyway (``LIVE_READ``). A unit file then
    changes exactly when its unit or an input does, which is what the deploy restarts on (``units_script``)."""
    out = {}
    for name, text in units.items():
        parts = []
        for path in input_paths(text):
            under = path.rstrip("/") + "/"
            for f in sorted(files):
                if (f == path or f.startswith(under)) and not f.startswith(LIVE_READ):
                    parts.append(f"{f} {digest(files[f])}")
            for f in sorted(digests):
                if f == path or f.startswith(under):
                    parts.append(f"{f} {digests[f]}")
        stamp = f"Environment=ESTATE_INPUTS={digest(chr(10).join(parts))}\n"
        head, sep, rest = text.partition("[Service]\n")
        out[name] = head + sep + stamp + rest if sep else text
    return out


def units_script(units: Mapping[str, str], root: str = SYSTEMD_DIR, config_dir: str = CONFIG_DIR,
                 oneshot: Iterable[str] = (SPEND_UNIT,)) -> str:
    """Shell that installs the units and restarts only those whose file changed: each is compared with the one
    on disk before it replaces it; a changed unit restarts, an unchanged one is only started (nothing
    happens to one running), a one-shot service is left to its timer; LiteLLM's instances switch
    (``switch_script``) instead of restarting; units the last deploy wrote that are gone are stopped and
    removed. Each unit restarted or switched is named in the output."""
    names = sorted(units)
    manifest = f"{config_dir}/.units"
    lines = ['changed=""']
    for name in names:
        text = units[name]
        marker = "ESTATE_UNIT_" + digest(text)[:12].upper()
        path = f"{root}/{name}"
        lines += [f"cat > {path}.estate-new <<'{marker}'", text.rstrip("\n"), marker,
                  f'if cmp -s {path}.estate-new {path}; then rm -f {path}.estate-new; '
                  f'else mv {path}.estate-new {path}; changed="$changed {name}"; fi']
    known = " ".join(names)
    legacy = " ".join(LEGACY_UNITS)
    lines += [
        'stale=""',
        f'for u in $(cat {manifest} 2>/dev/null || echo {legacy}); do',
        f'  case " {known} " in *" $u "*) ;; *) if [ -e {root}/$u ]; then stale="$stale $u"; fi ;; esac',
        "done",
        "systemctl daemon-reload",
    ]
    managed = {*LITELLM_UNITS.values(), FRONT_UNIT, *oneshot}
    for name in names:
        if name in managed:
            continue
        lines += [f"systemctl enable {name}",
                  f'case " $changed " in *" {name} "*) echo "restarting {name}"; systemctl restart {name} ;; '
                  f"*) systemctl start {name} ;; esac"]
    litellm = "|".join(f'*" {u} "*' for u in LITELLM_UNITS.values())
    live = f"{config_dir}/front/live"
    lines += [
        f'case " $changed " in {litellm}) switch=1 ;; *) switch= ;; esac',
        f'if [ ! -s {live} ]; then switch=1; fi',
        # The front: started by the first switch; restarted on a changed unit or Caddyfile (a new port or
        # image), from the live instance's Caddyfile.
        f'front=; if systemctl is-active --quiet {FRONT_UNIT}; then front=1; fi',
        f'if [ -n "$switch" ]; then bash {config_dir}/litellm-switch.sh $stale; fi',
        f'case " $changed " in *" {FRONT_UNIT} "*) if [ -n "$front" ]; then '
        f'cp {config_dir}/front/"$(cat {live})".Caddyfile {config_dir}/front/Caddyfile; '
        f'echo "restarting {FRONT_UNIT}"; systemctl restart {FRONT_UNIT}; fi ;; *) systemctl start {FRONT_UNIT} ;; esac',
        'for u in $stale; do if [ -z "$switch" ]; then echo "stopping $u"; systemctl disable --now "$u" || true; fi; '
        f'rm -f {root}/"$u"; done',
        'if [ -n "$stale" ]; then systemctl daemon-reload; fi',
        f"printf '%s\\n' {known} > {manifest}",
    ]
    return "\n".join(lines) + "\n"
