"""A loopback Google OAuth 2.0 token endpoint for ID tokens of service accounts, and the keys it knows.

Only the fake exists here (Google's token endpoint cannot run on this machine); each shape is Google's:
- "Using OAuth 2.0 for Server to Server Applications"
  (https://developers.google.com/identity/protocols/oauth2/service-account#authorizingrequests): the request
  is a form POST of ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and ``assertion``, a JWT signed
  RS256 with the service account's key whose claims are ``iss`` (the account's email), ``aud`` (the token
  URI), ``iat`` and ``exp`` at most an hour later; Google's client library asks for an ID token instead of an
  access token by putting ``target_audience`` in place of ``scope`` (google-auth,
  ``google/oauth2/service_account.py`` ``IDTokenCredentials._make_authorization_grant_assertion``) and
  reads ``id_token`` from the JSON answer (``google/oauth2/_client.py`` ``id_token_jwt_grant``).
- A refused assertion is a 400 with ``{"error": "invalid_grant", "error_description": ...}`` (RFC 6749 5.2).
- The ID token is a JWT Google signs RS256: ``iss`` ``https://accounts.google.com``, ``aud`` the target
  audience, ``azp``, ``sub`` and ``email`` the account, ``iat``, ``exp`` an hour later
  (https://cloud.google.com/docs/authentication/token-types#identity-contents).

``FakeGoogleOAuth.service_account`` makes a key file (JSON) whose ``token_uri`` is this endpoint, with an RSA
key generated for the test; the endpoint verifies each assertion against its public half.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from loopback.base import FakeServer, Reply

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ISSUER = "https://accounts.google.com"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


class FakeGoogleOAuth(FakeServer):
    vendor = "google-oauth"

    def __init__(self, lifetime: float = 3600.0, **kw: Any):
        super().__init__(**kw)
        self.signing_key = rsa_key()
        """Google's own key, which signs the ID tokens (a service verifies them with its public half)."""
        self.lifetime = lifetime
        """How long an ID token it issues is valid."""
        self.accounts: Dict[str, Any] = {}
        """Service-account email -> (key id, public key)."""
        self.issued: List[Dict[str, Any]] = []
        """The claims of every ID token it issued."""

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def service_account(self, email: str = "gw-test@example-estate.iam.gserviceaccount.com") -> Dict[str, Any]:
        """A service-account key file as IAM hands it out (``gcp.serviceaccount.Key``'s private key, decoded)."""
        key = rsa_key()
        key_id = f"kid{self.next_id()}"
        with self.lock:
            self.accounts[email] = (key_id, key.public_key())
        return {"type": "service_account", "project_id": "example-estate", "private_key_id": key_id,
                "private_key": pem(key), "client_email": email, "client_id": "1000",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": self.token_uri}

    def verify(self, token: str, audience: str) -> Dict[str, Any]:
        """An ID token's claims once its signature, issuer, audience and expiry check out (raises otherwise)."""
        return jwt.decode(token, self.signing_key.public_key(), algorithms=["RS256"], audience=audience,
                          issuer=ISSUER)

    def route(self, method: str, path: str, query: Dict[str, str], body: Any) -> Reply:
        if (method, path) != ("POST", "/token"):
            return 404, {"error": "not_found"}
        form = {k: v[0] for k, v in parse_qs(body if isinstance(body, str) else "").items()}
        if form.get("grant_type") != GRANT_TYPE:
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}
        refused = self._check(form.get("assertion") or "")
        if refused:
            return 400, {"error": "invalid_grant", "error_description": refused}
        claims = jwt.decode(form["assertion"], options={"verify_signature": False})
        now = int(time.time())
        issued = {"iss": ISSUER, "aud": claims["target_audience"], "azp": claims["iss"], "sub": claims["iss"],
                  "email": claims["iss"], "email_verified": True, "iat": now, "exp": now + int(self.lifetime)}
        with self.lock:
            self.issued.append(issued)
        return 200, {"id_token": jwt.encode(issued, self.signing_key, algorithm="RS256", headers={"kid": "google-1"})}

    def _check(self, assertion: str) -> Optional[str]:
        try:
            header = jwt.get_unverified_header(assertion)
            email = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return "Invalid JWT."
        with self.lock:
            account = self.accounts.get(email)
        if account is None:
            return "Invalid grant: account not found"
        key_id, public = account
        if header.get("kid") != key_id:
            return "Invalid JWT Signature."
        try:
            claims = jwt.decode(assertion, public, algorithms=["RS256"], audience=self.token_uri,
                                options={"require": ["iss", "aud", "iat", "exp"]})
        except jwt.PyJWTError as e:
            return f"Invalid JWT: {type(e).__name__}"
        if claims["exp"] - claims["iat"] > 3600:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        if not claims.get("target_audience"):
            return "Invalid JWT: no scope or target_audience"
        return None
