"""A loopback model server speaking the OpenAI API as vLLM, TGI and llama.cpp's server do: ``/health``,
``/v1/models`` listing the one model it serves, and ``/v1/chat/completions`` answering for that model only
(any other name is a 404, as vLLM answers), and ``/v1/images/generations`` for it as OpenAI's images API
answers (``data`` of ``b64_json`` or ``url`` items, a real PNG), the stand-in for an external image model
a gateway's image alias falls back to. Run as a process (``python -m loopback.openai_server``) it is
the sandbox's stand-in for a model server of the stack's own."""
from __future__ import annotations

import argparse
import base64
import os
import time
from typing import Any, Dict, List, Optional

from loopback.base import FakeServer, Reply


def chat_completion(completion_id: int, model: str, content: str) -> Dict[str, Any]:
    """A non-streamed OpenAI chat completion answering ``content`` for ``model``."""
    return {
        "id": f"chatcmpl-{completion_id}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
    }


class FakeModelServer(FakeServer):
    vendor = "openai-server"

    def __init__(self, served_name: str, name: str = "server", **kw: Any):
        super().__init__(**kw)
        self.served_name, self.name = served_name, name
        self.chats: List[str] = []
        self.images: List[Dict[str, Any]] = []
        """The images requests it answered."""

    def route(self, method: str, path: str, query: Dict[str, str], body: Any) -> Reply:
        if (method, path) == ("GET", "/health"):
            return 200, {}
        if (method, path) == ("GET", "/v1/models"):
            return 200, {"object": "list", "data": [{"id": self.served_name, "object": "model", "created": 0,
                                                     "owned_by": self.name}]}
        if (method, path) == ("POST", "/v1/chat/completions"):
            return self._chat(body)
        if (method, path) == ("POST", "/v1/images/generations"):
            return self._images(body)
        return 404, {"error": {"message": f"no route {method} {path}", "type": "NotFoundError", "code": 404}}

    def _chat(self, body: Dict[str, Any]) -> Reply:
        model = body.get("model")
        if model != self.served_name:
            return 404, {"error": {"message": f"The model `{model}` does not exist.", "type": "NotFoundError",
                                   "param": "model", "code": 404}}
        if body.get("stream"):
            return 400, {"error": {"message": "this loopback server does not stream", "type": "BadRequestError",
                                   "code": 400}}
        with self.lock:
            self.chats.append(model)
        return 200, chat_completion(self.next_id(), model, f"{self.name} answers with {model}")


    def _images(self, body: Dict[str, Any]) -> Reply:
        from loopback.comfyui import png

        model = body.get("model")
        if model != self.served_name:
            return 404, {"error": {"message": f"The model `{model}` does not exist.", "type": "invalid_request_error",
                                   "param": "model", "code": "model_not_found"}}
        with self.lock:
            self.images.append(body)
        b64 = base64.b64encode(png(8, 8, 0xFFFFFF, f"{self.name}: {body.get('prompt', '')}")).decode()
        item = {"b64_json": b64} if body.get("response_format") == "b64_json" else {"url": f"data:image/png;base64,{b64}"}
        return 200, {"created": int(time.time()), "data": [{**item, "revised_prompt": body.get("prompt")}
                                                           for _ in range(int(body.get("n") or 1))]}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loopback.openai_server")
    ap.add_argument("--served-name", required=True)
    ap.add_argument("--name", default=os.environ.get("LOOPBACK_NAME", "server"))
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args(argv)
    server = FakeModelServer(args.served_name, name=args.name, address=args.host, port=args.port)
    server.thread.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
