"""A webhook receiver on 127.0.0.1, as Slack's or Mattermost's incoming webhooks take alerts: it records
each JSON body posted, or answers 503 while ``failing``."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List


class FakeWebhook:
    def __init__(self, path: str = "/hooks/estate"):
        self.posts: List[Dict[str, Any]] = []
        self.failing = False
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
                ok = self.path == path and not hook.failing
                if ok:
                    with hook.lock:
                        hook.posts.append(body)
                self.send_response(200 if ok else (404 if self.path != path else 503))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def kinds(self) -> List[str]:
        with self.lock:
            return [p["estate"]["kind"] for p in self.posts]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
