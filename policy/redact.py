"""Let policies tell a secret from a plain value.

The engine sends each resource's properties to the analyzer with secrets marked, but pulumi-policy's
validation path unwraps them into plain values. The pack installs ``install()`` first, so policies see
``SECRET`` wherever the program passed a Pulumi secret: a credential that reaches a policy as text was
not marked secret, which is exactly what ``no-plaintext-credentials`` refuses.
"""
from __future__ import annotations

from typing import Any

from pulumi_policy import deserialize, policy

SECRET = "[secret]"


def redact(value: Any) -> Any:
    """``value`` with every secret-marked value replaced by ``SECRET``."""
    if isinstance(value, dict):
        if value.get(deserialize.SPECIAL_SIG_KEY) == deserialize.SPECIAL_SECRET_SIG:
            return SECRET
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def install() -> None:
    original = deserialize.deserialize_properties

    def deserialize_redacted(props: Any, proxy_secrets: bool = False) -> Any:
        # Remediations (proxy_secrets) must round-trip secrets; validations only need to know where they are.
        return original(props, True) if proxy_secrets else original(redact(props), False)

    policy.deserialize_properties = deserialize_redacted
