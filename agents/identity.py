"""The identity proxy: signs the gateway's requests to services that check a Google ID token.

``python -m agents.identity --document <json> --port <port>`` listens on 127.0.0.1. LiteLLM's route to a
Cloud Run service calls ``http://127.0.0.1:<port>/<service>/v1/...`` with the bearer ``ESTATE_IDENTITY_BEARER``
(anything else is refused: no other process on the host invokes the service through it); the proxy forwards
the request to the service's URL (``core.identity.document``) with ``Authorization: Bearer <ID token>`` and
streams the answer back as it arrives (a streamed chat's server-sent events included).

The ID token is minted the way Google's own client library does for a service-account key
(``google.oauth2.service_account.IDTokenCredentials``; "Using OAuth 2.0 for Server to Server Applications",
https://developers.google.com/identity/protocols/oauth2/service-account, and RFC 7523): a JWT signed RS256
with the key's ``private_key`` (header ``kid`` = ``private_key_id``), claims ``iss`` = the key's
``client_email``, ``aud`` = its ``token_uri``, ``iat``, ``exp`` (an hour later) and ``target_audience`` = the
service's URL, POSTed form-encoded to ``token_uri`` as ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``
and ``assertion``; the answer's ``id_token`` is the bearer, valid until its own ``exp`` (an hour). Cloud Run
checks it ("Authenticating service-to-service", https://cloud.google.com/run/docs/authenticating/service-to-service):
its audience must be the service's URL. A token is kept until ``REFRESH_BEFORE_SECONDS`` before it expires,
so LiteLLM is never restarted for a new one.

A token that cannot be minted (the token endpoint down or refusing the key) answers the request 502 with an
OpenAI-shaped error naming the service and what the endpoint said, so LiteLLM tries the alias's fallbacks.
The key never appears in an answer or the log.
"""
from __future__ import annotations

import argparse
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import jwt
import requests

from core.identity import BEARER_ENV, KEYS_ENV, REFRESH_BEFORE_SECONDS

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_SECONDS = 3600
"""The assertion's lifetime (Google accepts at most an hour)."""
TOKEN_TIMEOUT = 10.0
"""How long a token request may take."""
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 900.0
"""Between two chunks of a service's answer (LiteLLM's own timeout ends a request sooner)."""
MAX_BODY = 32 << 20
"""The largest request body taken (a chat with its images fits well within); read only once the bearer is
checked, so nothing else on the host makes the proxy hold a body in memory."""
FORWARDED = ("content-type", "accept", "user-agent")
"""The request headers passed on (LiteLLM's bearer never is)."""
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "proxy-authenticate",
       "proxy-authorization", "te", "trailer", "upgrade", "date", "server"}
"""Response headers not passed on: hop-by-hop ones, the body's framing (it is sent chunked, decoded) and the
ones the proxy's own answer carries."""


class TokenError(Exception):
    """No ID token could be minted; the message names the token endpoint and what it said, never the key."""


class IdTokenSource:
    """ID tokens of one service account for one audience, minted once and kept until shortly before they
    expire. ``clock`` is seconds since the epoch (``time.time``)."""

    def __init__(self, key: Mapping[str, Any], audience: str, refresh_before: float = REFRESH_BEFORE_SECONDS,
                 clock: Callable[[], float] = time.time, session: Optional[requests.Session] = None):
        missing = [k for k in ("client_email", "private_key", "token_uri") if not key.get(k)]
        if missing:
            raise TokenError(f"the service-account key has no {', '.join(missing)}")
        self.key, self.audience, self.refresh_before, self.clock = dict(key), audience, refresh_before, clock
        self.session = session or requests.Session()
        self._lock = threading.Lock()
        self._token: Optional[str] = None
        self._expiry = 0.0
        self.minted = 0
        """How many tokens it minted."""

    def token(self) -> str:
        """A token valid for at least ``refresh_before`` seconds more (one request mints it; the others wait)."""
        with self._lock:
            if self._token is None or self.clock() >= self._expiry - self.refresh_before:
                self._token, self._expiry = self._mint()
                self.minted += 1
            return self._token

    def forget(self, token: str) -> None:
        """The service refused ``token`` (401): the next request mints another."""
        with self._lock:
            if self._token == token:
                self._token = None

    def assertion(self) -> str:
        now = int(self.clock())
        claims = {"iss": self.key["client_email"], "aud": self.key["token_uri"], "iat": now,
                  "exp": now + ASSERTION_SECONDS, "target_audience": self.audience}
        headers = {"kid": self.key["private_key_id"]} if self.key.get("private_key_id") else None
        try:
            return jwt.encode(claims, self.key["private_key"], algorithm="RS256", headers=headers)
        except (ValueError, TypeError, jwt.PyJWTError) as e:
            raise TokenError(f"the service-account key of {self.key['client_email']} cannot sign "
                             f"({type(e).__name__})") from None

    def _mint(self) -> Tuple[str, float]:
        uri = self.key["token_uri"]
        try:
            resp = self.session.post(uri, data={"grant_type": GRANT_TYPE, "assertion": self.assertion()},
                                     timeout=TOKEN_TIMEOUT)
        except requests.RequestException as e:
            raise TokenError(f"the token endpoint {uri} could not be reached ({type(e).__name__})") from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code != 200 or not isinstance(body, dict) or not body.get("id_token"):
            said = (f"{body.get('error')}: {body.get('error_description', '')}".strip(": ")
                    if isinstance(body, dict) and body.get("error") else "no id_token")
            raise TokenError(f"the token endpoint {uri} answered {resp.status_code} ({said[:200]})")
        token = body["id_token"]
        try:
            expiry = float(jwt.decode(token, options={"verify_signature": False})["exp"])
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            raise TokenError(f"the token endpoint {uri} answered an id_token without an expiry") from None
        return token, expiry


def read_keys(environ: Mapping[str, str]) -> Dict[str, Dict[str, Any]]:
    """Service name -> its service-account key, from ``KEYS_ENV`` (JSON)."""
    raw = environ.get(KEYS_ENV) or "{}"
    try:
        keys = json.loads(raw)
    except ValueError:
        raise SystemExit(f"{KEYS_ENV} is not JSON") from None
    return {name: (json.loads(k) if isinstance(k, str) else k) for name, k in keys.items()}


class IdentityProxy:
    """The proxy's state: the document (re-read when its file changes), the keys and a token source per
    (service, URL)."""

    def __init__(self, document: Path, keys: Mapping[str, Mapping[str, Any]], bearer: str,
                 clock: Callable[[], float] = time.time):
        self.document, self.keys, self.bearer, self.clock = document, dict(keys), bearer, clock
        self._lock = threading.Lock()
        self._seen: Optional[Tuple[float, int]] = None
        self._urls: Dict[str, str] = {}
        self._sources: Dict[Tuple[str, str], IdTokenSource] = {}
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        """This thread's connections to the services (one session per request thread)."""
        if getattr(self._local, "session", None) is None:
            self._local.session = requests.Session()
        return self._local.session

    def urls(self) -> Dict[str, str]:
        with self._lock:
            try:
                st = self.document.stat()
                seen = (st.st_mtime, st.st_size)
                if seen != self._seen:
                    doc = json.loads(self.document.read_text())
                    self._urls = {n: s["url"] for n, s in (doc.get("services") or {}).items()}
                    self._seen = seen
            except (OSError, ValueError) as e:
                print(f"identity: cannot read {self.document} ({type(e).__name__}); keeping what it said before",
                      file=sys.stderr, flush=True)
            return dict(self._urls)

    def source(self, name: str, url: str) -> IdTokenSource:
        with self._lock:
            if (name, url) not in self._sources:
                if name not in self.keys:
                    raise TokenError(f"no service-account key for service {name!r} in {KEYS_ENV}")
                self._sources[(name, url)] = IdTokenSource(self.keys[name], url, clock=self.clock)
            return self._sources[(name, url)]

    def allowed(self, authorization: str) -> bool:
        return bool(self.bearer) and hmac.compare_digest(authorization.encode(), f"Bearer {self.bearer}".encode())


def _error(status: int, message: str, kind: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "code": str(status)}}).encode()


def handler(proxy: IdentityProxy) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_a: Any) -> None:  # each request is logged below, without its headers
            pass

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _serve(self) -> None:
            name, _, rest = self.path.lstrip("/").partition("/")
            if not proxy.allowed(self.headers.get("Authorization") or ""):
                self.close_connection = True  # its body, if any, is never read
                self._answer(401, _error(401, "the identity proxy takes only the gateway's bearer", "auth_error"))
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self.close_connection = True
                self._answer(413, _error(413, f"a request body is at most {MAX_BODY} bytes here", "invalid_request_error"))
                return
            body = self.rfile.read(length) if length else None
            url = proxy.urls().get(name)
            if url is None:
                self._answer(404, _error(404, f"the identity proxy signs no service {name!r}", "not_found_error"))
                return
            try:
                source = proxy.source(name, url)
                token = source.token()
            except TokenError as e:
                print(f"identity: {name}: {e}", file=sys.stderr, flush=True)
                self._answer(502, _error(502, f"no ID token for service {name}: {e}", "identity_error"))
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() in FORWARDED}
            headers["Authorization"] = f"Bearer {token}"
            try:
                upstream = proxy.session.request(self.command, f"{url}/{rest}", data=body, headers=headers,
                                                 stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
            except requests.RequestException as e:
                print(f"identity: {name}: {url} unreachable ({type(e).__name__})", file=sys.stderr, flush=True)
                self._answer(502, _error(502, f"service {name} could not be reached ({type(e).__name__})",
                                         "service_unavailable"))
                return
            if upstream.status_code == 401:
                source.forget(token)  # refused as invalid (Google rotated its keys?): the next request mints anew
            with upstream:
                print(f"identity: {self.command} {name}/{rest.partition('?')[0]} -> {upstream.status_code}",
                      file=sys.stderr, flush=True)
                self.send_response(upstream.status_code)
                for k, v in upstream.headers.items():
                    if k.lower() not in HOP:
                        self.send_header(k, v)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in upstream.iter_content(chunk_size=None):
                        if chunk:
                            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                            self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (requests.RequestException, OSError) as e:
                    # The service or the client went away mid-answer: the client sees the stream cut.
                    print(f"identity: {name}: answer cut ({type(e).__name__})", file=sys.stderr, flush=True)
                    self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler


def serve(proxy: IdentityProxy, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    httpd = ThreadingHTTPServer((host, port), handler(proxy))
    httpd.daemon_threads = True
    return httpd


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="agents.identity", description=__doc__.split("\n\n")[0])
    p.add_argument("--document", required=True, help="the services' URLs (core.identity.document), JSON")
    p.add_argument("--port", type=int, required=True, help="where it listens on 127.0.0.1")
    p.add_argument("--every", type=float, default=0.0,
                   help="accepted for the local agents' common command line; the document is re-read when it changes")
    args = p.parse_args(argv)
    proxy = IdentityProxy(Path(args.document), read_keys(os.environ), os.environ.get(BEARER_ENV, ""))
    if not proxy.bearer:
        print(f"identity: {BEARER_ENV} is not set: refusing to start", file=sys.stderr, flush=True)
        return 2
    httpd = serve(proxy, args.port)
    print(f"identity: signing {', '.join(sorted(proxy.urls())) or 'no service yet'} on 127.0.0.1:{args.port}",
          file=sys.stderr, flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
