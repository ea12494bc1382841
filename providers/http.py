"""The HTTP plumbing every vendor client shares: sessions with timeouts, retries and typed errors.

Retries come from urllib3's ``Retry`` (exponential backoff with jitter, Retry-After honoured). Reads and
deletes retry on 429 and 5xx. Requests that create something retry on 429 only (and on connection
failures before anything was sent): a 5xx or a read timeout on a create may mean the vendor made the
instance, so the caller looks it up by label instead of sending the create again.
"""
from __future__ import annotations

import functools
import hashlib
import os
from typing import Any, Dict, Optional, Tuple
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

RETRY_STATUSES = (429, 500, 502, 503, 504)
DEFAULT_TIMEOUT = (5.0, 30.0)


class CloudError(RuntimeError):
    """A vendor API failed in a way the user must act on. The message says what to do."""

    def __init__(self, message: str, status: Optional[int] = None, body: Any = None):
        self.status = status
        self.body = body
        super().__init__(message)


class AuthError(CloudError):
    pass


class InsufficientCredit(CloudError):
    pass


class NoCapacity(CloudError):
    """Nothing can be rented with these constraints right now: try another region, provider or price."""


class Outbid(NoCapacity):
    """A spot instance's bid is below what its machine now asks: starting it cannot succeed until the bid
    is raised (``min_bid``, $/h for the instance)."""

    def __init__(self, message: str, min_bid: float):
        super().__init__(message)
        self.min_bid = min_bid


class OfferTaken(CloudError):
    """The chosen offer went to someone else between search and create: the next offer may still work."""


class NotFound(CloudError):
    pass


class LostResponse(CloudError):
    """A create may or may not have happened (timeout, reset, 5xx): look the instance up by label."""


def backoff_factor() -> float:
    """Base backoff in seconds; ESTATE_HTTP_BACKOFF lowers it for tests against loopback servers."""
    return float(os.environ.get("ESTATE_HTTP_BACKOFF", "0.5"))


def timeout() -> tuple:
    read = float(os.environ.get("ESTATE_HTTP_TIMEOUT", str(DEFAULT_TIMEOUT[1])))
    return (DEFAULT_TIMEOUT[0], read)


def _retry(idempotent: bool, total: int) -> Retry:
    return Retry(
        total=total,
        connect=total,
        read=total if idempotent else 0,
        status=total,
        other=0,
        backoff_factor=backoff_factor(),
        backoff_jitter=backoff_factor() / 2,
        backoff_max=30,
        status_forcelist=RETRY_STATUSES if idempotent else (429,),
        allowed_methods=None,  # the idempotent flag decides, not the verb
        respect_retry_after_header=True,
        raise_on_status=False,
    )


class ApiSession:
    """A requests session bound to one base URL and bearer token, with two retry policies."""

    def __init__(self, base_url: str, token: Optional[str], vendor: str, retries: int = 6):
        self.base_url = base_url.rstrip("/")
        self.vendor = vendor
        self._token = token
        self._retries = retries
        self._sessions: Dict[bool, requests.Session] = {}

    @property
    def account(self) -> Tuple[str, str]:
        """The API address and a digest of the token: which account this session speaks for."""
        return self.base_url, hashlib.sha256((self._token or "").encode()).hexdigest()

    def _session(self, idempotent: bool) -> requests.Session:
        s = self._sessions.get(idempotent)
        if s is None:
            s = requests.Session()
            # The environment's proxy and CA settings are read once per host (``_environment``), not by
            # requests on every call: that scan of os.environ was a tenth of the provider host's CPU
            # while sixty-four nodes were placed at once.
            s.trust_env = False
            adapter = HTTPAdapter(max_retries=_retry(idempotent, self._retries))
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            if self._token:
                s.headers["Authorization"] = f"Bearer {self._token}"
            s.headers["Accept"] = "application/json"
            self._sessions[idempotent] = s
        return s

    def close(self) -> None:
        for s in self._sessions.values():
            s.close()
        self._sessions.clear()

    def __enter__(self) -> "ApiSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def request(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> requests.Response:
        """Send a request; raise LostResponse when a non-idempotent call's outcome is unknown."""
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        kwargs.setdefault("timeout", timeout())
        proxies, verify = _environment(url)
        kwargs.setdefault("proxies", proxies)
        kwargs.setdefault("verify", verify)
        try:
            resp = self._session(idempotent).request(method, url, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as err:
            if not idempotent:
                raise LostResponse(f"{self.vendor}: {method} {path} got no answer ({err}); checking by label") from err
            raise CloudError(f"{self.vendor}: {method} {path} failed after retries: {err}") from err
        except requests.exceptions.RetryError as err:
            raise CloudError(f"{self.vendor}: {method} {path} still rate limited or failing after retries: {err}") from err
        if not idempotent and resp.status_code >= 500:
            raise LostResponse(f"{self.vendor}: {method} {path} answered {resp.status_code}; checking by label",
                               resp.status_code, resp.text[:500])
        if resp.status_code in (401, 403):
            raise AuthError(
                f"{self.vendor}: credentials refused ({resp.status_code}); check the API key in config "
                f"or the environment", resp.status_code, resp.text[:500])
        if resp.status_code == 429:
            raise CloudError(f"{self.vendor}: still rate limited after {self._retries} retries; try again later", 429)
        return resp


@functools.lru_cache(maxsize=256)
def _host_environment(scheme: str, netloc: str, environ: Tuple[Tuple[str, str], ...]) -> Tuple[Dict[str, str], Any]:
    url = f"{scheme}://{netloc}/"
    env = dict(environ)
    verify = env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE") or True
    return requests.utils.get_environ_proxies(url, no_proxy=env.get("NO_PROXY") or env.get("no_proxy")), verify


def _environment(url: str) -> Tuple[Dict[str, str], Any]:
    """(proxies, verify) for ``url`` as requests would take them from the environment (HTTP(S)_PROXY,
    NO_PROXY, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE), cached per host while those variables stay the same."""
    parts = urlsplit(url)
    environ = tuple(sorted((k, v) for k, v in os.environ.items() if k.upper() in _PROXY_ENV or k.lower().endswith("_proxy")))
    return _host_environment(parts.scheme, parts.netloc, environ)


_PROXY_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NO_PROXY", "ALL_PROXY", "HTTP_PROXY", "HTTPS_PROXY")


def json_body(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return {"text": resp.text[:500]}
