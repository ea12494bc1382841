"""The gateway host's identity proxy: what it signs and where it listens.

A hosted service that checks a Google ID token (Cloud Run, invoked only by the gateway's own service
account) cannot take a bearer from the gateway's env file: an ID token lasts an hour. The gateway's route
to it goes instead to the identity proxy on the gateway host's loopback (``agents.identity``), which mints
an ID token for the service's URL with the gateway's service-account key, keeps it until a few minutes
before it expires, and forwards each request with it, streaming the answer back. LiteLLM is never
restarted for a new token.

- ``document``: plain data, each service's URL (its token's audience); no credential.
- The keys (``KEYS_ENV``: service name -> its key file's JSON) and the bearer LiteLLM's route presents to
  the proxy (``BEARER_ENV``) reach the proxy in its environment only, from a 0600 env file on a gateway
  host or a secret input locally.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping

KEYS_ENV = "ESTATE_IDENTITY_KEYS"
"""Service name -> the JSON key file of the service account the gateway invokes it as."""
BEARER_ENV = "ESTATE_IDENTITY_BEARER"
"""What LiteLLM's route sends the proxy, and the proxy alone accepts (no other process on the host may
invoke the services through it)."""
DOCUMENT_FILE = "identity.json"
"""The proxy's document beside a local gateway's config."""
HOST_DOCUMENT = "identity/services.json"
"""The proxy's document under a gateway host's config directory (its directory is mounted: the deploy
replaces the file)."""
UNIT = "estate-identity.service"
REFRESH_BEFORE_SECONDS = 300.0
"""A token is minted again this long before it expires (Google's ID tokens last an hour)."""


def needs_proxy(services: Mapping[str, Any]) -> Dict[str, Any]:
    """The services (name -> spec) whose requests the identity proxy signs."""
    return {name: s for name, s in services.items() if s.id_token}


def document(services: Mapping[str, Any], urls: Mapping[str, str]) -> Dict[str, Any]:
    """What the proxy reads: each signed service's URL, which is also its tokens' audience (Cloud Run checks
    the ``aud`` claim against the service's URL). A service whose URL is not known yet is left out."""
    return {"services": {name: {"url": urls[name].rstrip("/")} for name in sorted(needs_proxy(services))
                         if urls.get(name)}}


def route_base(proxy: str, name: str) -> str:
    """The OpenAI base URL of ``name`` through the proxy at ``proxy`` (``http://127.0.0.1:<port>``)."""
    return f"{proxy.rstrip('/')}/{name}/v1"
