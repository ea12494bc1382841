"""A loopback server that speaks the part of the Ollama HTTP API the estate uses.

Pulls stream NDJSON progress like the real server (manifest, one line per layer step, verify, write,
success), can fail mid-stream with an error line or a cut connection, and only install the model when
the stream completes. Chat answers name the server, so a test can tell which backend served a request.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any, Dict, List, Optional

from loopback.base import FakeServer, Reply, Stream


def digest_of(name: str, version: int = 1) -> str:
    return hashlib.sha256(f"{name}@{version}".encode()).hexdigest()


class FakeOllama(FakeServer):
    vendor = "ollama"

    def __init__(self, name: str = "ollama", **kw: Any):
        super().__init__(**kw)
        self.name = name
        self.installed: Dict[str, Dict[str, Any]] = {}
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

    # -- helpers for tests ---------------------------------------------------------------------------
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
                     "details": {"family": t.split(":")[0], "parameter_size": "", "quantization_level": "Q4_K_M"}}
                    for t, m in sorted(self.installed.items())]}
        if (method, path) == ("GET", "/api/ps"):
            return 200, {"models": []}
        if (method, path) == ("POST", "/api/show"):
            tag = body.get("model") or body.get("name")
            with self.lock:
                if tag not in self.installed:
                    return 404, {"error": f"model '{tag}' not found"}
                return 200, {"details": {}, "modified_at": self.installed[tag]["modified_at"]}
        if (method, path) == ("DELETE", "/api/delete"):
            tag = body.get("model") or body.get("name")
            with self.lock:
                if self.installed.pop(tag, None) is None:
                    return 404, {"error": f"model '{tag}' not found"}
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
        layer = f"sha256:{build['digest'][:12]}"
        for i in range(1, self.pull_steps + 1):
            lines.append({"status": f"pulling {layer}", "digest": layer, "total": total,
                          "completed": total * i // self.pull_steps})
        lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
        def install() -> None:  # like Ollama, the model is listed once the pull has succeeded
            with self.lock:
                self.installed[tag] = {**build, "modified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ")}

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
                return 404, {"error": f"model '{tag}' not found, try pulling it first"}
            self.chats.append(tag)
        text = f"{self.name} answers with {tag}"
        done = {"model": tag, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"), "done": True, "done_reason": "stop",
                "prompt_eval_count": 5, "eval_count": 6, "total_duration": 1000}
        if path == "/api/chat":
            message = {"role": "assistant", "content": text}
            if body.get("stream", True):
                return 200, Stream([{"model": tag, "message": message, "done": False},
                                    {**done, "message": {"role": "assistant", "content": ""}}])
            return 200, {**done, "message": message}
        if body.get("stream", True):
            return 200, Stream([{"model": tag, "response": text, "done": False}, {**done, "response": ""}])
        return 200, {**done, "response": text}
