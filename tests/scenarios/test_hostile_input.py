"""Hostile stack values: each is refused before any resource, naming its key path and the value, or it is
rendered so that the real tool reading the artifact sees exactly the value meant.

Every value here reaches a script, a systemd unit, a Caddyfile, a compose file, cloud-init, a DNS record
or a vendor payload if it is let through: command substitution, newlines (a new unit or Caddy line),
quotes, NUL, look-alike unicode, over-long values, path traversal, flags where values are expected.
"""
import copy
import json
import subprocess

import pytest
import yaml

from components import workloads
from core.config import parse_spec
from core.errors import ConfigError
from loopback import machine as loopback_machine
from tests.mocks import stack_estate

NEWLINE_UNIT = "\nExecStartPre=+/bin/sh -c id"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFXdBfpWUE7y0nZ8rsibV0rc/1JxweHTokQjkgvrZxWD"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGgtgdW9ZLnsrjGnasMVWnMuUvMEboNU8GOJmJqjIes"
EVIL_KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDevilevilevilevilevilevil attacker@example"
SUBST = "$(id)"


def _set(cfg, path, value):
    *parents, leaf = path.split(".")
    for k in parents:
        cfg = cfg[int(k)] if isinstance(cfg, list) else cfg.setdefault(k, {})
    if isinstance(cfg, list):
        cfg[int(leaf)] = value
    else:
        cfg[leaf] = value


def _key(cfg, path, new_key, value=None):
    """Add ``new_key`` to the mapping at ``path`` (a hostile key)."""
    *parents, leaf = path.split(".")
    for k in parents:
        cfg = cfg[k]
    mapping = cfg.setdefault(leaf, {})
    mapping[new_key] = copy.deepcopy(next(iter(mapping.values()))) if mapping else "x"


CHECKPOINT = {"name": "sdxl.safetensors", "url": "https://example.com/sdxl.safetensors", "sha256": "0" * 64,
              "size_gb": 6.5}

# (what is set, where, the value, the key path the refusal must name)
VALUES = [
    ("value", "nodes.inference.ssh.user", "root" + NEWLINE_UNIT, "nodes.inference.ssh.user"),
    ("value", "nodes.inference.ssh.user", SUBST, "nodes.inference.ssh.user"),
    ("value", "nodes.inference.ssh.user", "-oProxyCommand=id", "nodes.inference.ssh.user"),
    ("value", "nodes.inference.ssh.user", "ｒｏｏｔ", "nodes.inference.ssh.user"),  # fullwidth look-alike
    ("value", "nodes.inference.ssh.user", "r" * 40, "nodes.inference.ssh.user"),
    ("value", "nodes.inference.ssh.user", "ro ot", "nodes.inference.ssh.user"),
    ("value", "nodes.vps.address", "203.0.113.9" + NEWLINE_UNIT, "nodes.vps.address"),
    ("value", "nodes.vps.address", "vps.example.com;id", "nodes.vps.address"),
    ("value", "nodes.vps.address", "-oProxyCommand=id", "nodes.vps.address"),
    ("value", "nodes.vps.address", SUBST, "nodes.vps.address"),
    ("value", "nodes.vps.address", "../../etc/passwd", "nodes.vps.address"),
    ("value", "nodes.vps.address", "a" * 300, "nodes.vps.address"),
    ("value", "nodes.vps.address", "vps.exаmple.com", "nodes.vps.address"),  # Cyrillic 'а'
    ("value", "nodes.inference.workloads.ollama.image", "ollama/ollama:0.12.6 --privileged",
     "nodes.inference.workloads.ollama.image"),
    ("value", "nodes.inference.workloads.ollama.image", "--privileged", "nodes.inference.workloads.ollama.image"),
    ("value", "nodes.inference.workloads.ollama.image", "ollama/ollama:0.12.6\n", "nodes.inference.workloads.ollama.image"),
    ("value", "nodes.inference.workloads.ollama.image", "ollama/ollama:" + SUBST, "nodes.inference.workloads.ollama.image"),
    ("value", "nodes.inference.workloads.ollama.image", "OLLAMA/Ollama", "nodes.inference.workloads.ollama.image"),
    ("key", "nodes.qwen.workloads.ollama.env", "-p 22:22", "nodes.qwen.workloads.ollama.env.-p 22:22"),
    ("key", "nodes.inference.workloads.ollama.env", "A B", "nodes.inference.workloads.ollama.env.A B"),
    ("key", "nodes.inference.workloads.ollama.env", "A\nB", "nodes.inference.workloads.ollama.env.A\nB"),
    ("key", "nodes.inference.workloads.ollama.env", SUBST, "nodes.inference.workloads.ollama.env." + SUBST),
    ("value", "nodes.inference.workloads.ollama.env.OLLAMA_KEEP_ALIVE", "30m" + NEWLINE_UNIT,
     "nodes.inference.workloads.ollama.env.OLLAMA_KEEP_ALIVE"),
    ("value", "nodes.inference.workloads.ollama.env.OLLAMA_KEEP_ALIVE", "30m\x00x",
     "nodes.inference.workloads.ollama.env.OLLAMA_KEEP_ALIVE"),
    ("value", "nodes.inference.workloads.ollama.env.OLLAMA_KEEP_ALIVE", "x" * 5000,
     "nodes.inference.workloads.ollama.env.OLLAMA_KEEP_ALIVE"),
    ("checkpoint", "url", "https://example.com/a'" + SUBST + "'", "nodes.qwen.workloads.comfyui.checkpoints.0.url"),
    ("checkpoint", "url", "https://example.com/a\nid", "nodes.qwen.workloads.comfyui.checkpoints.0.url"),
    ("checkpoint", "url", "https://example.com/`id`", "nodes.qwen.workloads.comfyui.checkpoints.0.url"),
    ("checkpoint", "url", "file:///etc/shadow", "nodes.qwen.workloads.comfyui.checkpoints.0.url"),
    ("checkpoint", "url", "https://example.com/a b", "nodes.qwen.workloads.comfyui.checkpoints.0.url"),
    ("checkpoint", "url", "-o/etc/passwd", "nodes.qwen.workloads.comfyui.checkpoints.0.url"),
    ("checkpoint", "kind", "../../../etc", "nodes.qwen.workloads.comfyui.checkpoints.0.kind"),
    ("checkpoint", "kind", "checkpoints;id", "nodes.qwen.workloads.comfyui.checkpoints.0.kind"),
    ("checkpoint", "name", "../../x.safetensors", "nodes.qwen.workloads.comfyui.checkpoints.0.name"),
    ("value", "routes.chat\\.example\\.com.path", "/x\n:80 {", None),
    ("value", "routes.chat\\.example\\.com.path", "/x' {", None),
    ("value", "routes.chat\\.example\\.com.path", "x", None),
    ("key", "routes", "chat.example.com\n:80", "routes.chat.example.com\n:80"),
    ("key", "routes", "*.example.com", "routes.*.example.com"),
    ("key", "routes", "chat.example.com:80", "routes.chat.example.com:80"),
    ("value", "edge.domain", "example.com;id", "edge.domain"),
    ("value", "edge.domain", "example.com\n", "edge.domain"),
    ("value", "edge.allowed_emails.0", "ops@example.com\nx", "edge.allowed_emails.0"),
    ("value", "gateway.external.openai.api_base", "http://evil.example.com/v1", "gateway.external.openai.api_base"),
    ("value", "gateway.external.openai.api_base", "https://api.openai.com/v1 --x", "gateway.external.openai.api_base"),
    ("value", "gateway.external.openai.api_base", "javascript:alert(1)", "gateway.external.openai.api_base"),
    ("value", "nodes.inference.regions.0", "Germany; rm -rf /", "nodes.inference.regions.0"),
    ("value", "nodes.inference.regions.0", "Germany\n", "nodes.inference.regions.0"),
    ("key", "gateway.aliases", "chat\nx", "gateway.aliases.chat\nx"),
    ("key", "gateway.aliases", SUBST, "gateway.aliases." + SUBST),
    ("value", "nodes.inference.image", "ubuntu2404 --x", "nodes.inference.image"),
    ("value", "nodes.inference.image", "-x", "nodes.inference.image"),
    # A host key lands in the known_hosts the forwards and autossh read: one key, nothing after it.
    ("value", "nodes.vps.ssh.host_key", "ssh-ed25519 AAAAC3Nz\n127.0.0.1 ssh-ed25519 AAAAevil", "nodes.vps.ssh.host_key"),
    ("value", "nodes.vps.ssh.host_key", "ssh-ed25519 AAAAC3Nz x,* ssh-rsa AAAA", "nodes.vps.ssh.host_key"),
    ("value", "nodes.vps.ssh.host_key", "@cert-authority * ssh-ed25519 AAAAC3Nz", "nodes.vps.ssh.host_key"),
    ("value", "nodes.vps.ssh.host_key", HOST_KEY + "\n" + HOST_KEY, "nodes.vps.ssh.host_key"),
    ("value", "nodes.vps.ssh.host_key", HOST_KEY + " " + HOST_KEY, "nodes.vps.ssh.host_key"),
    # A public key becomes the node's authorized_keys (TensorDock installs what the launch request holds):
    # a second key there is root for whoever holds it, however it is slipped in.
    ("value", "nodes.inference.ssh.public_key", PUBLIC_KEY + "\n" + EVIL_KEY, "nodes.inference.ssh.public_key"),
    ("value", "nodes.inference.ssh.public_key", PUBLIC_KEY + " ops\n" + EVIL_KEY, "nodes.inference.ssh.public_key"),
    ("value", "nodes.inference.ssh.public_key", PUBLIC_KEY + "\r\n" + EVIL_KEY, "nodes.inference.ssh.public_key"),
    ("value", "nodes.inference.ssh.public_key", PUBLIC_KEY + " ops " + EVIL_KEY, "nodes.inference.ssh.public_key"),
    ("value", "nodes.inference.ssh.public_key", PUBLIC_KEY + "," + EVIL_KEY, "nodes.inference.ssh.public_key"),
    ("value", "nodes.inference.ssh.public_key", EVIL_KEY + "\n", "nodes.inference.ssh.public_key"),
    ("value", "nodes.inference.ssh.public_key", 'command="id" ' + PUBLIC_KEY, "nodes.inference.ssh.public_key"),
    ("value", "nodes.inference.ssh.public_key", PUBLIC_KEY + " a\x00b", "nodes.inference.ssh.public_key"),
    # Images by digest: exactly sha256 and 64 lower-case hex, after a tag, nothing after it.
    ("value", "nodes.inference.workloads.ollama.image", "ollama/ollama:0.12.6@sha256:" + "a" * 63,
     "nodes.inference.workloads.ollama.image"),
    ("value", "nodes.inference.workloads.ollama.image", "ollama/ollama:0.12.6@sha256:" + "A" * 64,
     "nodes.inference.workloads.ollama.image"),
    ("value", "nodes.inference.workloads.ollama.image", "ollama/ollama:0.12.6@md5:" + "a" * 32,
     "nodes.inference.workloads.ollama.image"),
    ("value", "nodes.inference.workloads.ollama.image", "ollama/ollama:0.12.6@sha256:" + "a" * 64 + "\nx",
     "nodes.inference.workloads.ollama.image"),
    ("value", "serverless.goblin-inference.image", "runpod/worker-v1-vllm:v2.27.0@sha256:" + "a" * 64 + " x",
     "serverless.goblin-inference.image"),
]


def _hostile_config(kind, where, value):
    cfg = stack_estate("prod")
    if kind == "value" and where.startswith("routes.chat"):
        cfg["routes"]["chat.example.com"]["path"] = value
    elif kind == "value":
        _set(cfg, where, value)
    elif kind == "key":
        _key(cfg, where, value)
    else:
        comfy = cfg["nodes"]["qwen"]["workloads"]["comfyui"]
        comfy["checkpoints"] = [{**CHECKPOINT, where: value}]
    return cfg


def test_the_table_is_at_least_forty_values():
    assert len(VALUES) >= 40


@pytest.mark.parametrize("kind,where,value,key", VALUES, ids=[f"{w}={v!r}"[:70] for _, w, v, _ in VALUES])
def test_a_hostile_value_is_refused_naming_its_key(kind, where, value, key):
    cfg = _hostile_config(kind, where, value)
    with pytest.raises(ConfigError) as err:
        parse_spec(cfg)
    want = f"gpu-estate:{key or 'routes.chat.example.com.path'}"
    found = [(p, m) for p, m in err.value.problems if p == want]
    assert found, f"no problem at {want!r}: {err.value.problems}"
    shown = value if len(value) < 60 else value[:40]
    assert any(repr(shown)[1:-1][:40] in m or shown in p for p, m in found), found


# Values a stack may rightly hold that are still hostile to a naive renderer: they must come out of the
# artifact exactly as given, as the real tool reads it.
TRICKY_ENV = ["p@$HOME'\"`x", "${PATH}", "$$", "a b  c", "'; rm -rf / #", "ünïcödé ✓", "{{ x }}"]


@pytest.mark.skipif(bool(loopback_machine.missing()), reason=loopback_machine.missing() or "")
def test_env_values_reach_the_container_exactly_as_given(tmp_path):
    cfg = stack_estate("prod")
    env = {f"V{i}": v for i, v in enumerate(TRICKY_ENV)}
    ollama = cfg["nodes"]["inference"]["workloads"]["ollama"]
    ollama.update(env=env, image=loopback_machine.IMAGE, gpu=False)  # an image this machine has
    node = parse_spec(cfg).nodes["inference"]
    doc = workloads.compose_project(node)
    doc["name"] = "estate-hostile-env"
    doc["services"] = {"ollama": {**doc["services"]["ollama"], "volumes": [], "ports": []}}
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(doc))
    compose = ["docker", "compose", "-f", str(tmp_path / "compose.yaml")]
    run = subprocess.run([*compose, "create"], capture_output=True, text=True, timeout=120)
    try:
        assert run.returncode == 0, run.stderr
        ids = subprocess.run([*compose, "ps", "-aq"], capture_output=True, text=True).stdout.split()
        (inspected,) = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True).stdout)
        seen = dict(e.split("=", 1) for e in inspected["Config"]["Env"])
        for k, v in env.items():
            assert seen[k] == v, (k, v, seen[k])  # what the container gets, as Docker holds it
    finally:
        subprocess.run([*compose, "down"], capture_output=True, timeout=120)


def test_a_tricky_checkpoint_url_reaches_curl_as_one_argument_and_never_as_code(tmp_path):
    """A URL the spec allows, with characters a shell would act on outside quotes (& ? = ~ %): the node's
    fetch script (providers/model_files.py, fixed text) reads it as a line of data and hands it to curl as one
    argument, exactly."""
    from providers import model_files

    cfg = stack_estate("prod")
    url = "https://example.com/dl?file=sdxl&token=a~b%20c"
    cfg["nodes"]["qwen"]["workloads"]["comfyui"]["checkpoints"] = [{**CHECKPOINT, "url": url}]
    node = parse_spec(cfg).nodes["qwen"]
    (f,) = workloads.node_files(node)
    assert f.file.url == url
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv"
    (bin_dir / "curl").write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > {log}\nexit 22\n')
    (bin_dir / "curl").chmod(0o755)
    dest = tmp_path / "models" / f.file.kind / f.file.name
    run = subprocess.run(["sh", "-c", model_files.FETCH_SCRIPT], input=f"{dest}\n{url}\n{f.file.sha256}\n\n",
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
    assert run.returncode == 5 and "curl exit 22" in run.stderr
    assert url in log.read_text().splitlines() and not dest.exists()


# Money and hours where they appear, and the other numbers beside them: non-finite or negative is refused
# naming the key (an infinite cap is no cap; NaN passes every comparison a rule makes by failing it).
NUMBERS = [
    ("budget.daily_usd", float("inf")), ("budget.daily_usd", float("nan")), ("budget.daily_usd", -5.0),
    ("budget.monthly_usd", float("inf")), ("budget.monthly_usd", float("nan")), ("budget.monthly_usd", -1.0),
    ("budget.max_hourly_per_node", float("inf")), ("budget.max_hourly_per_node", -0.5),
    ("nodes.inference.max_price_per_hour", float("inf")), ("nodes.inference.max_price_per_hour", float("nan")),
    ("nodes.inference.max_price_per_hour", -0.4),
    ("nodes.qwen.bid_per_hour", float("inf")), ("nodes.qwen.bid_per_hour", -0.27),
    ("nodes.inference.hours_per_month", float("inf")), ("nodes.inference.hours_per_month", float("nan")),
    ("nodes.inference.hours_per_month", -120.0),
    ("nodes.inference.min_reliability", float("nan")),
    ("serverless.goblin-inference.busy_hours_per_month", float("inf")),
    ("serverless.goblin-inference.busy_hours_per_month", -60.0),
    ("serverless.goblin-inference.model_size_gb", float("inf")),
    ("storage.models.monthly_usd", float("inf")), ("storage.models.monthly_usd", float("nan")),
    ("storage.models.monthly_usd", -5.0),
    ("gateway.timeouts.default", float("inf")), ("gateway.timeouts.gpt-4", -300.0),
    ("nodes.inference.workloads.ollama.vram_gb", float("inf")),
]


@pytest.mark.parametrize("where,value", NUMBERS, ids=[f"{w}={v!r}" for w, v in NUMBERS])
def test_a_non_finite_or_negative_number_is_refused_naming_its_key(where, value):
    cfg = stack_estate("prod")
    _set(cfg, where, value)
    with pytest.raises(ConfigError) as err:
        parse_spec(cfg)
    found = [m for p, m in err.value.problems if p == f"gpu-estate:{where}"]
    assert found and repr(value) in found[0], err.value.problems


# Ports the node itself listens on: its SSH (22, or ssh.port), the gateway's port on the gateway's node.
PORTS = [
    ("nodes.inference.workloads.api", {"image": "ghcr.io/you/api:1.0", "port": 22}, "nodes.inference.workloads.api.port"),
    ("nodes.inference.workloads.open-webui", {"port": 22}, "nodes.inference.workloads.open-webui.port"),
    ("nodes.qwen.workloads.ollama.port", 22, "nodes.qwen.workloads.ollama.port"),
    ("nodes.vps.workloads.api", {"image": "ghcr.io/you/api:1.0", "port": 8000}, "nodes.vps.workloads.api.port"),
    ("gateway.port", 22, "gateway.port"),
]


@pytest.mark.parametrize("where,value,key", PORTS, ids=[w for w, _, _ in PORTS])
def test_a_port_the_node_listens_on_itself_is_refused_naming_its_key(where, value, key):
    cfg = stack_estate("prod")
    _set(cfg, where, value)
    with pytest.raises(ConfigError) as err:
        parse_spec(cfg)
    port = value["port"] if isinstance(value, dict) else value
    found = [m for p, m in err.value.problems if p == f"gpu-estate:{key}"]
    assert found and f"port {port}" in found[0], err.value.problems


def test_a_port_clashes_with_the_nodes_own_ssh_port_too():
    cfg = stack_estate("prod")
    _set(cfg, "nodes.inference.ssh.port", 2222)
    _set(cfg, "nodes.inference.workloads.open-webui", {"port": 2222})
    with pytest.raises(ConfigError) as err:
        parse_spec(cfg)
    assert [p for p, m in err.value.problems if "port 2222" in m] == ["gpu-estate:nodes.inference.workloads.open-webui.port"]


def test_a_second_key_anywhere_never_reaches_the_tensordock_launch():
    """The case found: a public key with a newline and a second key was accepted and both keys went in
    the launch request. One key, with its comment, still goes through as given."""
    cfg = stack_estate("prod")
    _set(cfg, "nodes.inference.ssh.public_key", PUBLIC_KEY + " ops@gpu-estate")
    assert parse_spec(cfg).nodes["inference"].ssh.public_key == PUBLIC_KEY + " ops@gpu-estate"
