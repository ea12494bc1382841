"""RunPod serverless endpoints: the stack's rules, their price, and the dynamic provider driven directly
against the loopback RunPod (templates, endpoints, faults)."""
import pytest

from core import catalog, pricing
from core.config import parse_spec
from core.errors import ConfigError
from core.stamps import endpoint_stamp
from providers.http import CloudError
from providers.runpod_serverless import (PROVIDER_VERSION, EndpointInputs, ServerlessEndpointArgs,
                                         ServerlessEndpointProvider, TemplateInputs)
from tests.mocks import stack_estate

NAME = "gpu-estate-test-burst"


def props(**endpoint):
    e = {"gpu_ids": "AMPERE_24,ADA_24", "idle_timeout": 300, "workers_min": 0, "workers_max": 5, **endpoint}
    args = ServerlessEndpointArgs(
        name=NAME,
        template=TemplateInputs(image="runpod/worker-v1-vllm:v2.27.0", container_disk_gb=20,
                                env={"MODEL_NAME": "Qwen/Qwen3-8B", "HF_TOKEN": "{{ RUNPOD_SECRET_hf-token }}"}),
        endpoint=EndpointInputs(**e), stamps={"node": "burst"})
    result = ServerlessEndpointProvider().check({}, {**args.to_props(), "version": PROVIDER_VERSION})
    assert result.failures == []
    return result.inputs


@pytest.fixture
def runpod(clouds, monkeypatch):
    rp = clouds["runpod"]
    monkeypatch.setenv("RUNPOD_SERVERLESS_URL", f"{rp.url}/v2")
    return rp


def test_create_saves_a_serverless_template_and_an_endpoint_and_delete_leaves_nothing(runpod):
    prov = ServerlessEndpointProvider()
    created = prov.create(props())
    (endpoint,) = runpod.endpoints.values()
    (template,) = runpod.templates.values()
    assert created.id == endpoint["id"] and created.outs["template_id"] == template["id"]
    assert created.outs["openai_base"] == f"{runpod.url}/v2/{endpoint['id']}/openai/v1"
    assert template["isServerless"] and template["volumeInGb"] == 0 and template["name"] == NAME
    assert {e["key"]: e["value"] for e in template["env"]}["HF_TOKEN"] == "{{ RUNPOD_SECRET_hf-token }}"
    assert (endpoint["name"], endpoint["templateId"], endpoint["gpuIds"]) == (NAME, template["id"], "AMPERE_24,ADA_24")
    assert (endpoint["workersMin"], endpoint["workersMax"], endpoint["idleTimeout"]) == (0, 5, 300)
    assert endpoint["flashBootType"] == "FLASHBOOT"

    # RunPod deletes only an endpoint without workers, and holds a template a while after its last use.
    runpod.template_release_calls = 2
    prov.delete(created.id, created.outs)
    assert runpod.endpoints == {} and runpod.templates == {}
    assert runpod.alive() == []
    prov.delete(created.id, created.outs)  # already gone: idempotent
    assert prov.read(created.id, created.outs).id == ""


def test_a_lost_create_answer_is_adopted_by_name_not_made_twice(runpod):
    runpod.inject("drop", path="/graphql", body_has="saveTemplate")  # the template is made, its answer lost
    prov = ServerlessEndpointProvider()
    with pytest.raises(CloudError):
        prov.create(props())
    assert len(runpod.templates) == 1 and runpod.endpoints == {}
    created = prov.create(props())
    assert len(runpod.templates) == 1 and len(runpod.endpoints) == 1
    again = ServerlessEndpointProvider().create(props(workers_max=2))  # an up that died after both were made
    assert again.id == created.id and len(runpod.endpoints) == 1
    assert runpod.endpoints[created.id]["workersMax"] == 2


def test_every_change_is_saved_in_place_and_refresh_reads_drift(runpod):
    prov = ServerlessEndpointProvider()
    old = props()
    created = prov.create(old)
    new = props(workers_max=3, idle_timeout=60)
    new["template"] = {**new["template"], "image": "runpod/worker-v1-vllm:v2.28.0"}
    diff = prov.diff(created.id, created.outs, new)
    assert diff.changes and diff.replaces == []
    updated = prov.update(created.id, created.outs, new)
    endpoint = runpod.endpoints[created.id]
    assert (endpoint["workersMax"], endpoint["idleTimeout"]) == (3, 60)
    assert runpod.templates[updated.outs["template_id"]]["imageName"] == "runpod/worker-v1-vllm:v2.28.0"
    assert len(runpod.endpoints) == 1 and len(runpod.templates) == 1

    # Someone raises the workers in RunPod's console: refresh shows it, and the next up puts it back.
    endpoint["workersMax"] = 20
    read = prov.read(created.id, updated.outs)
    assert read.outs["endpoint"]["workers_max"] == 20 and read.inputs["endpoint"]["workers_max"] == 20
    assert prov.diff(created.id, read.outs, new).changes
    assert not prov.diff(created.id, updated.outs, new).changes

    # Deleted behind the state's back: refresh reports it gone; an update says what to do.
    del runpod.endpoints[created.id]
    assert prov.read(created.id, updated.outs).id == ""
    with pytest.raises(CloudError, match="pulumi refresh"):
        prov.update(created.id, updated.outs, new)


def test_a_delete_refused_past_its_deadline_keeps_the_endpoint_in_state(runpod, monkeypatch):
    monkeypatch.setenv("ESTATE_DELETE_TIMEOUT_SECONDS", "0.2")
    prov = ServerlessEndpointProvider()
    created = prov.create(props())
    runpod.inject("status", path="/graphql", count=1000, status=200, body_has="deleteEndpoint",
                  body={"errors": [{"message": "Something went wrong"}]})
    with pytest.raises(CloudError, match="stays in state"):
        prov.delete(created.id, created.outs)
    runpod.faults.clear()
    assert created.id in runpod.endpoints  # nothing deleted behind the error


def test_check_refuses_what_runpod_would_refuse():
    bad = props()
    bad["endpoint"] = {**bad["endpoint"], "workers_min": 4, "workers_max": 2}
    failures = ServerlessEndpointProvider().check({}, bad).failures
    assert [f.property for f in failures] == ["endpoint"] and "workers_min" in failures[0].reason


def spec_with(budget=None, **endpoint):
    raw = stack_estate("prod")
    if budget:
        raw["budget"] = {**raw["budget"], "monthly_usd": budget}
    raw["serverless"] = {"goblin-inference": {**raw["serverless"]["goblin-inference"], **endpoint}}
    return parse_spec(raw)


@pytest.mark.parametrize("change, key, shown", [
    ({"gpu_pools": ["AMPERE_24", "RTX_9999"]}, "serverless.goblin-inference.gpu_pools", "RTX_9999"),
    ({"workers": {"min": 6, "max": 5}}, "serverless.goblin-inference.workers", "workers.min 6"),
    ({"args": ["--max-model-len 8192"]}, "serverless.goblin-inference.args[0]", "--max-model-len 8192"),
    ({"model_size_gb": 30}, "serverless.goblin-inference.model_size_gb", "model_size_gb 30"),
    ({"gpu_pools": ["AMPERE_80"]}, "serverless.goblin-inference.gpu_pools", "AMPERE_80"),
    ({"secret_env": {"HF_TOKEN": "hf token; rm -rf /"}}, "serverless.goblin-inference.secret_env.HF_TOKEN",
     "hf token; rm -rf /"),
    ({"image": "runpod/worker\"; touch x"}, "serverless.goblin-inference.image", "touch x"),
    ({"regions": ["us-east"]}, "serverless.goblin-inference.regions.0", "us-east"),
])
def test_bad_endpoint_values_are_refused_naming_the_key_and_value(change, key, shown):
    with pytest.raises(ConfigError) as err:
        spec_with(**change)
    text = str(err.value)
    assert f"gpu-estate:{key}" in text and shown in text


def test_an_endpoint_named_like_a_node_or_serving_nothing_aliased_is_caught():
    raw = stack_estate("prod")
    raw["serverless"] = {"qwen": raw["serverless"]["goblin-inference"]}
    with pytest.raises(ConfigError, match="gpu-estate:serverless.qwen: a node is named 'qwen'"):
        parse_spec(raw)
    raw = stack_estate("prod")
    raw["serverless"]["goblin-inference"] = {**raw["serverless"]["goblin-inference"], "served_name": "other"}
    with pytest.raises(ConfigError, match="gpu-estate:gateway.aliases.burst: no node serves 'qwen3-8b-serverless'"):
        parse_spec(raw)


def test_the_budget_counts_active_workers_all_month_and_flex_workers_by_busy_hours():
    spec = spec_with(budget=2000, workers={"min": 1, "max": 5}, busy_hours_per_month=100)
    (est,) = pricing.estimate_estate(spec).endpoints
    rates = catalog.serverless_pools()["AMPERE_24"]
    assert est.monthly_usd == pytest.approx(rates["active_per_second"] * 3600 * 730 + rates["flex_per_second"] * 3600 * 100,
                                            abs=0.01)
    stamp = endpoint_stamp("goblin-inference", spec.serverless["goblin-inference"], est)
    # Read as a node by the policy pack and the cost diff: one flex worker's $/h for the equivalent hours.
    assert stamp["hourly_usd"] * stamp["hours_per_month"] == pytest.approx(est.monthly_usd, abs=0.01)
    assert stamp["burst_hourly_usd"] == pytest.approx(5 * rates["flex_per_second"] * 3600, abs=1e-3)
    with pytest.raises(ConfigError, match=r"gpu-estate:budget.monthly_usd: the estate's own estimate is \$"):
        spec_with(workers={"min": 1, "max": 5})  # one 24 GB worker kept all month: over prod's $500
