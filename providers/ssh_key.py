"""An SSH key pair the program generates: ``pulumi-python:dynamic/ssh:Key``.

The estate's tunnel key is one: the gateway host's autossh units sign in with it, and each tunnelled
node authorizes it only for the forwards the gateway needs (``components.tunnel_key``), so the
operator's own key never sits on the internet-facing gateway host. The private key is a secret output
(encrypted in state); the public key is plain. The key is made once, at create, and kept: nothing in
its inputs changes it but ``comment``, which replaces it (a new key, re-authorized everywhere).
"""
from __future__ import annotations

import datetime
from typing import Any, Dict, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider

from providers.resource import DynamicResource


def generate(comment: str) -> Dict[str, str]:
    """A new Ed25519 key pair in OpenSSH formats: ``private_key`` (PEM-armoured, unencrypted) and
    ``public_key`` (``ssh-ed25519 AAAA... comment``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return {"private_key": private, "public_key": f"{public} {comment}"}


class SshKeyProvider(ResourceProvider):
    def create(self, props: Dict[str, Any]) -> CreateResult:
        pair = generate(props["comment"])
        created = datetime.datetime.now(datetime.timezone.utc).isoformat()
        return CreateResult(f"ssh-key-{pair['public_key'].split()[1][-16:]}", {**props, **pair, "created_at": created})

    def diff(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> DiffResult:
        changed = olds.get("comment") != news.get("comment")
        return DiffResult(changes=changed, replaces=["comment"] if changed else [], delete_before_replace=False)

    def read(self, id_: str, props: Dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)  # nothing outside the state to compare with


class SshKey(DynamicResource, module="ssh", name="Key"):
    """``pulumi-python:dynamic/ssh:Key``: an Ed25519 key pair kept in state."""

    public_key: pulumi.Output[str]
    private_key: pulumi.Output[str]
    created_at: pulumi.Output[str]
    """When the key was made (ISO 8601, UTC): a machine launched later was launched with it."""

    SECRET_OUTPUTS = ("private_key",)

    def __init__(self, name: str, comment: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(SshKeyProvider(), name, {"comment": comment, "public_key": None, "private_key": None,
                                                  "created_at": None}, opts)
