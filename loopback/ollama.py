"""A loopback server that speaks the part of the Ollama HTTP API the estate uses.

Pulls stream NDJSON progress like the real server (manifest, one line per layer step, verify, write,
success), can fail mid-stream with an error line or a cut connection, and only install the model when
the stream completes. Chat answers name the server, so a test can tell which backend served a request.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from typing import Any, Dict, List, Optional

from loopback.base import FakeServer, Reply, Stream


def digest_of(name: str, version: int = 1) -> str:
    return hashlib.sha256(f"{name}@{version}".encode()).hexdigest()


class FakeOllama(FakeServer):
    vendor = "ollama"

    def __init__(self, name: str = "ollama", state_file: Optional[str] = None, **kw: Any):
        super().__init__(**kw)
        self.name = name
        self.state_file = state_file
        """Where the installed models are kept (the container's data directory), so that, like a real
        Ollama's model store, they outlive a restart or a replaced container."""
        self.installed: Dict[str, Dict[str, Any]] = {}
        if state_file and os.path.exists(state_file):
            with open(state_file) as f:
                self.installed = json.load(f)
        self.library: Dict[str, Dict[str, Any]] = {}
        """Tag -> what a pull installs; a tag missing here gets a digest of its own name."""
        self.unknown: set = set()
        """Tags the registry does not have: their pull ends with an error line."""
        self.pull_steps = 4
        self.pull_delay = 0.0
        self.pull_error: Optional[str] = None
        self.pull_error_after = 2
        self.pull_cut_after: Optional[int] = None
        self.chats: List[str] = []
        self.loaded: List[str] = []
        """Models held in memory (``/api/ps``): as with the real server, a chat or generation loads its model."""

    # -- helpers for tests ---------------------------------------------------------------------------
    def pull_lasts(self, seconds: float, steps: int = 10) -> None:
        """Each pull streams for ``seconds`` in all: its ``steps`` progress lines and the four others
        (manifest, verify, write, success) each come ``seconds / (steps + 4)`` apart."""
        self.pull_steps, self.pull_delay = steps, seconds / (steps + 4)

    def publish(self, tag: str, version: int, size: int = 4_000_000_000) -> str:
        """A new build of ``tag`` in the registry (the next pull installs it)."""
        with self.lock:
            self.library[tag] = {"digest": digest_of(tag, version), "size": size}
            return self.library[tag]["digest"]

    def install(self, tag: str, version: int = 1, size: int = 4_000_000_000) -> str:
        with self.lock:
            self.installed[tag] = {"digest": digest_of(tag, version), "size": size,
                                   "modified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
            return self.installed[tag]["digest"]

    def _save(self) -> None:
        if self.state_file:
            tmp = f"{self.state_file}.tmp"
            with open(tmp, "w") as f:
                json.dump(self.installed, f)
            os.replace(tmp, self.state_file)

    def pulls(self) -> int:
        return self.calls[("POST", "/api/pull")]

    # -- the API ------------------------------------------------------------------------------------
    def route(self, method: str, path: str, query: Dict[str, str], body: Any) -> Reply:
        if (method, path) == ("GET", "/"):
            return 200, "Ollama is running"
        if (method, path) == ("GET", "/api/version"):
            return 200, {"version": "0.12.6"}
        if (method, path) == ("GET", "/api/tags"):
            with self.lock:
                return 200, {"models": [
                    {"name": t, "model": t, "modified_at": m["modified_at"], "size": m["size"], "digest": m["digest"],
                     "details": details(t)} for t, m in sorted(self.installed.items())]}
        if (method, path) == ("GET", "/api/ps"):
            # Ollama's shape (api/types.go ProcessModelResponse): the model, its size in memory and until when.
            with self.lock:
                return 200, {"models": [
                    {"name": t, "model": t, "size": (self.installed.get(t) or {}).get("size", 0),
                     "digest": (self.installed.get(t) or {}).get("digest", ""), "details": details(t),
                     "expires_at": "2099-01-01T00:00:00Z", "size_vram": (self.installed.get(t) or {}).get("size", 0),
                     "context_length": 4096}
                    for t in self.loaded]}
        if (method, path) == ("POST", "/api/show"):
            tag = body.get("model") or body.get("name")
            with self.lock:
                if tag not in self.installed:
                    return 404, {"error": f"model '{tag}' not found"}
                family = details(tag)["family"]
                return 200, {"modelfile": f"# Modelfile of the loopback Ollama\nFROM {tag}\n", "template": "{{ .Prompt }}",
                             "parameters": "num_predict                    24",
                             "details": details(tag), "model_info": {"general.architecture": family},
                             "tensors": [{"name": "token_embd.weight", "type": "F32", "shape": [64, 279]}],
                             "capabilities": ["completion"], "modified_at": self.installed[tag]["modified_at"]}
        if (method, path) == ("DELETE", "/api/delete"):
            tag = body.get("model") or body.get("name")
            with self.lock:
                if self.installed.pop(tag, None) is None:
                    return 404, {"error": f"model '{tag}' not found"}
                self._save()
            return 200, ""
        if (method, path) == ("POST", "/api/pull"):
            return self._pull(body)
        if (method, path) in (("POST", "/api/chat"), ("POST", "/api/generate")):
            return self._chat(path, body)
        return 404, {"error": f"no route {method} {path}"}

    def _pull(self, body: Dict[str, Any]) -> Reply:
        tag = body.get("model") or body.get("name") or ""
        with self.lock:
            build = self.library.get(tag) or {"digest": digest_of(tag), "size": 2_000_000_000}
            error, error_after, cut = self.pull_error, self.pull_error_after, self.pull_cut_after
            self.pull_error, self.pull_cut_after = None, None
        if tag in self.unknown:
            error, error_after = "pull model manifest: file does not exist", 1
        total = build["size"]
        lines: List[Dict[str, Any]] = [{"status": "pulling manifest"}]
        layer = hashlib.sha256(f"layer of {build['digest']}".encode()).hexdigest()  # a blob, not the manifest
        for i in range(1, self.pull_steps + 1):
            lines.append({"status": f"pulling {layer[:12]}", "digest": f"sha256:{layer}", "total": total,
                          "completed": total * i // self.pull_steps})
        lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
        def install() -> None:  # like Ollama, the model is listed once the pull has succeeded
            with self.lock:
                self.installed[tag] = {**build, "modified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
                self._save()

        if error is not None:
            lines = lines[:error_after] + [{"error": error}]
        if body.get("stream") is False:
            if error:
                return 500, {"error": error}
            install()
            return 200, {"status": "success"}
        return 200, Stream(lines, delay=self.pull_delay, cut_after=cut, on_done=None if error else install)

    def _chat(self, path: str, body: Dict[str, Any]) -> Reply:
        tag = body.get("model", "")
        with self.lock:
            if tag not in self.installed:
                return 404, {"error": f"model '{tag}' not found"}
            self.chats.append(tag)
            if tag not in self.loaded:
                self.loaded.append(tag)
        text = f"{self.name} answers with {tag}"
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ")
        stats = {"done_reason": "stop", "total_duration": 1000, "load_duration": 100, "prompt_eval_count": 5,
                 "prompt_eval_duration": 200, "eval_count": 6, "eval_duration": 600}
        if path == "/api/chat":
            def line(content: str, done: bool) -> Dict[str, Any]:
                return {"model": tag, "created_at": now, "message": {"role": "assistant", "content": content},
                        "done": done, **(stats if done else {})}
        else:
            def line(content: str, done: bool) -> Dict[str, Any]:
                return {"model": tag, "created_at": now, "response": content, "done": done,
                        **({"done_reason": stats["done_reason"], "context": [1, 2, 3],
                            **{k: v for k, v in stats.items() if k != "done_reason"}} if done else {})}
        if body.get("stream", True):
            return 200, Stream([line(text, False), line("", True)])
        return 200, line(text, True)


def details(tag: str) -> Dict[str, Any]:
    """What /api/tags and /api/show say of a model's format, as the real server does for a GGUF."""
    family = tag.rsplit("/", 1)[-1].split(":")[0]
    return {"parent_model": "", "format": "gguf", "family": family, "families": [family], "parameter_size": "",
            "quantization_level": "Q4_K_M"}


def main(argv: Optional[List[str]] = None) -> int:
    """Serve as a process (the sandbox's Ollama image runs this), or with ``--list`` answer like
    ``ollama list``: exit 0 when the server on ``--port`` answers (the compose healthcheck)."""
    ap = argparse.ArgumentParser(prog="python -m loopback.ollama")
    ap.add_argument("--host", default=os.environ.get("LOOPBACK_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("LOOPBACK_PORT", "11434")))
    ap.add_argument("--name", default=os.environ.get("LOOPBACK_NAME", "ollama"))
    ap.add_argument("--state", default=os.environ.get("LOOPBACK_STATE"), help="file that keeps installed models")
    ap.add_argument("--list", action="store_true", help="print the installed models of a running server")
    args = ap.parse_args(argv)
    if args.list:
        with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/api/tags", timeout=5) as r:
            for m in json.load(r)["models"]:
                print(m["name"])
        return 0
    server = FakeOllama(name=args.name, state_file=args.state, address=args.host, port=args.port)
    print(f"loopback ollama {args.name} on {args.host}:{server.httpd.server_address[1]}", flush=True)
    # As a container's first process it gets SIGTERM on `docker stop`: stop at once, as Ollama does.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.httpd.shutdown).start())
    with contextlib.suppress(KeyboardInterrupt):
        while server.thread.is_alive():
            server.thread.join(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
