"""A file host on 127.0.0.1 standing in for where model files are downloaded from (Hugging Face's
``/resolve/`` URLs, a bucket's HTTPS endpoint): ``GET`` of a published path answers its bytes, a
``Range: bytes=<start>-`` request answers ``206`` with ``Content-Range`` from that offset (RFC 9110 15.3.7,
what curl's ``-C -`` resume sends), and an offset at or past the end ``416``. Paths may require a bearer
token (a gated file). Every request's path and headers are recorded, for the tests that check who was sent
a token.
"""
from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple

RANGE = re.compile(r"^bytes=(\d+)-$")


class FileHost:
    """``with FileHost() as host: host.publish("/m/a.safetensors", data); host.url("/m/a.safetensors")``."""

    def __init__(self) -> None:
        self.files: Dict[str, bytes] = {}
        self.tokens: Dict[str, str] = {}
        self.requests: List[Tuple[str, Dict[str, str]]] = []
        """(path, headers with lower-case names) of every request."""
        self.cut_after: Optional[int] = None
        """Close the connection after this many bytes of the next answer (a dropped download)."""
        self.lock = threading.Lock()
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with host.lock:
                    host.requests.append((self.path, headers))
                    data, token = host.files.get(self.path), host.tokens.get(self.path)
                    cut, host.cut_after = host.cut_after, None
                if data is None:
                    return self._answer(404, b"not found\n")
                if token is not None and headers.get("authorization") != f"Bearer {token}":
                    return self._answer(401, b"a token whose account accepted the licence is needed\n")
                start = 0
                asked = RANGE.match(headers.get("range", ""))
                if asked:
                    start = int(asked.group(1))
                    if start >= len(data):
                        return self._answer(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                body = data[start:]
                extra = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if asked else {}
                self.send_response(206 if asked else 200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def _answer(self, status: int, body: bytes, headers: Optional[Dict[str, str]] = None) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def publish(self, path: str, data: bytes, token: Optional[str] = None) -> str:
        """Serve ``data`` at ``path`` (behind ``token`` when given); its sha256."""
        with self.lock:
            self.files[path] = data
            if token is not None:
                self.tokens[path] = token
        return hashlib.sha256(data).hexdigest()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def gets(self, path: str) -> List[Dict[str, str]]:
        """The headers of each request for ``path``."""
        with self.lock:
            return [h for p, h in self.requests if p == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "FileHost":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
