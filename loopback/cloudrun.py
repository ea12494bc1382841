"""A loopback Cloud Run service with IAM: llama.cpp's OpenAI API behind Cloud Run's check of the caller's
Google ID token.

Only the fake exists here (Cloud Run's front end cannot run on this machine); its shapes are Cloud Run's
("Authenticating service-to-service", https://cloud.google.com/run/docs/authenticating/service-to-service;
"Troubleshoot", https://cloud.google.com/run/docs/troubleshooting#unauthorized-client): a request needs
``Authorization: Bearer <ID token>`` signed by Google whose ``aud`` is the service's URL and whose account
holds ``roles/run.invoker``; without a valid token it answers 401, a valid token of an account without the
role 403, each with an HTML page (not OpenAI's error shape). Behind it, llama.cpp's server
(``tools/server``): ``/health``, ``/v1/models`` and ``/v1/chat/completions``, streamed as server-sent events
of ``chat.completion.chunk`` objects ending ``data: [DONE]`` when ``stream`` is true.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Iterable, List

import jwt

from loopback.base import EventStream, Reply
from loopback.google_oauth import FakeGoogleOAuth
from loopback.openai_server import FakeModelServer

UNAUTHORIZED = ("<html><head><title>401 Unauthorized</title></head><body><h1>Error: Unauthorized</h1><h2>Your "
                "client does not have permission to the requested URL <code>/v1/chat/completions</code>.</h2></body></html>")
FORBIDDEN = ("<html><head><title>403 Forbidden</title></head><body><h1>Error: Forbidden</h1><h2>Your client does "
             "not have permission to get URL <code>/v1/chat/completions</code> from this server.</h2></body></html>")


def chunks(completion_id: int, model: str, words: Iterable[str]) -> List[Any]:
    """A streamed chat as llama.cpp's server sends it: a role chunk, one chunk per piece, a finish chunk."""
    base = {"id": f"chatcmpl-{completion_id}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model}
    out: List[Any] = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                            "finish_reason": None}]}]
    out += [{**base, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]} for w in words]
    out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return out + ["[DONE]"]


class FakeCloudRun(FakeModelServer):
    vendor = "cloudrun"

    def __init__(self, served_name: str, google: FakeGoogleOAuth, invokers: Iterable[str], name: str = "cloudrun",
                 **kw: Any):
        super().__init__(served_name, name=name, **kw)
        self.google = google
        self.invokers = set(invokers)
        """The service accounts holding roles/run.invoker on the service."""
        self.refused: List[int] = []
        """The status of every request it refused."""
        self.callers: List[Dict[str, Any]] = []
        """The verified claims of every request it let through."""

    def route(self, method: str, path: str, query: Dict[str, str], body: Any) -> Reply:
        auth = self.request_headers().get("authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        try:
            claims = self.google.verify(token, audience=self.url)
        except jwt.PyJWTError:
            with self.lock:
                self.refused.append(401)
            return 401, UNAUTHORIZED
        if claims.get("email") not in self.invokers:
            with self.lock:
                self.refused.append(403)
            return 403, FORBIDDEN
        with self.lock:
            self.callers.append(claims)
        if (method, path) == ("POST", "/v1/chat/completions") and body.get("stream") \
                and body.get("model") == self.served_name:
            with self.lock:
                self.chats.append(body["model"])
            words = f"{self.name} streams with {self.served_name}".split(" ")
            return 200, EventStream(chunks(self.next_id(), self.served_name, [w + " " for w in words[:-1]] + words[-1:]))
        return super().route(method, path, query, body)
