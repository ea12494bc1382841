"""A loopback ComfyUI: the server routes the estate's images bridge uses, with the shapes ComfyUI answers.

ComfyUI cannot run here (it needs torch and a GPU), so each shape below is taken from its source,
comfyanonymous/ComfyUI:

- ``GET /object_info`` and ``/object_info/{node_class}``: ``server.py`` ``node_info`` (``input``,
  ``input_order``, ``output``, ``output_is_list``, ``output_name``, ``name``, ``display_name``,
  ``description``, ``python_module``, ``category``, ``output_node``). The node definitions (``NODES``) are
  the ``INPUT_TYPES`` and ``RETURN_TYPES`` of ``nodes.py`` at e60e19b (CheckpointLoaderSimple, UNETLoader,
  DualCLIPLoader, VAELoader, CLIPTextEncode, KSampler, EmptyLatentImage, VAEDecode, SaveImage) and of
  ``comfy_extras/nodes_sd3.py`` (EmptySD3LatentImage) and ``comfy_extras/nodes_flux.py`` (FluxGuidance);
  the sampler and scheduler lists are ``comfy/samplers.py``'s ``KSampler.SAMPLERS`` / ``SCHEDULERS``; a
  loader's file list is what its models folder holds (``folder_paths.get_filename_list``).
- ``POST /prompt``: ``server.py`` ``post_prompt``: ``{"prompt_id", "number", "node_errors"}``, or 400 with
  ``{"error", "node_errors"}`` from ``execution.py`` ``validate_prompt`` / ``validate_inputs``, whose checks
  are made here the same way (unknown class, missing required input, a link that is not
  ``[node_id, slot]`` or whose type differs, a widget value that does not convert, is out of min/max or not
  in its list, no output node).
- ``GET /history/{prompt_id}``, ``POST /history`` (``delete``/``clear``): ``server.py``; an entry is written
  when a prompt ends (``execution.py`` ``PromptQueue.task_done``): ``prompt`` (the queue item
  ``[number, prompt_id, prompt, extra_data, outputs_to_execute]``), ``outputs`` (SaveImage's
  ``{"images": [{"filename", "subfolder", "type": "output"}]}``), ``status``
  (``ExecutionStatus``: ``status_str``, ``completed``, ``messages`` of ``[event, data]``); a failure's
  ``execution_error`` data is ``PromptExecutor.handle_execution_error``'s (``prompt_id``, ``node_id``,
  ``node_type``, ``executed``, ``exception_message``, ``exception_type``, ``traceback``, ``current_inputs``,
  ``current_outputs``). Out of memory is ``torch.OutOfMemoryError`` with the hint ComfyUI appends.
- ``GET /queue`` (``queue_running``, ``queue_pending``), ``POST /queue`` (``delete``/``clear``),
  ``POST /interrupt``, ``GET /prompt`` (``exec_info.queue_remaining``), ``GET /system_stats``
  (``system``, ``devices``), ``GET /view`` (``filename``, ``subfolder``, ``type``; 400 on a path with ``..``,
  404 when missing): ``server.py``. SaveImage's file names are ``<prefix>_<counter:05>_.png`` in the
  prefix's subfolder (``folder_paths.get_save_image_path``).

It renders a real PNG (1/16th of the asked size, coloured by the seed, the prompt in a text chunk), and
can be told to fault: ``fault = "stuck"`` (the prompt never ends), ``"fail"`` (it fails in KSampler),
``"oom"`` (the GPU runs out of memory), or ``kill()`` (ComfyUI down).
"""
from __future__ import annotations

import argparse
import os
import struct
import tempfile
import threading
import time
import uuid
import zlib
from typing import Any, Dict, List, Optional, Tuple

from loopback.base import FakeServer, Reply

MAX_RESOLUTION = 8192
SAMPLERS = ["euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
            "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
            "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
            "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis", "ddim", "uni_pc",
            "uni_pc_bh2"]
SCHEDULERS = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta"]

DEFAULT_MODELS = {
    "checkpoints": ["sd3.5_large_fp8_scaled.safetensors", "sdxl_lightning_4step.safetensors"],
    "unet": ["flux1-dev.safetensors"],
    "clip": ["clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors"],
    "vae": ["ae.safetensors"],
}
"""What the loopback's models folders hold: the files the estate's three workflows load."""


def _size(default: int, step: int) -> Tuple[str, Dict[str, Any]]:
    return ("INT", {"default": default, "min": 16, "max": MAX_RESOLUTION, "step": step})


def node_definitions(models: Dict[str, List[str]]) -> Dict[str, Dict[str, Any]]:
    """class -> (INPUT_TYPES, RETURN_TYPES, OUTPUT_NODE, CATEGORY), as ComfyUI defines them."""
    files = lambda folder: (list(models.get(folder, [])),)  # noqa: E731 - folder_paths.get_filename_list
    latent = lambda default, step: {"required": {  # noqa: E731
        "width": _size(default, step), "height": _size(default, step),
        "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}
    return {
        "CheckpointLoaderSimple": ({"required": {"ckpt_name": files("checkpoints")}},
                                   ("MODEL", "CLIP", "VAE"), False, "loaders"),
        "UNETLoader": ({"required": {"unet_name": files("unet"),
                                     "weight_dtype": (["default", "fp8_e4m3fn", "fp8_e5m2"],)}},
                       ("MODEL",), False, "advanced/loaders"),
        "DualCLIPLoader": ({"required": {"clip_name1": files("clip"), "clip_name2": files("clip"),
                                         "type": (["sdxl", "sd3", "flux"],)}},
                           ("CLIP",), False, "advanced/loaders"),
        "VAELoader": ({"required": {"vae_name": files("vae")}}, ("VAE",), False, "loaders"),
        "CLIPTextEncode": ({"required": {"text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                                         "clip": ("CLIP",)}}, ("CONDITIONING",), False, "conditioning"),
        "FluxGuidance": ({"required": {"conditioning": ("CONDITIONING",),
                                       "guidance": ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1})}},
                         ("CONDITIONING",), False, "advanced/conditioning/flux"),
        "KSampler": ({"required": {
            "model": ("MODEL",),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            "sampler_name": (SAMPLERS,), "scheduler": (SCHEDULERS,),
            "positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "latent_image": ("LATENT",),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}},
            ("LATENT",), False, "sampling"),
        "EmptyLatentImage": (latent(512, 8), ("LATENT",), False, "latent"),
        "EmptySD3LatentImage": (latent(1024, 16), ("LATENT",), False, "latent/sd3"),
        "VAEDecode": ({"required": {"samples": ("LATENT",), "vae": ("VAE",)}}, ("IMAGE",), False, "latent"),
        "SaveImage": ({"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})},
                       "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}},
                      (), True, "image"),
    }


def png(width: int, height: int, seed: int, text: str) -> bytes:
    """A real PNG: RGB, one colour from the seed with a diagonal stripe, and the prompt as a tEXt chunk."""
    r, g, b = seed & 0xFF, (seed >> 8) & 0xFF, (seed >> 16) & 0xFF
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            row += bytes((255 - r, 255 - g, 255 - b)) if (x + y) % 8 < 2 else bytes((r, g, b))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"tEXt", b"prompt\x00" + text.encode("latin-1", "replace"))
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


class FakeComfyUI(FakeServer):
    vendor = "comfyui"

    def __init__(self, models: Optional[Dict[str, List[str]]] = None, seconds: float = 0.05, **kw: Any):
        super().__init__(**kw)
        self.models = dict(DEFAULT_MODELS if models is None else models)
        self.nodes = node_definitions(self.models)
        self.seconds = seconds
        """How long one prompt runs."""
        self.fault: Optional[str] = None
        """None, ``stuck``, ``fail`` or ``oom``: what the next prompts do."""
        self.output_dir = tempfile.mkdtemp(prefix="loopback-comfyui-output-")
        self.queue: List[list] = []
        self.running: Dict[int, list] = {}
        self.history: Dict[str, Dict[str, Any]] = {}
        self.prompts: List[Dict[str, Any]] = []
        """Every prompt accepted, as received (what the bridge sent)."""
        self.deleted: List[str] = []
        """Prompt ids deleted from the queue or the history."""
        self.interrupted = 0
        self._number = 0
        self._counter = 0
        self._interrupt = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.worker = threading.Thread(target=self._work, daemon=True)
        self.worker.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._interrupt.set()
        super().close()

    @classmethod
    def _reply(cls, h: Any, status: int, reply: Any, headers: Optional[Dict[str, str]] = None) -> None:
        if isinstance(reply, bytes):
            h.send_response(status)
            h.send_header("Content-Type", "image/png")
            h.send_header("Content-Length", str(len(reply)))
            for name, value in (headers or {}).items():
                h.send_header(name, value)
            h.end_headers()
            h.wfile.write(reply)
            return
        super()._reply(h, status, reply, headers)

    # -- routes ---------------------------------------------------------------------------------------------

    def route(self, method: str, path: str, query: Dict[str, str], body: Any) -> Reply:
        if path.startswith("/api/"):
            path = path[4:]  # server.py serves every route under /api too
        if (method, path) == ("GET", "/object_info"):
            return 200, {name: self.node_info(name) for name in self.nodes}
        if method == "GET" and path.startswith("/object_info/"):
            name = path.split("/", 2)[2]
            return 200, ({name: self.node_info(name)} if name in self.nodes else {})
        if (method, path) == ("GET", "/system_stats"):
            return 200, self.system_stats()
        if (method, path) == ("GET", "/prompt"):
            with self.lock:
                return 200, {"exec_info": {"queue_remaining": len(self.queue) + len(self.running)}}
        if (method, path) == ("POST", "/prompt"):
            return self._post_prompt(body)
        if (method, path) == ("GET", "/queue"):
            with self.lock:
                return 200, {"queue_running": list(self.running.values()), "queue_pending": list(self.queue)}
        if (method, path) == ("POST", "/queue"):
            with self.lock:
                if body.get("clear"):
                    self.queue.clear()
                for pid in body.get("delete", []):
                    self.queue = [item for item in self.queue if item[1] != pid]
                    self.deleted.append(pid)
            return 200, ""
        if (method, path) == ("POST", "/interrupt"):
            self.interrupted += 1
            self._interrupt.set()
            return 200, ""
        if (method, path) == ("GET", "/history"):
            with self.lock:
                return 200, dict(self.history)
        if method == "GET" and path.startswith("/history/"):
            pid = path.split("/", 2)[2]
            with self.lock:
                return 200, ({pid: self.history[pid]} if pid in self.history else {})
        if (method, path) == ("POST", "/history"):
            with self.lock:
                if body.get("clear"):
                    self.history.clear()
                for pid in body.get("delete", []):
                    self.history.pop(pid, None)
                    self.deleted.append(pid)
            return 200, ""
        if (method, path) == ("GET", "/view"):
            return self._view(query)
        return 404, "404: Not Found"

    def node_info(self, name: str) -> Dict[str, Any]:
        inputs, outputs, output_node, category = self.nodes[name]
        return {"input": inputs, "input_order": {k: list(v) for k, v in inputs.items()},
                "output": list(outputs), "output_is_list": [False] * len(outputs), "output_name": list(outputs),
                "name": name, "display_name": name, "description": "", "python_module": "nodes",
                "category": category, "output_node": output_node}

    def system_stats(self) -> Dict[str, Any]:
        return {"system": {"os": "posix", "ram_total": 32 * 2 ** 30, "ram_free": 24 * 2 ** 30,
                           "comfyui_version": "0.3.10", "python_version": "3.12.7", "pytorch_version": "2.5.1+cu124",
                           "embedded_python": False, "argv": ["main.py", "--listen", "0.0.0.0"]},
                "devices": [{"name": "cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync", "type": "cuda", "index": 0,
                             "vram_total": 24 * 2 ** 30, "vram_free": 22 * 2 ** 30,
                             "torch_vram_total": 0, "torch_vram_free": 0}]}

    def _view(self, query: Dict[str, str]) -> Reply:
        filename = query.get("filename", "")
        if not filename:
            return 404, ""
        if filename[0] == "/" or ".." in filename or ".." in query.get("subfolder", ""):
            return 400, ""
        if query.get("type", "output") != "output":
            return 404, ""
        path = os.path.join(self.output_dir, query.get("subfolder", ""), os.path.basename(filename))
        if not os.path.isfile(path):
            return 404, ""
        with open(path, "rb") as f:
            return 200, f.read()

    # -- validation, as execution.validate_prompt -----------------------------------------------------------

    def validate(self, prompt: Any) -> Tuple[bool, Any, List[str], Dict[str, Any]]:
        if not isinstance(prompt, dict):
            return False, {"type": "invalid_prompt", "message": "Cannot execute because the prompt is not a dict",
                           "details": "", "extra_info": {}}, [], {}
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or node.get("class_type") not in self.nodes:
                cls = node.get("class_type") if isinstance(node, dict) else None
                return False, {"type": "invalid_prompt",
                               "message": f"Cannot execute because node {cls} does not exist.",
                               "details": f"Node ID '#{node_id}'", "extra_info": {}}, [], {}
        outputs = [nid for nid, node in prompt.items() if self.nodes[node["class_type"]][2]]
        if not outputs:
            return False, {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "",
                           "extra_info": {}}, [], {}
        node_errors = {}
        for nid, node in prompt.items():
            errors = self.node_errors(prompt, node)
            if errors:
                node_errors[nid] = {"errors": errors, "dependent_outputs": outputs, "class_type": node["class_type"]}
        if node_errors:
            details = "\n".join(f"{e['message']}: {e['details']}" for v in node_errors.values() for e in v["errors"])
            return False, {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                           "details": details, "extra_info": {}}, [], node_errors
        return True, None, outputs, {}

    def node_errors(self, prompt: Dict[str, Any], node: Dict[str, Any]) -> List[Dict[str, Any]]:
        required = self.nodes[node["class_type"]][0]["required"]
        inputs = node.get("inputs") or {}
        errors = []
        for name, info in required.items():
            kind = info[0]
            opts = info[1] if len(info) > 1 else {}
            if name not in inputs:
                errors.append({"type": "required_input_missing", "message": "Required input is missing",
                               "details": name, "extra_info": {"input_name": name}})
                continue
            val = inputs[name]
            if isinstance(val, list):
                if len(val) != 2 or str(val[0]) not in prompt or not isinstance(val[1], int):
                    errors.append({"type": "bad_linked_input",
                                   "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                                   "details": name, "extra_info": {"input_name": name, "received_value": val}})
                    continue
                returns = self.nodes[prompt[str(val[0])]["class_type"]][1]
                got = returns[val[1]] if 0 <= val[1] < len(returns) else None
                if got != kind:
                    errors.append({"type": "return_type_mismatch", "message": "Return type mismatch between linked nodes",
                                   "details": f"{name}, received_type({got}) mismatch input_type({kind})",
                                   "extra_info": {"input_name": name, "received_type": got, "linked_node": val}})
                continue
            if isinstance(kind, list):
                if val not in kind:
                    errors.append({"type": "value_not_in_list", "message": "Value not in list",
                                   "details": f"{name}: '{val}' not in {kind}",
                                   "extra_info": {"input_name": name, "received_value": val}})
                continue
            try:
                val = {"INT": int, "FLOAT": float, "STRING": str}[kind](val) if kind in ("INT", "FLOAT", "STRING") else val
                if kind in ("INT", "FLOAT") and isinstance(inputs[name], (str, bool)):
                    raise ValueError(f"{inputs[name]!r} is not a number")
            except (TypeError, ValueError) as ex:
                errors.append({"type": "invalid_input_type",
                               "message": f"Failed to convert an input value to a {kind} value",
                               "details": f"{name}, {val}, {ex}", "extra_info": {"input_name": name}})
                continue
            if kind not in ("INT", "FLOAT", "STRING"):
                errors.append({"type": "bad_linked_input", "message": f"a {kind} input takes a link",
                               "details": name, "extra_info": {"input_name": name, "received_value": val}})
                continue
            if "min" in opts and val < opts["min"]:
                errors.append({"type": "value_smaller_than_min",
                               "message": f"Value {val} smaller than min of {opts['min']}", "details": name,
                               "extra_info": {"input_name": name, "received_value": val}})
            elif "max" in opts and val > opts["max"]:
                errors.append({"type": "value_bigger_than_max",
                               "message": f"Value {val} bigger than max of {opts['max']}", "details": name,
                               "extra_info": {"input_name": name, "received_value": val}})
        return errors

    def _post_prompt(self, body: Dict[str, Any]) -> Reply:
        if "prompt" not in body:
            return 400, {"error": {"type": "no_prompt", "message": "No prompt provided", "details": "",
                                   "extra_info": {}}, "node_errors": {}}
        prompt = body["prompt"]
        ok, error, outputs, node_errors = self.validate(prompt)
        if not ok:
            return 400, {"error": error, "node_errors": node_errors}
        pid = str(uuid.uuid4())
        with self.lock:
            number = self._number
            self._number += 1
            extra = dict(body.get("extra_data") or {})
            if "client_id" in body:
                extra["client_id"] = body["client_id"]
            self.queue.append([number, pid, prompt, extra, outputs])
            self.prompts.append(prompt)
        self._wake.set()
        return 200, {"prompt_id": pid, "number": number, "node_errors": {}}

    # -- execution ------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                item = self.queue.pop(0) if self.queue else None
                if item is not None:
                    self.running[0] = item
            if item is None:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            self._interrupt.clear()
            fault = self.fault
            started = int(time.time() * 1000)
            messages: List[list] = [["execution_start", {"prompt_id": item[1], "timestamp": started}],
                                    ["execution_cached", {"nodes": [], "prompt_id": item[1], "timestamp": started}]]
            outputs: Dict[str, Any] = {}
            status = "success"
            limit = 600.0 if fault == "stuck" else self.seconds  # bounded even when stuck
            interrupted = self._interrupt.wait(limit)
            if interrupted or self._stop.is_set():
                status = "error"
                messages.append(["execution_interrupted", {"prompt_id": item[1], "node_id": "3",
                                                           "node_type": "KSampler", "executed": []}])
            elif fault in ("fail", "oom"):
                status = "error"
                messages.append(["execution_error", self._error(item, fault)])
            else:
                outputs = self._run(item)
                messages.append(["execution_success", {"prompt_id": item[1], "timestamp": int(time.time() * 1000)}])
            with self.lock:
                self.running.pop(0, None)
                self.history[item[1]] = {"prompt": item, "outputs": outputs,
                                         "status": {"status_str": status, "completed": status == "success",
                                                    "messages": messages},
                                         "meta": {nid: {"node_id": nid, "display_node": nid, "parent_node": None,
                                                        "real_node_id": nid} for nid in outputs}}

    @staticmethod
    def _error(item: list, fault: str) -> Dict[str, Any]:
        if fault == "oom":
            kind = "torch.OutOfMemoryError"
            message = ("Allocation on device \nThis error means you ran out of memory on your GPU.\n\n"
                       "TIPS: If the workflow worked before you might have accidentally set the batch_size to a "
                       "large number.")
        else:
            kind = "RuntimeError"
            message = "Error while deserializing header: HeaderTooLarge"
        return {"prompt_id": item[1], "node_id": "3", "node_type": "KSampler", "executed": ["4", "5", "6", "7"],
                "exception_message": message, "exception_type": kind,
                "traceback": ['  File "/root/ComfyUI/execution.py", line 323, in execute\n'],
                "current_inputs": {}, "current_outputs": {}}

    def _run(self, item: list) -> Dict[str, Any]:
        prompt = item[2]
        latent = next(n["inputs"] for n in prompt.values() if n["class_type"] in ("EmptyLatentImage", "EmptySD3LatentImage"))
        sampler = next(n["inputs"] for n in prompt.values() if n["class_type"] == "KSampler")
        text = next((n["inputs"]["text"] for n in prompt.values()
                     if n["class_type"] == "CLIPTextEncode" and isinstance(n["inputs"]["text"], str) and n["inputs"]["text"]), "")
        out: Dict[str, Any] = {}
        for nid in item[4]:
            prefix = prompt[nid]["inputs"].get("filename_prefix", "ComfyUI")
            subfolder, _, base = prefix.rpartition("/")
            os.makedirs(os.path.join(self.output_dir, subfolder), exist_ok=True)
            images = []
            for i in range(int(latent["batch_size"])):
                with self.lock:
                    self._counter += 1
                    counter = self._counter
                name = f"{base}_{counter:05}_.png"
                data = png(max(1, int(latent["width"]) // 16), max(1, int(latent["height"]) // 16),
                           int(sampler["seed"]) + i, text)
                with open(os.path.join(self.output_dir, subfolder, name), "wb") as f:
                    f.write(data)
                images.append({"filename": name, "subfolder": subfolder, "type": "output"})
            out[nid] = {"images": images}
        return out

    def files(self) -> List[str]:
        """The files in its output directory, relative to it."""
        return sorted(os.path.relpath(os.path.join(root, f), self.output_dir)
                      for root, _, names in os.walk(self.output_dir) for f in names)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loopback.comfyui")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8188)
    args = ap.parse_args(argv)
    server = FakeComfyUI(address=args.host, port=args.port)
    server.thread.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
