"""An EC2 VM's SSH host keys as its own console printed them: the key to pin before first contact.

cloud-init prints the VM's host keys to the serial console once they exist (its ``keys_to_console``
module, through ``write-ssh-key-fingerprints``) between ``-----BEGIN SSH HOST KEY KEYS-----`` and
``-----END SSH HOST KEY KEYS-----``. EC2 hands that console to the account through its API
(``GetConsoleOutput``), authenticated and over TLS, so a key read there is the key the VM itself made,
whoever answers at its address. This is the check AWS documents for a new instance's fingerprint, and it
needs nothing in the VM's user-data: a running VM is neither changed nor re-launched to be pinned.

The read uses the AWS SDK's own credential chain (environment, profile, role) and region; the endpoint
can be pointed elsewhere the SDK's way (``AWS_ENDPOINT_URL_EC2``).
"""
from __future__ import annotations

import base64
import re
from typing import Dict, Optional

BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
END = "-----END SSH HOST KEY KEYS-----"
_KEY = re.compile(r"(?:^|\s)((?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)) [A-Za-z0-9+/]+={0,3})(?:\s|$)")


class ConsoleError(RuntimeError):
    """The console could not be read (credentials, permission, no such instance)."""


def host_keys(console: str) -> Dict[str, str]:
    """``{type: "<type> <base64>"}`` from the last complete host-key block of a console text. Lines the
    kernel or other services interleave (timestamps, ``\\r``) are skipped; a block never closed (the
    console cut it off) counts for nothing."""
    found: Dict[str, str] = {}
    block: Optional[Dict[str, str]] = None
    for line in console.replace("\r", "\n").split("\n"):
        if BEGIN in line:
            block = {}
        elif END in line:
            if block:
                found = block
            block = None
        elif block is not None:
            match = _KEY.search(line)
            if match:
                key = match.group(1)
                block[key.split()[0]] = key
    return found


def console_output(instance_id: str, region: Optional[str] = None) -> str:
    """The VM's console text (the latest the API gives; empty before the VM has printed any)."""
    import boto3
    import botocore.exceptions

    try:
        client = boto3.client("ec2", region_name=region or None)
        answer = client.get_console_output(InstanceId=instance_id, Latest=True)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise ConsoleError(f"the EC2 console of {instance_id} could not be read: {exc}") from exc
    output = answer.get("Output") or ""
    # The SDK hands the console over as the API sends it, base64-encoded.
    try:
        return base64.b64decode(output, validate=True).decode("utf-8", "replace")
    except ValueError:
        return output
