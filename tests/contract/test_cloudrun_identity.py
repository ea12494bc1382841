"""A Cloud Run alias end to end: OpenAI's Python client -> the real LiteLLM proxy (started as `gateway.deploy:
local` starts it, on the config the estate renders) -> the identity proxy (agents/identity.py, started as
its local resource starts it) -> the loopback Cloud Run, which answers only a request carrying a Google ID
token for its URL that the loopback Google token endpoint issued to the gateway's service account."""
import json

import pytest

from components import gateway
from core import identity
from core.config import parse_spec
from core.topology import plan_estate
from loopback.cloudrun import FakeCloudRun
from loopback.google_oauth import FakeGoogleOAuth
from loopback.ollama import FakeOllama
from providers.local_gateway import LocalGatewayProvider, litellm_binary
from providers.local_identity import LocalIdentityProxyProvider

MODEL = "qwen3-8b-l4"
BEARER = "identity-bearer-contract-8e2a"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGgtgdW9ZLnsrjGnasMVWnMuUvMEboNU8GOJmJqjIes"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFXdBfpWUE7y0nZ8rsibV0rc/1JxweHTokQjkgvrZxWD"


def spec():
    """The Cloud Run service 'llama-l4' serves gcp-llama, which falls back to 'backup' on a directly reached Ollama."""
    return parse_spec({
        "nodes": {"small": {"provider": "tensordock", "gpu": {"model": "rtx4090"}, "max_price_per_hour": 0.4,
                            "access": "direct", "workloads": {"ollama": {"models": ["llama3.2:3b"]}},
                            "ssh": {"public_key": SSH_KEY}},
                  "gw": {"provider": "host", "address": "127.0.0.1", "workloads": {"litellm": {}},
                         "ssh": {"host_key": HOST_KEY}}},
        "services": {"llama-l4": {"provider": "cloudrun", "region": "us-east4", "bucket": "models",
                                  "gguf": "gguf/Qwen3-8B-Q4_K_M.gguf", "served_name": MODEL,
                                  "image": "us-east4-docker.pkg.dev/p/estate/llama.cpp:server-cuda-b6870"}},
        "storage": {"models": {"provider": "gcs", "location": "US-EAST1"}},
        "gateway": {"node": "gw", "aliases": {"gcp-llama": MODEL, "backup": "llama3.2:3b"},
                    "fallbacks": {"gcp-llama": ["backup"]}, "timeouts": {"default": 20}, "num_retries": 0},
        "budget": {"monthly_usd": 1000},
    })


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    if not litellm_binary().exists():
        pytest.skip(f"no LiteLLM proxy at {litellm_binary()}: `make setup` installs litellm[proxy]")
    google = FakeGoogleOAuth()
    key = google.service_account()
    run = FakeCloudRun(MODEL, google, [key["client_email"]])
    small = FakeOllama(name="small")
    small.install("llama3.2:3b")
    plan = plan_estate(spec())
    d = tmp_path_factory.mktemp("identity")
    signer = LocalIdentityProxyProvider()
    document = json.dumps(identity.document(plan.spec.services, {"llama-l4": run.url}))
    props = {"document": document, "state_dir": str(d), "keys": {"llama-l4": json.dumps(key)}, "bearer": BEARER,
             "every_seconds": 0.0, "port": 0}
    proxy = signer.create(props).outs
    config = gateway.render_litellm_config(plan, {"small": ("127.0.0.1", {"11434": small.httpd.server_address[1]})},
                                           services={"llama-l4": run.url}, identity=proxy["url"])
    gw = LocalGatewayProvider()
    outs = gw.create({"config": config, "port": 0, "state_dir": str(d / "gateway"),
                      "env": {identity.BEARER_ENV: BEARER}}).outs
    from openai import OpenAI

    client = OpenAI(base_url=f"{outs['url']}/v1", api_key=outs["master_key"], max_retries=0, timeout=60)
    state = {"client": client, "google": google, "run": run, "small": small, "key": key, "config": config,
             "signer": signer, "proxy": proxy, "props": props, "dir": d}
    yield state
    gw.delete("", outs)
    signer.delete("", state["proxy"])
    for fake in (google, run, small):
        fake.close()


def logs(estate) -> str:
    return "".join(p.read_text(errors="replace") for p in estate["dir"].rglob("*.log"))


def test_the_route_goes_through_the_identity_proxy_never_to_the_service_directly(estate):
    (entry,) = [m for m in yaml_models(estate["config"]) if m["model_name"] == "gcp-llama"]
    assert entry["litellm_params"]["api_base"] == f"{estate['proxy']['url']}/llama-l4/v1"
    assert entry["litellm_params"]["api_key"] == f"os.environ/{identity.BEARER_ENV}"
    assert BEARER not in estate["config"] and estate["key"]["private_key"] not in estate["config"]


def yaml_models(config):
    import yaml

    return yaml.safe_load(config)["model_list"]


def test_a_chat_reaches_cloud_run_with_the_gateways_id_token(estate):
    run, key = estate["run"], estate["key"]
    answer = estate["client"].chat.completions.create(model="gcp-llama", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == f"cloudrun answers with {MODEL}"
    claims = run.callers[-1]
    assert claims["aud"] == run.url and claims["email"] == key["client_email"]
    # Neither the gateway's master key nor the proxy's bearer reaches the service.
    assert BEARER not in json.dumps(run.headers)


def test_a_streamed_chat_streams_through(estate):
    stream = estate["client"].chat.completions.create(model="gcp-llama", messages=[{"role": "user", "content": "hi"}],
                                                      stream=True)
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == f"cloudrun streams with {MODEL}"


def test_the_token_is_minted_once_for_many_requests(estate):
    before = len(estate["google"].issued)
    for _ in range(3):
        answer = estate["client"].chat.completions.create(model="gcp-llama", messages=[{"role": "user", "content": "x"}])
        assert answer.choices[0].message.content == f"cloudrun answers with {MODEL}"
    assert len(estate["google"].issued) == before <= 1


def test_with_the_token_endpoint_failing_the_alias_falls_back(estate):
    """Last: LiteLLM may cool the failed route down. The service moved (a new URL after an `up`): the proxy's
    document is rewritten in place, without restarting it or LiteLLM, and the proxy needs a token for the
    new audience while Google's token endpoint fails."""
    google, signer = estate["google"], estate["signer"]
    moved = FakeCloudRun(MODEL, google, [estate["key"]["client_email"]], name="moved")
    try:
        document = json.dumps(identity.document(spec().services, {"llama-l4": moved.url}))
        news = {**estate["props"], "document": document}
        outs = signer.update("", estate["proxy"], news).outs
        assert outs["pid"] == estate["proxy"]["pid"]  # the same process
        google.inject("status", count=20, method="POST", path="/token", status=503,
                      body={"error": "temporarily_unavailable", "error_description": "try again"})
        answer = estate["client"].chat.completions.create(model="gcp-llama", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == "small answers with llama3.2:3b"
        assert moved.requests == []  # nothing unsigned was sent to Cloud Run
        assert "identity: llama-l4: the token endpoint " in logs(estate)
        assert "answered 503 (temporarily_unavailable" in logs(estate)
    finally:
        moved.close()


def test_no_key_or_bearer_in_any_log_or_rendered_file(estate):
    estate["client"].chat.completions.create(model="gcp-llama", messages=[{"role": "user", "content": "hi"}])
    text = logs(estate) + "".join(p.read_text(errors="replace") for p in estate["dir"].rglob("*")
                                  if p.is_file() and not p.name.endswith(".log"))
    key_body = estate["key"]["private_key"].splitlines()[5]
    assert key_body not in text and BEARER not in text
    assert "identity: POST llama-l4/v1/chat/completions -> 200" in logs(estate)
