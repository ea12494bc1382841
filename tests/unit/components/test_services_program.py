"""The prod stack's hosted services under Pulumi's mocks: seed 003's Fly.io fallback and its Cloud Run GPU
service, with the inputs that make them what the stack says, and the gateway's routes to them."""
import base64
import json

import pytest
import yaml

from components import gateway
from core import identity
from tests.mocks import MOCK_SECRET, run_program, stack_config

FLY = "pulumi-python:dynamic/fly:Machine"
RUN = "gcp:cloudrunv2/service:Service"


@pytest.fixture(scope="module")
def prod():
    return run_program(stack_config("prod"), stack="prod")


def test_the_fly_fallback_is_one_always_on_machine_with_its_bearer_as_a_secret(prod):
    (fly,) = prod.of_type(FLY)
    i = fly.inputs
    assert fly.name == "service-chat-fallback"
    assert (i["app"], i["region"], i["org"]) == ("goblin-chat", "iad", "personal")
    assert i["guest"] == {"cpu_kind": "shared", "cpus": 2, "memory_mb": 2048} and i["volume_gb"] == 1
    assert i["image"] == "ghcr.io/ggml-org/llama.cpp:server-b6870"
    assert i["env"]["LLAMA_ARG_HF_FILE"] == "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf"
    assert i["env"]["LLAMA_ARG_ALIAS"] == "tinyllama-1.1b-chat" and i["env"]["LLAMA_CACHE"] == "/models"
    # The bearer is the provider's to make (a secret output), never an input, never in the Machine's env.
    assert "api_key" not in i and i["secret_name"] == "LLAMA_API_KEY"
    assert i["stamps"]["provider"] == "fly" and i["stamps"]["hours_per_month"] == pytest.approx(739.48, abs=0.5)
    assert i["stamps"]["monthly_usd"] == pytest.approx(11.70)


def test_the_cloud_run_service_has_an_l4_scales_to_zero_and_mounts_the_bucket(prod):
    (svc,) = prod.of_type(RUN)
    i = svc.inputs
    assert svc.name == "service-llama-l4" and i["name"] == "gpu-estate-prod-llama-l4" and i["location"] == "us-east4"
    assert i["invokerIamDisabled"] is False and i["deletionProtection"] is False
    t = i["template"]
    assert t["nodeSelector"] == {"accelerator": "nvidia-l4"} and t["gpuZonalRedundancyDisabled"] is True
    assert t["scaling"] == {"minInstanceCount": 0, "maxInstanceCount": 1}
    assert t["maxInstanceRequestConcurrency"] == 4
    (c,) = t["containers"]
    assert c["resources"]["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert c["resources"]["cpuIdle"] is False
    env = {e["name"]: e["value"] for e in c["envs"]}
    assert env["LLAMA_ARG_MODEL"] == "/models/gguf/Qwen3-8B-Q4_K_M.gguf" and env["LLAMA_ARG_N_GPU_LAYERS"] == "999"
    assert c["volumeMounts"] == [{"name": "models", "mountPath": "/models"}]
    assert t["volumes"] == [{"name": "models", "gcs": {"bucket": "gpu-estate-prod-models", "readOnly": True}}]
    runtime = prod.named("service-llama-l4-runtime")
    assert t["serviceAccount"].startswith(runtime.inputs["accountId"])
    assert i["labels"]["estate-provider"] == "cloudrun" and i["labels"]["estate-gpu"] == "l4"


def test_only_the_gateways_identity_may_invoke_it(prod):
    (binding,) = prod.of_type("gcp:cloudrunv2/serviceIamMember:ServiceIamMember")
    gateway = prod.named("service-llama-l4-gateway").inputs["accountId"]
    assert binding.inputs["role"] == "roles/run.invoker"
    assert binding.inputs["member"].startswith(f"serviceAccount:{gateway}")
    assert binding.inputs["name"] == "gpu-estate-prod-llama-l4" and binding.inputs["location"] == "us-east4"
    members = [r.inputs.get("member", "") for r in prod.resources if "IamMember" in r.typ or "IAMMember" in r.typ]
    assert not any(m in ("allUsers", "allAuthenticatedUsers") for m in members)


def test_the_gateway_chains_them_before_the_paid_apis(prod):
    (deploy,) = [r for r in prod.resources if r.name == "gateway-deploy"]
    text = deploy.inputs["stdin"]
    start = text.index("model_list:")
    config = yaml.safe_load(text[start:text.index("\n", text.index("master_key:"))])
    entries = {m["model_name"]: m["litellm_params"] for m in config["model_list"]}
    assert entries["chat-fallback"]["api_key"] == "os.environ/FLY_CHAT_FALLBACK_KEY"
    assert entries["chat-fallback"]["model"] == "openai/tinyllama-1.1b-chat"
    assert entries["chat-fallback"]["api_base"] == "https://goblin-chat.fly.dev/v1"
    # Cloud Run's route goes through the identity proxy on the gateway host, which signs it with an ID token.
    assert entries["gcp-llama"]["api_base"] == "http://127.0.0.1:4101/llama-l4/v1"
    assert entries["gcp-llama"]["api_key"] == "os.environ/ESTATE_IDENTITY_BEARER"
    fallbacks = {k: v for f in config["router_settings"]["fallbacks"] for k, v in f.items()}
    assert fallbacks["gpt-3.5-turbo-fast"] == ["gcp-llama", "chat-fallback", "openai-gpt-4o-mini"]


def test_the_gateways_key_reaches_the_identity_proxy_only_in_its_0600_env_file(prod):
    key = prod.named("service-llama-l4-gateway-key")
    assert key.typ == "gcp:serviceaccount/key:Key"
    assert key.inputs["serviceAccountId"].endswith(prod.named("service-llama-l4-gateway").inputs["accountId"])
    (secrets,) = [r for r in prod.resources if r.name == "gateway-secrets"]
    assert secrets.inputs["logging"] == "none"
    bundle = dict(line.split(" ", 1) for line in secrets.inputs["stdin"].splitlines())
    env = dict(line.split("=", 1) for line in base64.b64decode(bundle[gateway.IDENTITY_ENV]).decode().splitlines())
    keys = json.loads(env[identity.KEYS_ENV])
    assert list(keys) == ["llama-l4"] and keys["llama-l4"]["private_key"] == MOCK_SECRET
    assert env[identity.BEARER_ENV] == MOCK_SECRET
    # LiteLLM's env file has the bearer it presents to the proxy, never the key.
    litellm_env = base64.b64decode(bundle[f"{gateway.CONFIG_DIR}/gateway.env"]).decode()
    assert f"{identity.BEARER_ENV}={MOCK_SECRET}" in litellm_env.splitlines() and identity.KEYS_ENV not in litellm_env
    # The deploy script: the proxy's unit and document (the service's URL, no credential), in LiteLLM's image.
    (deploy,) = [r for r in prod.resources if r.name == "gateway-deploy"]
    script = deploy.inputs["stdin"]
    assert f"/etc/systemd/system/{identity.UNIT}" in script and "-m agents.identity" in script
    assert f"--env-file {gateway.IDENTITY_ENV}" in script and "--port 4101" in script
    assert '"url": "https://gpu-estate-prod-llama-l4-abc123-uk.a.run.app"' in script
    assert "agents/identity.py" in script  # shipped in lib/
    assert MOCK_SECRET not in script


def test_a_local_gateway_runs_the_identity_proxy_as_a_process_with_its_secrets_as_inputs():
    """The sandbox's local gateway with a Cloud Run service: the proxy's process gets the key and the bearer
    as secret inputs, LiteLLM the bearer in its environment, and its route the proxy's own port."""
    config = stack_config("sandbox")
    config["gcp:project"] = "example-estate-sandbox"
    config["gpu-estate:budget"] = {**config["gpu-estate:budget"], "max_hourly_per_node": 1.1}
    config["gpu-estate:storage"] = {"models": {"provider": "gcs", "location": "US-EAST1"}}
    config["gpu-estate:services"] = {**config["gpu-estate:services"], "llama-l4": {
        "provider": "cloudrun", "region": "us-east4", "bucket": "models", "gguf": "gguf/Qwen3-8B-Q4_K_M.gguf",
        "served_name": "qwen3-8b-l4", "image": "us-east4-docker.pkg.dev/p/estate/llama.cpp:server-cuda-b6870"}}
    config["gpu-estate:gateway"] = {**config["gpu-estate:gateway"],
                                    "aliases": {**config["gpu-estate:gateway"]["aliases"], "gcp-llama": "qwen3-8b-l4"}}
    sandbox = run_program(config, stack="sandbox")
    (proxy,) = sandbox.of_type("pulumi-python:dynamic/identity:LocalProxy")
    assert {"keys", "bearer"} <= set(proxy.secret_paths)
    assert json.loads(proxy.inputs["keys"]["llama-l4"])["private_key"] == MOCK_SECRET
    assert json.loads(proxy.inputs["document"]) == {
        "services": {"llama-l4": {"url": "https://gpu-estate-sandbox-llama-l4-abc123-uk.a.run.app"}}}
    (litellm,) = sandbox.of_type("pulumi-python:dynamic/gateway:Local")
    assert litellm.inputs["env"][identity.BEARER_ENV] == proxy.inputs["bearer"] and "env" in litellm.secret_paths
    entries = {m["model_name"]: m["litellm_params"] for m in yaml.safe_load(litellm.inputs["config"])["model_list"]}
    assert entries["gcp-llama"]["api_base"] == "http://127.0.0.1:43101/llama-l4/v1"
    assert MOCK_SECRET not in litellm.inputs["config"] and MOCK_SECRET not in json.dumps(litellm.inputs.get("files"))
