"""Small text helpers every layer shares: the hash triggers compare, and the shell that writes files
and secret bundles on a host without putting their content on a command line."""
from __future__ import annotations

import base64
import hashlib
from typing import List, Mapping, Tuple


def digest(text: str) -> str:
    """sha256 of a text, hex: what triggers and config hashes compare."""
    return hashlib.sha256(text.encode()).hexdigest()


def heredoc_script(files: Mapping[str, str], mode: str = "0644") -> str:
    """Shell that writes each file with a quoted heredoc (no expansion) whose end marker is not in it."""
    lines = ["set -eu"]
    for path, content in files.items():
        marker = "ESTATE_" + digest(content)[:12].upper()
        lines += [f"install -d -m 0755 \"$(dirname {path})\"",
                  f"cat > {path}.tmp <<'{marker}'", content.rstrip("\n"), marker,
                  f"chmod {mode} {path}.tmp && mv {path}.tmp {path}"]
    return "\n".join(lines) + "\n"


def bare_key(key: str) -> str:
    """An OpenSSH public key as ``<type> <base64>``, its comment dropped: the form keys are pinned and
    compared in."""
    return " ".join(key.split()[:2])


def known_hosts_line(host: str, port: int, host_key: str) -> str:
    """A ``known_hosts`` line for one host key (``[host]:port`` unless the port is 22)."""
    name = host if int(port) == 22 else f"[{host}]:{int(port)}"
    return f"{name} {bare_key(host_key)}"


def secret_bundle(files: List[Tuple[str, str]]) -> str:
    """Secret files as ``<path> <base64>`` lines, for ``install_secrets`` on the host's stdin."""
    return "".join(f"{path} {base64.b64encode(content.encode()).decode()}\n" for path, content in files)


RUN_STDIN = 'f="$(mktemp)" && cat > "$f" && { bash "$f" </dev/null; s=$?; rm -f "$f"; exit $s; }'
"""The command that runs the script it is given on stdin. A script sent as the SSH command itself is one
argument of ``sh -c`` on the host, which Linux caps at 128 KiB (MAX_ARG_STRLEN: "Argument list too long");
the gateway host's deploy carries the estate's modules and outgrew it. Kept in a file first, so nothing the
script runs (apt-get, systemctl) can read the rest of it from stdin."""


def install_secrets(manifest: str) -> str:
    """The shell that writes a ``secret_bundle`` from stdin: each file 0600 in a 0700 directory, replaced
    atomically, and every file the previous bundle wrote that this one no longer names removed. The
    paths written are kept in ``manifest`` (a fixed path, never a stack value), so a rotated or dropped
    secret leaves no old copy on the host."""
    return ('set -eu; umask 077; new="$(mktemp)"; '
            'while read -r path data; do install -d -m 0700 "$(dirname "$path")"; '
            'printf "%s" "$data" | base64 -d > "$path.tmp"; mv "$path.tmp" "$path"; '
            'printf "%s\\n" "$path" >> "$new"; done; '
            f'if [ -f {manifest} ]; then grep -vxF -f "$new" {manifest} | while read -r old; do rm -f "$old"; done; fi; '
            f'install -d -m 0700 "$(dirname {manifest})"; mv "$new" {manifest}')

