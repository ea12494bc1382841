"""The health agent: every service the gateway routes to, its tunnels, its nodes and the gateway itself,
checked every minute from the gateway host, with alerts on down and recovery and one status view.

``python -m agents.health --document checks.json --state-dir DIR [--every SECONDS] [--serve PORT]`` reads
the check document the program rendered (``core.health.check_document``) and, each round:

- asks each node that may be stopped (``power: idle`` on a marketplace) for its machine's state, the way
  the spend watcher does (``providers.gpu_cloud``); a node stopped on purpose (``power: stopped``, or idle
  and stopped) is not probed and never reported down;
- runs every check's probe at once (``probe``): the kind's own description of what a healthy service answers
  (``BaseWorkload.probe``): Ollama's model list and a one-token generation for each model an alias sends
  it, an OpenAI server's health route and model list, Postgres's first protocol exchange, an HTTP health
  route, or a TCP connection (a tunnel's local port);
- advances the alert state kept in ``DIR`` (``core.health.advance``) and posts each alert due to the webhook
  in ``ESTATE_SPEND_WEBHOOK`` in the document's format; an alert whose post fails is kept and posted again
  next round, so none is lost and none is posted twice;
- writes the status document (``core.status.status_document``) beside its state.

With ``--serve`` it answers on 127.0.0.1: ``/status.json``, ``/status`` (HTML) and ``/metrics`` (Prometheus's
text format), each only to a request carrying the gateway's master key (``LITELLM_MASTER_KEY``) as a bearer
token, in ``Authorization`` or, behind the edge's basic auth, ``x-litellm-api-key``.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import hmac
import json
import os
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional
from urllib.parse import urlsplit

import requests

from agents import rounds
from agents.spend import post_failure, read_ledger
from providers.local import replace_text
from core import health, status
from core.health import Alert, Result
from core.spend import WEBHOOK_ENV

MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
SPEND_LEDGER_ENV = "ESTATE_SPEND_LEDGER"
"""Where the spend watcher's ledger is, when it runs: the status view's month-to-date costs."""
USAGE_ENV = health.USAGE_DIR_ENV
"""Where the gateway's usage callback writes its monthly files (default the state directory)."""
MAX_WORKERS = 16
EDGE_PREFIX = "/estate"
"""Where a gateway's hostname forwards the status view (``components.edge.STATUS_PATHS``)."""


class ProbeFailed(Exception):
    pass


def _get(url: str, timeout: float) -> requests.Response:
    resp = requests.get(url, timeout=timeout)
    if not 200 <= resp.status_code < 300:
        raise ProbeFailed(f"GET {urlsplit(url).path or '/'} answered HTTP {resp.status_code}")
    return resp


def _listed(names: List[str], wanted: List[str], where: str) -> None:
    have = set(names) | {n.removesuffix(":latest") for n in names}
    missing = [m for m in wanted if m not in have]
    if missing:
        raise ProbeFailed(f"{where} does not list {', '.join(missing)}")


def _postgres(host: str, port: int, user: str, database: str, timeout: float) -> str:
    """Postgres's first exchange without a driver: an SSLRequest answered ``S`` or ``N``; after ``N``, a
    startup message for ``database`` answered by an authentication request (``R``)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack("!II", 8, 80877103))
        answer = s.recv(1)
        if answer not in (b"S", b"N"):
            raise ProbeFailed(f"no Postgres answer to an SSL request (got {answer[:1]!r})")
        if answer == b"S":
            return "accepts TLS connections"
        params = b"user\x00" + user.encode() + b"\x00database\x00" + database.encode() + b"\x00\x00"
        s.sendall(struct.pack("!II", 8 + len(params), 196608) + params)
        kind = s.recv(1)
        if kind == b"R":
            return "asks for authentication"
        if kind == b"E":
            raise ProbeFailed("Postgres refused the startup: " + s.recv(512).decode("utf-8", "replace")
                              .replace("\x00", " ").strip()[:200])
        raise ProbeFailed(f"no authentication request from Postgres (got {kind!r})")


def probe(url: str, spec: Mapping[str, Any], timeout: float, quiet: bool = False) -> str:
    """Run one probe description against ``url``; returns what it saw, raises ``ProbeFailed`` (or a
    requests/socket error) when the service does not answer as expected."""
    kind, path = spec.get("type"), spec.get("path") or ""
    parts = urlsplit(url)
    if kind == "tcp":
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout):
            return "accepts connections"
    if kind == "postgres":
        return _postgres(parts.hostname, parts.port or 5432, str(spec.get("user")), str(spec.get("database")), timeout)
    if kind == "http":
        return f"GET {path} answered HTTP {_get(url + path, timeout).status_code}"
    if kind == "openai":
        if path:
            _get(url + path, timeout)
        listed = [str(m.get("id")) for m in (_get(f"{url}/v1/models", timeout).json().get("data") or [])]
        _listed(listed, list(spec.get("models") or []), "/v1/models")
        return f"serves {', '.join(spec.get('models') or [])}"
    if kind == "ollama":
        tags = [str(m.get("name")) for m in (_get(url + (path or "/api/tags"), timeout).json().get("models") or [])]
        _listed(tags, list(spec.get("models") or []), "/api/tags")
        generate = list(spec.get("generate") or [])
        if spec.get("loaded_only") and generate:
            loaded = [str(m.get("name")) for m in (_get(f"{url}/api/ps", timeout).json().get("models") or [])]
            loaded += [m.removesuffix(":latest") for m in loaded]
            generate = [m for m in generate if m in loaded]
        if quiet:
            generate = []  # a node its idle watcher may stop: a generation would keep it awake
        for model in generate:
            resp = requests.post(f"{url}/api/generate", timeout=timeout, json={
                "model": model, "prompt": "ping", "stream": False, "options": {"num_predict": 1}})
            if resp.status_code != 200 or "response" not in resp.json():
                raise ProbeFailed(f"{model} did not answer a one-token generation (HTTP {resp.status_code})")
        return f"lists {len(tags)} models" + (f", {', '.join(generate)} answered a one-token generation" if generate else "")
    raise ProbeFailed(f"unknown probe type {kind!r}")


def look_node(instance: str) -> Optional[bool]:
    """Whether a marketplace machine runs (None: its vendor could not be asked)."""
    from core.vendors import machine_id
    from providers import gpu_cloud
    from providers.gpu_cloud import Status
    from providers.http import CloudError

    parsed = machine_id(instance)
    if parsed is None:
        return None
    cloud, iid = parsed
    try:
        with gpu_cloud.client(cloud) as c:
            inst = c.get(iid)
    except CloudError:
        return None
    return inst is not None and inst.status in (Status.RUNNING, Status.PENDING)


def read_usage(directory: Path, now: float) -> List[Dict[str, Any]]:
    """This month's usage lines the gateway's callback wrote (``usage-<YYYY-MM>.jsonl``); a torn last line
    (the callback writing as it is read) is skipped."""
    out = []
    try:
        with open(Path(directory) / health.usage_file(now), encoding="utf-8") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return out


def post_alert(url: str, post: health.Post) -> None:
    if post.json is not None:
        resp = requests.post(url, json=post.json, headers=post.headers, timeout=10)
    else:
        resp = requests.post(url, data=(post.text or "").encode(), headers=post.headers, timeout=10)
    if resp.status_code >= 300:
        raise ProbeFailed(f"webhook answered HTTP {resp.status_code}")


class Agent:
    def __init__(self, document: Mapping[str, Any], state_dir: Path, webhook: Optional[str] = None,
                 look: Callable[[str], Optional[bool]] = look_node, post: Callable[[str, health.Post], None] = post_alert,
                 clock: Callable[[], float] = time.time, say: Callable[[str], None] = print,
                 ledger: Optional[Path] = None, usage: Optional[Path] = None):
        self.document, self.state_dir = document, Path(state_dir)
        self.webhook = webhook if webhook is not None else os.environ.get(WEBHOOK_ENV) or ""
        self._look, self._post, self._clock, self._say = look, post, clock, say
        self.ledger = ledger if ledger is not None else (Path(os.environ[SPEND_LEDGER_ENV]) if os.environ.get(SPEND_LEDGER_ENV) else None)
        self.usage = usage if usage is not None else Path(os.environ.get(USAGE_ENV) or self.state_dir)
        self.status: Dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def state_path(self) -> Path:
        return self.state_dir / health.STATE_FILE

    def _read_state(self) -> Optional[Dict[str, Any]]:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def _asleep(self) -> Dict[str, str]:
        """Node -> why it is not probed: kept stopped, or idle and stopped at its marketplace."""
        out = {}
        for n in self.document.get("nodes") or []:
            if n.get("power") == "stopped":
                out[n["node"]] = "its power is stopped"
            elif n.get("power") == "idle" and n.get("instance"):
                running = self._look(str(n["instance"]))
                if running is False:
                    out[n["node"]] = "its idle watcher stopped it"
                elif running is None:
                    out[n["node"]] = ""  # unknown: probed, and a failure is not reported down
        return out

    def _run(self, check: Mapping[str, Any], asleep: Mapping[str, str]) -> Result:
        node = check.get("node")
        why = asleep.get(node) if node in asleep else None
        if why:
            return Result(check["id"], None, detail=f"not checked: node {node} is stopped ({why})")
        start = time.monotonic()
        try:
            seen = probe(str(check["url"]), check["probe"], float(self.document.get("timeout_seconds") or 10),
                         quiet=bool(check.get("quiet")))
            return Result(check["id"], True, round((time.monotonic() - start) * 1000, 1), seen)
        except (ProbeFailed, requests.RequestException, OSError, ValueError) as err:
            detail = f"{type(err).__name__}: {err}"[:300] if not isinstance(err, ProbeFailed) else str(err)[:300]
            if why == "":
                return Result(check["id"], None, detail=f"{detail} (node {node} may be stopped by its idle watcher: "
                                                        "its vendor could not be asked)")
            return Result(check["id"], False, round((time.monotonic() - start) * 1000, 1), detail)

    def run_once(self) -> Dict[str, Any]:
        now = self._clock()
        checks = list(self.document.get("checks") or [])
        asleep = self._asleep()
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(MAX_WORKERS, len(checks)))) as pool:
            results = list(pool.map(lambda c: self._run(c, asleep), checks))
        before = self._read_state() or {}
        state, alerts = health.advance(before, results, now, int(self.document.get("down_after") or 3))
        pending = [Alert(**a) for a in before.get("pending") or []] + alerts
        state["pending"] = [a.__dict__ for a in self._send(pending)]
        replace_text(self.state_path, json.dumps(state, indent=2, sort_keys=True) + "\n")
        for r in results:
            self._say(f"health: {r.id}: {'up' if r.ok else 'not checked' if r.ok is None else 'FAILED'}"
                      f"{f' in {r.latency_ms:.0f} ms' if r.latency_ms is not None else ''}: {r.detail}")
        ledger = read_ledger(self.ledger) if self.ledger else None
        doc = status.status_document(self.document, state, now, ledger=ledger, usage=read_usage(self.usage, now))
        replace_text(self.state_dir / health.STATUS_FILE, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        with self._lock:
            self.status = doc
        return doc

    def _send(self, alerts: List[Alert]) -> List[Alert]:
        """Post ``alerts`` in order; returns those not posted (kept for the next round)."""
        left = []
        for alert in alerts:
            self._say(f"health: alert: {health.alert_text(str(self.document.get('stack', '')), alert)}")
            if not self.webhook:
                continue  # no webhook: the journal line is the alert
            if left:
                left.append(alert)  # keep their order
                continue
            try:
                self._post(self.webhook, health.alert_post(str(self.document.get("format") or "slack"),
                                                           str(self.document.get("stack", "")), alert))
            except (ProbeFailed, requests.RequestException) as err:
                self._say(f"health: webhook post failed ({post_failure(self.webhook, err)}); posting again next round")
                left.append(alert)
        return left

    def current(self) -> Dict[str, Any]:
        with self._lock:
            return dict(self.status)


def authorized(headers: Mapping[str, str], key: str) -> bool:
    """Whether a request carries the gateway's master key as a bearer token (compared in constant time)."""
    if not key:
        return False
    for name in ("Authorization", "x-litellm-api-key"):
        value = headers.get(name) or ""
        if value.startswith("Bearer ") and hmac.compare_digest(value[7:].strip().encode(), key.encode()):
            return True
    return False


def serve(agent: Agent, port: int, key: str, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """The status view and metrics on ``host:port`` (port 0: a free one), in a thread of their own."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if not authorized(self.headers, key):
                return self._reply(401, "text/plain", b"the gateway's master key is needed as a bearer token\n",
                                   {"WWW-Authenticate": "Bearer"})
            doc = agent.current()
            route = urlsplit(self.path).path
            route = route[len(EDGE_PREFIX):] if route.startswith(EDGE_PREFIX + "/") else route  # through the edge
            if route == "/status.json":
                return self._reply(200, "application/json", json.dumps(doc, indent=2, sort_keys=True).encode())
            if route in ("/status", "/"):
                return self._reply(200, "text/html; charset=utf-8", status.status_html(doc).encode())
            if route == "/metrics":
                return self._reply(200, "text/plain; version=0.0.4; charset=utf-8", status.metrics_text(doc).encode())
            return self._reply(404, "text/plain", b"not found\n")

        def _reply(self, code: int, ctype: str, body: bytes, headers: Optional[Dict[str, str]] = None):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--document", required=True, type=Path)
    p.add_argument("--state-dir", required=True, type=Path)
    p.add_argument("--every", type=float, default=None, help="check again every SECONDS (default the document's; 0: once)")
    p.add_argument("--serve", type=int, default=None, help="answer the status view and metrics on 127.0.0.1:PORT")
    args = p.parse_args(argv)
    document = json.loads(args.document.read_text(encoding="utf-8"))
    every = args.every if args.every is not None else float(os.environ.get(health.EVERY_ENV) or document.get("every_seconds") or 60)
    agent = Agent(document, args.state_dir, say=lambda line: print(line, flush=True))
    if args.serve is not None:
        httpd = serve(agent, args.serve, os.environ.get(MASTER_KEY_ENV) or "")
        print(f"health: status view and metrics on 127.0.0.1:{httpd.server_address[1]}", flush=True)
    if every <= 0:
        agent.run_once()
        return 0
    # The program rewrites the document on each `up`.
    rounds.forever(agent.run_once, every, args.document, lambda doc: setattr(agent, "document", doc), "health")
    return 0


if __name__ == "__main__":
    sys.exit(main())
