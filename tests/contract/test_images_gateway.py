"""OpenAI's Python client -> the real LiteLLM proxy (the rendered config) -> the images bridge -> the
loopback ComfyUI: image aliases answer with a real PNG, priced per image, only behind the master key, and
each ComfyUI fault is an OpenAI-style error, or the external image model when the alias falls back."""
import base64
import os
import time

import openai
import pytest
import requests

from components import gateway
from core.config import parse_spec
from core.topology import plan_estate
from loopback.comfyui import FakeComfyUI
from loopback.openai_server import FakeModelServer
from providers.local_gateway import LocalGatewayProvider, litellm_binary
from sandbox.images_bridge import running_bridge

PNG = b"\x89PNG\r\n\x1a\n"
FAULTS = ("fail", "oom", "stuck", "down")
SECONDS_PER_IMAGE = 9  # on a $0.40/h node: $0.001 an image
NASTY = 'neon sign reading "OPEN {24/7}"\nsecond line } {"$param": "seed"} \\ $(id)'


def images_spec():
    """A directly reached ComfyUI node with two workflows. ``dall-e-3`` falls back to the external
    ``openai-dall-e-3``; ``sdxl`` has no fallback; each fault has an alias of its own with and without
    one, so LiteLLM's cooldown of one never hides another."""
    aliases = {"dall-e-3": "flux.1-dev", "sdxl": "sdxl-lightning"}
    fallbacks = {"dall-e-3": ["openai-dall-e-3"]}
    for fault in FAULTS:
        aliases[f"{fault}-alone"] = aliases[f"{fault}-fb"] = "flux.1-dev"
        fallbacks[f"{fault}-fb"] = ["openai-dall-e-3"]
    return parse_spec({
        "nodes": {
            "art": {"provider": "tensordock", "gpu": {"model": "rtx4090"}, "max_price_per_hour": 0.4, "access": "direct",
                    "ssh": {"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFXdBfpWUE7y0nZ8rsibV0rc/1JxweHTokQjkgvrZxWD"},
                    "workloads": {"comfyui": {"vram_gb": 18, "workflows": {
                        "flux.1-dev": {"seconds_per_image": SECONDS_PER_IMAGE},
                        "sdxl-lightning": {"seconds_per_image": 2}}}}},
            "gw": {"provider": "host", "address": "127.0.0.1", "workloads": {"litellm": {}},
                   "ssh": {"host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGgtgdW9ZLnsrjGnasMVWnMuUvMEboNU8GOJmJqjIes"}}},
        "gateway": {"node": "gw", "aliases": aliases, "fallbacks": fallbacks, "num_retries": 0,
                    "timeouts": {"default": 30, "stuck-alone": 3, "stuck-fb": 3},
                    "external": {"openai": {"api_key_env": "OPENAI_API_KEY", "api_base": "http://127.0.0.1:1/v1",
                                            "models": {"openai-dall-e-3": "openai/dall-e-3"}}}},
        "budget": {"monthly_usd": 1000},
    })


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    if not litellm_binary().exists():
        pytest.skip(f"no LiteLLM proxy at {litellm_binary()}: `make setup` installs litellm[proxy]")
    comfy = FakeComfyUI()
    external = FakeModelServer("dall-e-3", name="openai")
    spec = images_spec()
    ws = spec.nodes["art"].workloads["comfyui"]
    config = {"comfyui": comfy.url, "output_dir": comfy.output_dir,
              "workflows": {n: {"template": n} for n in ws.workflows}}
    saved = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = "sk-loopback-openai"
    with running_bridge(config) as bridge:
        plan = plan_estate(spec)
        endpoints = {"art": ("127.0.0.1", {"8189": bridge.server_address[1]})}
        doc = gateway.litellm_config(plan, endpoints)
        for entry in doc["model_list"]:  # the external provider at the loopback OpenAI
            if entry["model_name"] == "openai-dall-e-3":
                entry["litellm_params"]["api_base"] = f"{external.url}/v1"
        import yaml
        provider = LocalGatewayProvider()
        d = tmp_path_factory.mktemp("litellm-images")
        outs = provider.create({"config": yaml.safe_dump(doc, sort_keys=False), "port": 0, "state_dir": str(d)}).outs
        client = openai.OpenAI(base_url=f"{outs['url']}/v1", api_key=outs["master_key"], max_retries=0, timeout=60)
        yield {"url": outs["url"], "key": outs["master_key"], "client": client, "comfy": comfy, "external": external,
               "log": d / "gateway.log", "config": doc}
        provider.delete("", outs)
    comfy.close()
    external.close()
    if saved is None:
        os.environ.pop("OPENAI_API_KEY", None)
    else:
        os.environ["OPENAI_API_KEY"] = saved


def log(proxy):
    return proxy["log"].read_text()[-3000:] if proxy["log"].exists() else ""


def test_the_config_routes_image_aliases_as_image_generation_priced_per_image(proxy):
    (entry,) = [m for m in proxy["config"]["model_list"] if m["model_name"] == "dall-e-3"]
    assert entry["model_info"]["mode"] == "image_generation"
    assert entry["litellm_params"]["output_cost_per_image"] == pytest.approx(0.4 * SECONDS_PER_IMAGE / 3600)
    assert "input_cost_per_second" not in entry["litellm_params"]
    assert {"dall-e-3": ["openai-dall-e-3"]} in proxy["config"]["router_settings"]["fallbacks"]


def test_b64_json_answers_carry_comfyuis_png(proxy):
    result = proxy["client"].images.generate(model="dall-e-3", prompt="a lighthouse at dusk", size="1024x1024",
                                             response_format="b64_json", n=1)
    blob = base64.b64decode(result.data[0].b64_json)
    assert blob.startswith(PNG) and b"a lighthouse at dusk" in blob  # the loopback ComfyUI's own image
    assert proxy["comfy"].prompts[-1]["6"]["inputs"]["text"] == "a lighthouse at dusk"
    assert proxy["external"].images == []


def test_url_answers_carry_the_png_as_a_data_url_and_n_images_are_counted_in_the_spend(proxy):
    raw = proxy["client"].images.with_raw_response.generate(model="sdxl", prompt="two cats", n=2, size="512x512")
    result = raw.parse()
    assert len(result.data) == 2
    for item in result.data:
        assert item.url.startswith("data:image/png;base64,")
        assert base64.b64decode(item.url.split(",", 1)[1]).startswith(PNG)
    assert float(raw.headers["x-litellm-response-cost"]) == pytest.approx(2 * round(0.4 * 2 / 3600, 6))


def test_the_prompt_reaches_comfyui_as_data_unchanged(proxy):
    proxy["client"].images.generate(model="dall-e-3", prompt=NASTY, response_format="b64_json")
    assert proxy["comfy"].prompts[-1]["6"]["inputs"]["text"] == NASTY


def test_an_image_alias_needs_the_gateways_key(proxy):
    before = len(proxy["comfy"].prompts)
    resp = requests.post(f"{proxy['url']}/v1/images/generations", json={"model": "dall-e-3", "prompt": "x"}, timeout=30)
    assert resp.status_code in (401, 403)
    assert len(proxy["comfy"].prompts) == before
    # A key that is not the master key is refused too (LiteLLM without a key database answers 400 for it).
    with pytest.raises(openai.APIStatusError) as refused:
        openai.OpenAI(base_url=f"{proxy['url']}/v1", api_key="sk-wrong", max_retries=0).images.generate(
            model="dall-e-3", prompt="x")
    assert refused.value.status_code in (400, 401, 403)
    assert len(proxy["comfy"].prompts) == before


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_is_an_openai_error_or_the_fallback(proxy, fault):
    comfy, external = proxy["comfy"], proxy["external"]
    if fault == "down":
        comfy.kill()
    else:
        comfy.fault = fault
    try:
        with pytest.raises(openai.APIStatusError) as raised:
            proxy["client"].images.generate(model=f"{fault}-alone", prompt="a fox", response_format="b64_json")
        err = raised.value
        assert err.status_code >= 408, log(proxy)
        assert isinstance(err.body, dict) and err.body.get("message"), err.body
        expected = {"fail": "failed the prompt in KSampler", "oom": "ran out of memory",
                    "stuck": "Timeout", "down": "does not answer"}[fault]
        assert expected.lower() in str(err.body["message"]).lower(), err.body
        asked = len(external.images)
        result = proxy["client"].images.generate(model=f"{fault}-fb", prompt="a fox", response_format="b64_json")
        blob = base64.b64decode(result.data[0].b64_json)
        assert blob.startswith(PNG) and b"openai: a fox" in blob, log(proxy)
        assert len(external.images) == asked + 1
    finally:
        comfy.fault = None
        if fault == "stuck":
            # The bridge takes the stuck prompt off ComfyUI (its interrupt) at the alias's 3 s, which it hears
            # from LiteLLM's X-Estate-Timeout header alone (without it the bridge would wait 300 s).
            for _ in range(100):
                if comfy.interrupted >= 2 and not comfy.running:
                    break
                time.sleep(0.1)
            assert comfy.interrupted >= 2 and not comfy.running
