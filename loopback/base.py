"""The HTTP server, state lock and fault injection every fake vendor shares."""
from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlparse

Reply = Tuple[int, Any]


class Stream:
    """A streamed answer: NDJSON lines sent one chunk at a time, ``delay`` seconds apart. ``cut_after``
    closes the connection after that many lines without ending the stream (a dropped connection)."""

    def __init__(self, lines: List[Any], delay: float = 0.0, cut_after: Optional[int] = None,
                 on_done: Optional[Any] = None):
        self.lines, self.delay, self.cut_after, self.on_done = lines, delay, cut_after, on_done
        """``on_done`` runs once every line is sent, before the stream ends (a pull's model appears then)."""

    content_type = "application/x-ndjson"

    @staticmethod
    def encode(line: Any) -> bytes:
        return (json.dumps(line) + "\n").encode()


class EventStream(Stream):
    """A streamed answer as server-sent events (OpenAI's ``stream: true``): each line a ``data: <json>``
    event, then ``data: [DONE]``."""

    content_type = "text/event-stream"

    @staticmethod
    def encode(line: Any) -> bytes:
        return b"data: " + (line.encode() if isinstance(line, str) else json.dumps(line).encode()) + b"\n\n"


class Fault:
    """One injected failure: applies to the next ``count`` requests whose method and path match."""

    def __init__(self, kind: str, count: int = 1, method: Optional[str] = None, path: str = "", status: int = 0,
                 seconds: float = 0.0, body: Any = None, body_has: str = "", headers: Optional[Dict[str, str]] = None):
        self.kind, self.count, self.method, self.path = kind, count, method, path
        self.status, self.seconds, self.body = status, seconds, body
        self.headers = dict(headers or {})
        """Headers of a ``status`` answer (a 429's ``Retry-After``)."""
        self.body_has = body_has
        """Only requests whose body (as JSON) holds this text: one GraphQL operation among many on one path."""

    def matches(self, method: str, path: str, body: Any = None) -> bool:
        return (self.count > 0 and (self.method in (None, method)) and path.startswith(self.path)
                and (not self.body_has or self.body_has in json.dumps(body)))


class FakeServer:
    """Base class: subclasses implement ``route(method, path, query, body) -> (status, body)``."""

    vendor = "fake"

    def __init__(self, address: str = "127.0.0.1", port: int = 0):
        self.lock = threading.RLock()
        self.faults: List[Fault] = []
        self.calls: Counter = Counter()
        self.log: List[Tuple[str, str]] = []
        self.requests: List[Tuple[str, str, Any]] = []
        """(method, path, parsed body) of every request, for contract tests that compare clients."""
        self.headers: List[Dict[str, str]] = []
        """The headers of every request (names in lower case), in the order of ``requests``."""
        self.latency = 0.0
        self.public_address = "127.0.0.1"
        self.down = False
        """A dead server: every request, even on a kept-alive connection, is cut without an answer."""
        self.serving: Optional[Any] = None
        """When set, a callable: while it returns False the server answers nothing, as on a stopped machine."""
        self.port_map: Dict[int, int] = {}
        """Container port -> the loopback port every instance reports for it (e.g. a fake Ollama)."""
        self._ids = itertools.count(1000)
        self._request = threading.local()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_a: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                fake.handle(self, self.command, body)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self.httpd = ThreadingHTTPServer((address, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_id(self) -> int:
        return next(self._ids)

    def inject(self, kind: str, count: int = 1, **kw: Any) -> Fault:
        """Queue a fault: ``status`` (answer with status/body), ``drop`` (process, then close without an
        answer: a lost response), ``hang`` (sleep ``seconds`` before answering)."""
        f = Fault(kind, count, **kw)
        with self.lock:
            self.faults.append(f)
        return f

    def _take_fault(self, method: str, path: str, body: Any = None) -> Optional[Fault]:
        with self.lock:
            for f in self.faults:
                if f.matches(method, path, body):
                    f.count -= 1
                    return f
        return None

    def kill(self) -> None:
        """Stop answering as a crashed machine would: new connections are refused, open ones are cut."""
        self.down = True
        self.close()

    def handle(self, h: BaseHTTPRequestHandler, method: str, body: Any) -> None:
        if self.down or (self.serving is not None and not self.serving()):
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        parsed = urlparse(h.path)
        path = parsed.path
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        headers = {k.lower(): v for k, v in h.headers.items()}
        self._request.headers = headers
        with self.lock:
            self.calls[(method, path)] += 1
            self.log.append((method, path))
            self.requests.append((method, path, body))
            self.headers.append(headers)
        if self.latency:
            time.sleep(self.latency)
        fault = self._take_fault(method, path, body)
        if fault and fault.kind == "hang":
            time.sleep(fault.seconds)
        if fault and fault.kind == "status":
            self._reply(h, fault.status, fault.body if fault.body is not None else {"error": "injected"}, fault.headers)
            return
        status, reply = self.route(method, path, query, body if body is not None else {})
        if fault and fault.kind == "drop":
            # The work is done but the client never hears of it.
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            h.close_connection = True
            return
        self._reply(h, status, reply)

    @staticmethod
    def _stream(h: BaseHTTPRequestHandler, status: int, reply: Stream) -> None:
        h.send_response(status)
        h.send_header("Content-Type", reply.content_type)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for i, line in enumerate(reply.lines):
            if reply.cut_after is not None and i >= reply.cut_after:
                h.wfile.flush()
                h.connection.shutdown(socket.SHUT_RDWR)
                h.close_connection = True
                return
            data = reply.encode(line)
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()
            if reply.delay:
                time.sleep(reply.delay)
        if reply.on_done is not None:
            reply.on_done()
        h.wfile.write(b"0\r\n\r\n")

    @classmethod
    def _reply(cls, h: BaseHTTPRequestHandler, status: int, reply: Any, headers: Optional[Dict[str, str]] = None) -> None:
        if isinstance(reply, Stream):
            cls._stream(h, status, reply)
            return
        data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
        h.send_response(status)
        h.send_header("Content-Type", "text/plain" if isinstance(reply, str) else "application/json")
        h.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(data)

    def request_headers(self) -> Dict[str, str]:
        """The headers (names in lower case) of the request ``route`` is answering, on its own thread."""
        return dict(getattr(self._request, "headers", {}))

    def route(self, method: str, path: str, query: Dict[str, str], body: Any) -> Reply:
        raise NotImplementedError

    def ports_for(self, wanted: List[int]) -> Dict[int, int]:
        return {p: self.port_map.get(p, 40000 + p % 10000) for p in wanted}
