"""The images bridge against the loopback ComfyUI: the workflow templates against ComfyUI's node
definitions, OpenAI's request turned into a ComfyUI prompt and its PNG back, nothing left on the node, and
each fault as an OpenAI-style error with a status the gateway falls back on."""
import base64
import json
import time
from pathlib import Path

import pytest
import requests

from core.catalog import ASSETS
from loopback.comfyui import FakeComfyUI
from sandbox.images_bridge import running_bridge

WORKFLOWS = sorted(p.stem for p in (ASSETS / "comfyui" / "workflows").glob("*.json"))
PNG = b"\x89PNG\r\n\x1a\n"
NASTY = 'a "quoted" {braces} }} {{prompt}} {"$param": "seed"}\nsecond line\\ and $(rm -rf /) `x` \u00e9'


@pytest.fixture
def comfy():
    fake = FakeComfyUI()
    yield fake
    fake.close()


@pytest.fixture
def bridge(comfy):
    config = {"comfyui": comfy.url, "output_dir": comfy.output_dir,
              "workflows": {name: {"template": name, "timeout": 30} for name in WORKFLOWS}}
    with running_bridge(config) as httpd:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"


def generate(bridge, timeout=None, **body):
    headers = {"X-Estate-Timeout": str(timeout)} if timeout else {}
    return requests.post(f"{bridge}/v1/images/generations", json={"model": "sdxl-lightning", "prompt": "a cat", **body},
                         headers=headers, timeout=60)


def test_the_three_seed_workflows_are_there():
    assert WORKFLOWS == ["flux.1-dev", "sd3.5-large", "sdxl-lightning"]


@pytest.mark.parametrize("name", WORKFLOWS)
def test_each_template_gives_every_node_its_required_inputs_as_object_info_defines_them(comfy, name):
    """Read from /object_info as a client sees it: every class exists, every required input is there, a
    link is [node, slot] to an output of the input's type, a widget value has the input's type and range
    or is one of its choices; a parameter is a placeholder of the right kind."""
    info = requests.get(f"{comfy.url}/object_info", timeout=10).json()
    template = json.loads((ASSETS / "comfyui" / "workflows" / f"{name}.json").read_text())
    prompt = template["prompt"]
    samples = {"prompt": "x", "width": 1024, "height": 1024, "batch_size": 1, "seed": 1, "steps": 4}
    assert template["output"] in prompt and info[prompt[template["output"]]["class_type"]]["output_node"]
    for nid, node in prompt.items():
        cls = node["class_type"]
        assert cls in info, f"{name}: node {nid} is {cls}, which ComfyUI does not define"
        required = info[cls]["input"]["required"]
        assert set(node["inputs"]) <= set(required) | set(info[cls]["input"].get("optional", {})), (name, nid)
        for inp, spec in required.items():
            assert inp in node["inputs"], f"{name}: {cls} {nid} lacks its required input {inp}"
            val, kind = node["inputs"][inp], spec[0]
            if isinstance(val, dict):
                assert set(val) == {"$param"} and val["$param"] in samples, (name, nid, inp)
                val = samples[val["$param"]]
            if isinstance(val, list):
                source = prompt[val[0]]["class_type"]
                assert info[source]["output"][val[1]] == kind, f"{name}: {cls}.{inp} takes {kind}, linked to {source}"
            elif isinstance(kind, list):
                assert val in kind, f"{name}: {cls}.{inp}={val!r} is none of {kind}"
            else:
                assert kind in ("INT", "FLOAT", "STRING"), f"{name}: {cls}.{inp} takes a {kind} link, got {val!r}"
                assert isinstance(val, {"INT": int, "FLOAT": (int, float), "STRING": str}[kind]), (name, nid, inp)
                opts = spec[1] if len(spec) > 1 else {}
                assert opts.get("min", val) <= val <= opts.get("max", val), (name, nid, inp, val)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_each_workflow_renders_a_png_through_comfyuis_protocol(comfy, bridge, name):
    resp = generate(bridge, model=name, size="1024x1024", response_format="b64_json", seed=7)
    assert resp.status_code == 200, resp.text
    (item,) = resp.json()["data"]
    assert "url" not in item
    blob = base64.b64decode(item["b64_json"])
    assert blob.startswith(PNG)
    assert blob[16:24] == (64).to_bytes(4, "big") * 2  # the loopback renders 1/16th of 1024x1024
    assert [p for (m, p, _) in comfy.requests if m == "POST"][:1] == ["/prompt"]


def test_url_answers_are_data_urls_and_n_images_come_from_one_prompt(comfy, bridge):
    resp = generate(bridge, n=2, size="512x768", response_format="url")
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert len(data) == 2 and len(comfy.prompts) == 1
    for item in data:
        assert "b64_json" not in item
        assert item["url"].startswith("data:image/png;base64,")
        assert base64.b64decode(item["url"].split(",", 1)[1]).startswith(PNG)
        assert item["revised_prompt"] == "a cat"
    latent = comfy.prompts[0]["5"]["inputs"]
    assert (latent["width"], latent["height"], latent["batch_size"]) == (512, 768, 2)


def test_without_a_response_format_each_image_comes_both_ways(bridge):
    # LiteLLM's OpenAI route forwards no response_format for a model that is not DALL-E's.
    (item,) = generate(bridge).json()["data"]
    assert item["url"] == "data:image/png;base64," + item["b64_json"]


def test_the_prompt_reaches_comfyui_as_data_unchanged(comfy, bridge):
    resp = generate(bridge, prompt=NASTY, seed=42)
    assert resp.status_code == 200, resp.text
    (sent,) = comfy.prompts
    assert sent["6"]["inputs"]["text"] == NASTY
    assert sent["3"]["inputs"]["seed"] == 42 and sent["3"]["inputs"]["steps"] == 4
    assert sent["7"]["inputs"]["text"] == ""  # the template's own values stay
    assert sum(json.dumps(n).count("$param") for n in sent.values()) == NASTY.count("$param")


def test_nothing_stays_on_comfyui_after_the_answer(comfy, bridge):
    assert generate(bridge).status_code == 200
    assert comfy.files() == [] and comfy.history == {}
    assert len(comfy.deleted) == 1


def test_outputs_are_kept_as_long_as_the_stack_says(comfy):
    config = {"comfyui": comfy.url, "output_dir": comfy.output_dir, "keep_outputs_seconds": 1,
              "workflows": {"sdxl-lightning": {"template": "sdxl-lightning"}}}
    with running_bridge(config) as httpd:
        assert generate(f"http://127.0.0.1:{httpd.server_address[1]}").status_code == 200
        assert len(comfy.files()) == 1 and len(comfy.history) == 1
        for _ in range(50):
            if not comfy.files():
                break
            time.sleep(0.1)
    assert comfy.files() == [] and comfy.history == {}


def test_a_queue_that_never_finishes_is_a_504_and_the_prompt_leaves_the_queue(comfy, bridge):
    comfy.fault = "stuck"
    started = time.monotonic()
    resp = generate(bridge, timeout=1)
    assert resp.status_code == 504, resp.text
    assert time.monotonic() - started < 10
    error = resp.json()["error"]
    assert error["code"] == "timeout" and error["type"] == "server_error"
    assert comfy.interrupted == 1  # it was the prompt running: interrupted, not left to burn the GPU
    assert comfy.history == {} and not comfy.running  # and its interrupted entry dropped


@pytest.mark.parametrize("fault,status,code", [("fail", 500, "comfyui_prompt_failed"), ("oom", 503, "out_of_memory")])
def test_a_failed_prompt_is_an_openai_error_naming_the_node(comfy, bridge, fault, status, code):
    comfy.fault = fault
    resp = generate(bridge)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and "KSampler node 3" in error["message"]
    assert comfy.history == {}


def test_comfyui_down_is_a_503(comfy, bridge):
    comfy.kill()
    resp = generate(bridge)
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "comfyui_unavailable"
    assert requests.get(f"{bridge}/health", timeout=10).status_code == 503


def test_a_missing_model_file_on_the_node_is_comfyuis_refusal(bridge):
    comfy = FakeComfyUI(models={"checkpoints": []})
    try:
        config = {"comfyui": comfy.url, "workflows": {"sdxl-lightning": {"template": "sdxl-lightning"}}}
        with running_bridge(config) as httpd:
            resp = generate(f"http://127.0.0.1:{httpd.server_address[1]}")
        assert resp.status_code == 500
        assert "sdxl_lightning_4step.safetensors" in resp.json()["error"]["message"]
    finally:
        comfy.close()


@pytest.mark.parametrize("body,param", [({"size": "1000x1000"}, "size"), ({"size": "big"}, "size"), ({"n": 9}, "n"),
                                        ({"prompt": ""}, "prompt"), ({"response_format": "png"}, "response_format"),
                                        ({"quality": "ultra"}, "quality"), ({"seed": -1}, "seed")])
def test_bad_requests_are_400s_naming_the_parameter(comfy, bridge, body, param):
    resp = generate(bridge, **body)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == param
    assert comfy.prompts == []


def test_an_unknown_workflow_is_a_404(bridge):
    resp = generate(bridge, model="dall-e-3")
    assert resp.status_code == 404 and resp.json()["error"]["param"] == "model"


@pytest.mark.parametrize("header", ["nan", "inf", "-inf", "Infinity"])
def test_a_timeout_that_is_not_a_finite_number_is_a_400(comfy, bridge, header):
    resp = generate(bridge, timeout=header)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "X-Estate-Timeout"
    assert comfy.prompts == []


def test_a_request_timeout_past_the_workflows_is_held_to_the_workflows(comfy):
    comfy.fault = "stuck"
    config = {"comfyui": comfy.url, "output_dir": comfy.output_dir,
              "workflows": {"sdxl-lightning": {"template": "sdxl-lightning", "timeout": 1}}}
    with running_bridge(config) as httpd:
        started = time.monotonic()
        resp = generate(f"http://127.0.0.1:{httpd.server_address[1]}", timeout=3600)
    assert resp.status_code == 504, resp.text
    assert time.monotonic() - started < 30  # held to the workflow's 1 s, not the header's hour


def test_an_injected_status_fault_is_answered_with_its_headers(comfy):
    """The loopback ComfyUI answers an injected status the way every loopback server does, headers and all
    (its own PNG replies go through the same answer)."""
    comfy.inject("status", path="/system_stats", status=503, headers={"Retry-After": "7"})
    resp = requests.get(f"{comfy.url}/system_stats", timeout=10)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "7"
    assert requests.get(f"{comfy.url}/system_stats", timeout=10).status_code == 200
