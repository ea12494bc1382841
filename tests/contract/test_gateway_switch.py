"""A LiteLLM config change takes no request down: the real LiteLLM proxy behind the real Caddy, switched by
the deploy's own script while a client keeps sending requests.

The deploy's units part (``components.gateway.units_script``) and the switch (``switch_script``) run as the
gateway host runs them, against a directory standing in for ``/etc/estate/gateway``. Only what systemd does
is played here by a ``systemctl`` on PATH: starting a unit runs what its container runs (LiteLLM on the
instance's port; Caddy on the front's Caddyfile), stopping one sends SIGTERM and waits for the process to
end as ``docker stop -t`` does, ``is-active`` says whether it runs."""
import os
import subprocess
import threading
from pathlib import Path
from typing import Dict, List

import pytest
import requests

from components import gateway as gw
from core.config import parse_spec
from core.text import heredoc_script
from core.topology import plan_estate
from loopback.ollama import FakeOllama
from providers.local_gateway import litellm_binary
from providers.ssh_forward import free_port
from providers.wait import wait_for, within

def caddy() -> str:
    """Caddy at the gateway host's version (``scripts/build-caddy.sh``): Debian's 2.6 cuts requests in flight
    on a reload, which 2.10 (the host's image) finishes."""
    record = Path(os.environ.get("GPU_ESTATE_CACHE", Path.home() / ".cache" / "gpu-estate")) / "caddy-bin"
    return record.read_text().strip() if record.exists() else ""


CADDY = caddy()
KEY = "sk-switch-test-master-key"

SYSTEMCTL = r"""#!/bin/sh
echo "$*" >> "$D/systemctl.log"
unit=""
for a in "$@"; do case "$a" in *.service) unit="$a" ;; esac; done
verb="$1"
if [ "${2:-}" = --now ]; then verb="$1-now"; fi
pidfile="$D/run/$unit.pid"
start() {
  case "$unit" in
    estate-litellm-blue.service) port=$BLUE_PORT ;;
    estate-litellm-green.service) port=$GREEN_PORT ;;
    estate-gateway-front.service)
      "$CADDY" run --config "$D/front/Caddyfile" --adapter caddyfile >> "$D/run/front.log" 2>&1 < /dev/null &
      echo $! > "$pidfile"; return ;;
    *) return ;;
  esac
  "$LITELLM" --config "$D/config.yaml" --host 127.0.0.1 --port "$port" >> "$D/run/$unit.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
}
stop() {
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  i=0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
  rm -f "$pidfile"
}
case "$verb" in
  is-active) [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; exit $? ;;
  restart) stop; start ;;
  start|enable-now) [ -f "$pidfile" ] || start ;;
  stop|disable-now) stop ;;
esac
exit 0
"""


def estate(gateway_port: int, backends: List[int], ollama_port: int, aliases: Dict[str, str]):
    node = {"provider": "tensordock", "gpu": {"model": "rtx4090"}, "max_price_per_hour": 0.4, "access": "direct",
            "workloads": {"ollama": {"models": ["qwen3:8b"]}},
            "ssh": {"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFXdBfpWUE7y0nZ8rsibV0rc/1JxweHTokQjkgvrZxWD"}}
    return parse_spec({
        "nodes": {"big": node, "gw": {"provider": "host", "address": "127.0.0.1", "workloads": {"litellm": {}},
                                      "ssh": {"host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGgtgdW9ZLnsrjGnasMVWnMuUvMEboNU8GOJmJqjIes"}}},
        "gateway": {"node": "gw", "aliases": aliases, "port": gateway_port, "backend_ports": backends,
                    "timeouts": {"default": 20}, "num_retries": 0},
        "budget": {"monthly_usd": 1000},
    })


class Host:
    """``/etc/estate/gateway`` in a directory, the units' processes run by the ``systemctl`` on PATH."""

    def __init__(self, d: Path, ollama_port: int):
        self.d, self.ollama_port = d, ollama_port
        self.port, self.backends = free_port(), [free_port(), free_port()]
        for sub in ("bin", "run", "systemd"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "bin" / "systemctl").write_text(SYSTEMCTL)
        (d / "bin" / "systemctl").chmod(0o755)
        self.env = {**os.environ, "PATH": f"{d}/bin:{os.environ['PATH']}", "D": str(d), "CADDY": CADDY,
                    "LITELLM": str(litellm_binary()), "BLUE_PORT": str(self.backends[0]),
                    "GREEN_PORT": str(self.backends[1]), "LITELLM_MASTER_KEY": KEY,
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_PROXY": "127.0.0.1,localhost"}

    def deploy(self, aliases: Dict[str, str]) -> str:
        """The files and units of a gateway with ``aliases`` as the host's deploy writes and applies them."""
        plan = plan_estate(estate(self.port, self.backends, self.ollama_port, aliases))
        endpoints = {"big": ("127.0.0.1", {"11434": self.ollama_port})}
        files = {"config.yaml": gw.render_litellm_config(plan, endpoints),
                 **gw.front_files(plan, admin=f"{self.d}/run/admin.sock")}
        reload = (f"{CADDY} reload --config {self.d}/front/Caddyfile --adapter caddyfile "
                  f"--address unix/{self.d}/run/admin.sock")
        files["litellm-switch.sh"] = gw.switch_script(plan, config_dir=str(self.d), reload=reload, wait=120)
        units = {u: t for u, t in gw.gateway_units(plan, {}).items() if u in (*gw.LITELLM_UNITS.values(), gw.FRONT_UNIT)}
        stamped = gw.stamp_units(units, {f"{gw.CONFIG_DIR}/{p}": t for p, t in files.items()}, {})
        script = (heredoc_script({f"{self.d}/{p}": t for p, t in files.items()})
                  + gw.units_script(stamped, root=str(self.d / "systemd"), config_dir=str(self.d)))
        run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300, env=self.env)
        assert run.returncode == 0, run.stdout + run.stderr + self.logs()
        return run.stdout

    def logs(self) -> str:
        return "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in (self.d / "run").glob("*.log"))

    def pid(self, unit: str):
        path = self.d / "run" / f"{unit}.pid"
        return int(path.read_text()) if path.exists() else None

    def close(self) -> None:
        for path in (self.d / "run").glob("*.pid"):
            subprocess.run(["kill", "-TERM", path.read_text().strip()], capture_output=True)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/health/liveliness", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def chat(url: str, model: str, key: str = KEY) -> requests.Response:
    return requests.post(f"{url}/v1/chat/completions", timeout=30, headers={"Authorization": f"Bearer {key}"},
                         json={"model": model, "messages": [{"role": "user", "content": "hello"}]})


@pytest.fixture()
def host(tmp_path):
    if not litellm_binary().exists():
        pytest.skip(f"no LiteLLM proxy at {litellm_binary()}: `make setup` installs litellm[proxy]")
    if not CADDY or not os.path.exists(CADDY):
        pytest.skip("no Caddy at the gateway host's version: `make setup` runs scripts/build-caddy.sh")
    ollama = FakeOllama(name="big")
    ollama.install("qwen3:8b")
    h = Host(tmp_path, ollama.httpd.server_address[1])
    yield h
    h.close()
    ollama.close()


def under_load(url: str, change):
    """``change()`` while three clients keep sending requests: (its result, how many requests went out
    meanwhile, the failed ones)."""
    results: List[str] = []
    stop = threading.Event()

    def client() -> None:
        for _ in range(5000):  # bounded: stopped once the change is over
            if stop.is_set():
                return
            try:
                r = chat(url, "fast")
                results.append("ok" if r.status_code == 200 else f"{r.status_code} {r.text[:200]}")
            except requests.RequestException as e:
                results.append(f"error {e}")

    clients = [threading.Thread(target=client) for _ in range(3)]
    for t in clients:
        t.start()
    try:
        out = change()
        during = len(results)
    finally:
        stop.set()
        for t in clients:
            t.join(timeout=60)
    return out, during, [r for r in results if r != "ok"]


def test_a_new_alias_goes_live_with_no_request_lost(host):
    first = host.deploy({"fast": "qwen3:8b"})
    assert "instance blue is live" in first
    url = f"http://127.0.0.1:{host.port}"
    wait_for(lambda: _answers(url), bool, within(30), 0.2, "the front listening")
    assert chat(url, "fast").status_code == 200
    assert chat(url, "fast", key="sk-wrong").status_code in (400, 401)  # the master key still gates the route
    assert chat(url, "fast-too").status_code != 200
    blue = host.pid("estate-litellm-blue.service")

    out, during, failed = under_load(url, lambda: host.deploy({"fast": "qwen3:8b", "fast-too": "qwen3:8b"}))
    assert failed == [], failed[:5]
    assert during >= 10, f"only {during} requests went out during the switch"
    assert "instance green is live" in out and "instance blue stopped" in out
    assert chat(url, "fast-too").status_code == 200  # the new alias answers
    assert host.pid("estate-litellm-blue.service") is None and blue is not None
    assert str(host.backends[1]) in (host.d / "front" / "Caddyfile").read_text()

    # And back to blue, for another alias.
    out, during, failed = under_load(url, lambda: host.deploy({"fast": "qwen3:8b", "fast-too": "qwen3:8b",
                                                               "fast-three": "qwen3:8b"}))
    assert failed == [], failed[:5]
    assert during >= 10 and "instance blue is live" in out and "instance green stopped" in out
    assert chat(url, "fast-three").status_code == 200

    # Nothing changed: the next deploy switches nothing.
    again = host.deploy({"fast": "qwen3:8b", "fast-too": "qwen3:8b", "fast-three": "qwen3:8b"})
    assert "is live" not in again and host.pid("estate-litellm-blue.service") is not None
