"""The vendors' HTTP client reads the environment's proxy settings once per host, as requests would on
each call: through HTTP_PROXY to a vendor, straight to a host NO_PROXY names, and anew when they change."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from providers.http import ApiSession


class Recorder:
    """An HTTP server on 127.0.0.1 that answers every GET with what it was asked (a proxy sees absolute
    URLs in its request line, a server only paths)."""

    def __init__(self, name: str):
        self.seen = []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                rec.seen.append(self.path)
                body = json.dumps({"by": name, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    proxy, vendor = Recorder("proxy"), Recorder("vendor")
    yield proxy, vendor
    proxy.close()
    vendor.close()


def test_a_proxy_in_the_environment_carries_vendor_calls_and_no_proxy_is_honoured(servers, monkeypatch):
    proxy, vendor = servers
    for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost")
    api = ApiSession("http://vendor.example/api", None, "vendor")
    assert api.request("GET", "/offers").json() == {"by": "proxy", "path": "http://vendor.example/api/offers"}
    # The loopback vendor is not behind the proxy once NO_PROXY names it, on the same session.
    direct = ApiSession(vendor.url, None, "vendor")
    assert direct.request("GET", "/x").json()["by"] == "proxy"
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert direct.request("GET", "/x").json() == {"by": "vendor", "path": "/x"}
    assert proxy.seen == ["http://vendor.example/api/offers", f"{vendor.url}/x"]
