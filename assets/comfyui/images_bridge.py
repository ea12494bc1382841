"""OpenAI's images API in front of ComfyUI: ``POST /v1/images/generations`` becomes a ComfyUI prompt and
its PNGs come back as ``b64_json`` or a ``data:`` URL.

It runs beside ComfyUI on its node (the Python of ComfyUI's own image, standard library only) and is what
the gateway's image aliases reach through the node's tunnel. Each request:

1. picks the workflow its ``model`` names from ``config.json`` (written by the estate), loads the
   workflow's template (ComfyUI's API format, ``workflows/<template>.json``) and puts the request's values
   where the template holds ``{"$param": <name>}``: prompt, width, height, batch_size (``n``), seed, steps.
   The template is parsed JSON and the values are set into it as data, never spliced into its text;
2. posts it to ComfyUI's ``/prompt`` and polls ``/history/<prompt_id>`` until it is done, at most the
   request's timeout (``X-Estate-Timeout``, the gateway alias's, held to the workflow's), else the
   workflow's; past it the prompt is taken off ComfyUI's queue (``POST /queue`` delete, ``/interrupt`` if
   it is the one running);
3. fetches each image through ``/view`` (answered as ``b64_json``, as a ``data:`` URL, or both when the
   request names no ``response_format``) and, unless the config keeps outputs for some seconds, deletes
   the prompt from ComfyUI's history (``POST /history`` delete) and its files from the output directory.

Errors are OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``) with statuses that let the
gateway fall back: 400 for a bad request, 503 when ComfyUI is down or out of GPU memory, 504 past the
timeout, 500 for a prompt ComfyUI refused or failed.
"""
from __future__ import annotations

import argparse
import base64
import copy
import json
import math
import os
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_PROMPT_CHARS = 32000
MAX_IMAGES = 4
MAX_SIDE = 2048
POLL_SECONDS = 0.25
QUALITIES = ("standard", "hd", "low", "medium", "high", "auto")
"""OpenAI's values; the workflow's steps decide the quality, so each is accepted and none changes it."""
PARAMS = ("prompt", "width", "height", "batch_size", "seed", "steps")


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str, param: Optional[str] = None,
                 code: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def body(self) -> Dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str) -> ApiError:
    return ApiError(400, message, "invalid_request_error", param, "invalid_value")


def fill(template: Any, values: Dict[str, Any]) -> Any:
    """The template with every ``{"$param": name}`` replaced by ``values[name]``: a JSON value, so a
    prompt holding quotes, braces or newlines stays one string."""
    if isinstance(template, dict):
        if set(template) == {"$param"}:
            name = template["$param"]
            if name not in values:
                raise KeyError(f"the template asks for {name!r}, which is none of {sorted(values)}")
            return values[name]
        return {k: fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    return template


def parse_size(size: Any) -> Tuple[int, int]:
    m = re.fullmatch(r"([0-9]{2,4})x([0-9]{2,4})", str(size or "1024x1024"))
    if not m:
        raise bad_request(f"size is WIDTHxHEIGHT, as 1024x1024 (got {size!r})", "size")
    w, h = int(m.group(1)), int(m.group(2))
    if not (64 <= w <= MAX_SIDE and 64 <= h <= MAX_SIDE) or w % 16 or h % 16:
        raise bad_request(f"size sides are multiples of 16 from 64 to {MAX_SIDE} (got {size!r})", "size")
    return w, h


class Bridge:
    """The translation, apart from HTTP serving so it can be driven directly."""

    def __init__(self, config: Dict[str, Any], workflows_dir: str = os.path.join(HERE, "workflows")):
        self.comfyui = config.get("comfyui", "http://127.0.0.1:8188").rstrip("/")
        self.workflows: Dict[str, Dict[str, Any]] = config.get("workflows", {})
        self.keep_seconds = float(config.get("keep_outputs_seconds", 0))
        self.output_dir: Optional[str] = config.get("output_dir")
        self.workflows_dir = workflows_dir
        self.client_id = str(uuid.uuid4())

    # -- ComfyUI's API ---------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.comfyui + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            raise ApiError(503, f"ComfyUI does not answer at {self.comfyui} ({e})", "server_error",
                           code="comfyui_unavailable")

    def _json(self, method: str, path: str, body: Any = None) -> Tuple[int, Any]:
        status, raw = self._call(method, path, body)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    # -- one request ------------------------------------------------------------------------------------

    def template(self, name: str) -> Dict[str, Any]:
        with open(os.path.join(self.workflows_dir, f"{name}.json"), encoding="utf-8") as f:
            return json.load(f)

    def build(self, body: Dict[str, Any]) -> Tuple[str, Dict[str, Any], Dict[str, Any], float]:
        """(workflow name, ComfyUI prompt, its template, the workflow's timeout) for an OpenAI request."""
        if not isinstance(body, dict):
            raise bad_request("the body is a JSON object", "body")
        model = body.get("model")
        if model not in self.workflows:
            raise ApiError(404, f"no workflow {model!r} here; there are {sorted(self.workflows)}",
                           "invalid_request_error", "model", "model_not_found")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise bad_request("prompt is a non-empty string", "prompt")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise bad_request(f"prompt is at most {MAX_PROMPT_CHARS} characters (got {len(prompt)})", "prompt")
        n = body.get("n", 1) if body.get("n") is not None else 1
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_IMAGES:
            raise bad_request(f"n is 1 to {MAX_IMAGES} (got {n!r})", "n")
        if body.get("quality") not in (None, *QUALITIES):
            raise bad_request(f"quality is one of {', '.join(QUALITIES)} (got {body.get('quality')!r})", "quality")
        if body.get("response_format") not in (None, "url", "b64_json"):
            raise bad_request(f"response_format is url or b64_json (got {body.get('response_format')!r})",
                              "response_format")
        seed = body.get("seed")
        if seed is None:
            seed = random.randrange(0, 2 ** 63)
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2 ** 64:
            raise bad_request(f"seed is an integer from 0 to 2^64-1 (got {seed!r})", "seed")
        width, height = parse_size(body.get("size"))
        wf = self.workflows[model]
        template = self.template(wf["template"])
        steps = int(wf.get("steps") or template.get("defaults", {}).get("steps", 20))
        values = {"prompt": prompt, "width": width, "height": height, "batch_size": n, "seed": seed, "steps": steps}
        return model, fill(copy.deepcopy(template["prompt"]), values), template, float(wf.get("timeout", 300))

    def generate(self, body: Dict[str, Any], timeout: Optional[float] = None) -> Dict[str, Any]:
        name, graph, template, wf_timeout = self.build(body)
        # The request's timeout bounds the wait only below the workflow's: the wait loop ends at one or the other.
        limit = min(timeout, wf_timeout) if timeout else wf_timeout
        status, answer = self._json("POST", "/prompt", {"prompt": graph, "client_id": self.client_id})
        if status != 200 or not isinstance(answer, dict) or "prompt_id" not in answer:
            detail = answer.get("error", answer) if isinstance(answer, dict) else answer
            raise ApiError(500, f"ComfyUI refused the {name} workflow's prompt ({status}): {json.dumps(detail)[:500]}",
                           "server_error", code="comfyui_prompt_refused")
        prompt_id = answer["prompt_id"]
        entry = self._wait(prompt_id, limit)
        try:
            images = self._images(entry, template.get("output"))
            blobs = [self._view(img) for img in images]
        finally:
            self._forget(prompt_id, entry)
        # Without a response_format each image comes both ways: LiteLLM's OpenAI route forwards none for a
        # model that is not DALL-E's (``llms/openai/image_generation``), so the bridge cannot know which of
        # the two the client asked for.
        fmt = body.get("response_format")
        data = []
        for blob in blobs:
            b64 = base64.b64encode(blob).decode()
            item = {}
            if fmt in (None, "b64_json"):
                item["b64_json"] = b64
            if fmt in (None, "url"):
                item["url"] = f"data:image/png;base64,{b64}"
            item["revised_prompt"] = body["prompt"]
            data.append(item)
        return {"created": int(time.time()), "data": data}

    def _wait(self, prompt_id: str, limit: float) -> Dict[str, Any]:
        deadline = time.monotonic() + limit
        while True:
            status, history = self._json("GET", f"/history/{urllib.parse.quote(prompt_id)}")
            entry = history.get(prompt_id) if status == 200 and isinstance(history, dict) else None
            if entry is not None:  # ComfyUI writes the history entry when the prompt ends, done or failed
                return self._checked(prompt_id, entry)
            if time.monotonic() >= deadline:
                self._cancel(prompt_id)
                raise ApiError(504, f"ComfyUI did not finish the prompt within {limit:g} s (busy or stuck); "
                                    "it was taken off its queue", "server_error", code="timeout")
            time.sleep(POLL_SECONDS)

    def _checked(self, prompt_id: str, entry: Dict[str, Any]) -> Dict[str, Any]:
        status = entry.get("status") or {}
        if status.get("status_str") != "error":
            return entry
        self._forget(prompt_id, entry)
        error = next((m[1] for m in status.get("messages", [])
                      if isinstance(m, list) and len(m) == 2 and m[0] == "execution_error"), {})
        kind = str(error.get("exception_type", ""))
        message = str(error.get("exception_message", "")).strip()
        where = f"{error.get('node_type', '?')} node {error.get('node_id', '?')}"
        if "OutOfMemory" in kind or "out of memory" in message.lower():
            raise ApiError(503, f"the GPU ran out of memory in {where}: {message[:300]}", "server_error",
                           code="out_of_memory")
        raise ApiError(500, f"ComfyUI failed the prompt in {where}: {kind}: {message[:300]}", "server_error",
                       code="comfyui_prompt_failed")

    def _cancel(self, prompt_id: str) -> None:
        try:
            self._json("POST", "/queue", {"delete": [prompt_id]})
            status, queue = self._json("GET", "/queue")
            running = queue.get("queue_running", []) if status == 200 and isinstance(queue, dict) else []
            if any(isinstance(item, list) and len(item) > 1 and item[1] == prompt_id for item in running):
                self._json("POST", "/interrupt", {})
                # The interrupted prompt ends with a history entry of its own: drop it too, once written.
                for _ in range(20):
                    status, history = self._json("GET", f"/history/{urllib.parse.quote(prompt_id)}")
                    if status == 200 and isinstance(history, dict) and prompt_id in history:
                        self._forget(prompt_id, history[prompt_id])
                        break
                    time.sleep(POLL_SECONDS)
        except ApiError:
            pass

    @staticmethod
    def _images(entry: Dict[str, Any], output: Optional[str]) -> List[Dict[str, str]]:
        outputs = entry.get("outputs") or {}
        nodes = [outputs[output]] if output in outputs else list(outputs.values())
        images = [img for node in nodes for img in (node or {}).get("images", []) if img.get("type", "output") == "output"]
        if not images:
            raise ApiError(500, "ComfyUI finished the prompt without an output image", "server_error",
                           code="comfyui_no_image")
        return images

    def _view(self, image: Dict[str, str]) -> bytes:
        query = urllib.parse.urlencode({"filename": image["filename"], "subfolder": image.get("subfolder", ""),
                                        "type": image.get("type", "output")})
        status, blob = self._call("GET", f"/view?{query}")
        if status != 200 or not blob.startswith(PNG_MAGIC):
            raise ApiError(500, f"ComfyUI's /view gave no PNG for {image['filename']} ({status})", "server_error",
                           code="comfyui_no_image")
        return blob

    def _forget(self, prompt_id: str, entry: Optional[Dict[str, Any]]) -> None:
        """Drop the prompt from ComfyUI's history and its files from the output directory, now or after
        ``keep_outputs_seconds``."""
        def forget() -> None:
            try:
                self._json("POST", "/history", {"delete": [prompt_id]})
            except ApiError:
                pass
            if self.output_dir and entry:
                root = os.path.realpath(self.output_dir)
                for node in (entry.get("outputs") or {}).values():
                    for img in (node or {}).get("images", []):
                        if img.get("type", "output") != "output":
                            continue
                        path = os.path.realpath(os.path.join(root, img.get("subfolder", ""), img["filename"]))
                        if os.path.commonpath([root, path]) == root and os.path.isfile(path):
                            os.remove(path)
        if self.keep_seconds > 0:
            timer = threading.Timer(self.keep_seconds, forget)
            timer.daemon = True
            timer.start()
        else:
            forget()

    def healthy(self) -> bool:
        try:
            return self._call("GET", "/system_stats", timeout=5)[0] == 200
        except ApiError:
            return False


def serve(bridge: Bridge, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                ok = bridge.healthy()
                self._send(200 if ok else 503, {"comfyui": "up" if ok else "down"})
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": n, "object": "model", "created": 0,
                                                             "owned_by": "comfyui"} for n in sorted(bridge.workflows)]})
            else:
                self._send(404, ApiError(404, f"no route GET {self.path}", "invalid_request_error").body())

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path.rstrip("/") != "/v1/images/generations":
                self._send(404, ApiError(404, f"no route POST {self.path}", "invalid_request_error").body())
                return
            try:
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    raise bad_request("the body is not JSON", "body")
                timeout = None
                header = self.headers.get("X-Estate-Timeout")
                if header:
                    try:
                        timeout = float(header)
                    except ValueError:
                        timeout = math.nan
                    if not math.isfinite(timeout):  # nan or inf would make the wait for ComfyUI unbounded
                        raise bad_request(f"X-Estate-Timeout is seconds (got {header!r})", "X-Estate-Timeout")
                    timeout = max(1.0, timeout)
                self._send(200, bridge.generate(body, timeout))
            except ApiError as e:
                self._send(e.status, e.body())
            except Exception as e:  # an answer, never a dropped connection
                self._send(500, ApiError(500, f"the bridge failed: {type(e).__name__}: {e}", "server_error").body())

    httpd = ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    return httpd


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=os.path.join(HERE, "config.json"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8189)
    args = ap.parse_args(argv)
    with open(args.config, encoding="utf-8") as f:
        config = json.load(f)
    httpd = serve(Bridge(config), args.host, args.port)
    print(f"images bridge on {args.host}:{httpd.server_address[1]} -> {config.get('comfyui')}", flush=True)
    httpd.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
