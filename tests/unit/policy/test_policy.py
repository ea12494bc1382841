"""The policy pack against resources captured from the mocked program for every committed stack (they
pass, with each stack's own pack config) and against hand-made violations (each fails, saying the figure,
the limit and the resource)."""
import copy

import pytest
from pulumi_policy import (
    PolicyResource, PolicyResourceOptions, ResourceValidationArgs, ResourceValidationPolicy, StackValidationArgs,
)

from policy import budget, images, redact, safety
from policy.pack_config import pack_config
from tests.mocks import run_program, stack_config

POLICIES = budget.POLICIES + safety.POLICIES + images.POLICIES
GPU = "pulumi-python:dynamic/gpu:Instance"
CONTAINER = {"stamps": {"provider": "vastai"}}  # a node that is one container: its launch image is deployed


def opts():
    return PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                 custom_timeouts=None, additional_secret_outputs=[])


def as_resources(mocks):
    """The registered resources as the pack sees them: secret values replaced, as policy/redact.py does."""
    return [PolicyResource(r.typ, redact.redact(r.raw_inputs), f"urn:{r.name}", r.name, opts(), None, None, [], {})
            for r in mocks.resources]


def violations(resources, config):
    """Run every policy of the pack as the analyzer would; return (policy, message) pairs."""
    seen = []
    for p in POLICIES:
        cfg = config.get(p.name, {})
        report = lambda msg, urn=None, _p=p.name: seen.append((_p, msg))  # noqa: E731
        if isinstance(p, ResourceValidationPolicy):
            for r in resources:
                p.validate(ResourceValidationArgs(r.resource_type, r.props, r.urn, r.name, r.opts, r.provider, cfg), report)
        else:
            p.validate(StackValidationArgs(resources, cfg), report)
    return seen


def one(fn, typ, props, config=None):
    seen = []
    fn(ResourceValidationArgs(typ, props, "urn:x", "x", opts(), None, config or {}), lambda m, urn=None: seen.append(m))
    return seen


@pytest.fixture(scope="module", params=["dev", "prod", "sandbox"])
def captured(request):
    return request.param, as_resources(run_program(stack_config(request.param), stack=request.param))


def test_committed_stacks_pass_with_their_pack_config(captured):
    stack, resources = captured
    found = violations(resources, pack_config(stack))
    # prod asks for every image by digest: until scripts/pin-images.sh fills the defaults' digests (it needs
    # the registries), its preview names each unpinned image and nothing else (next test).
    assert [v for v in found if v[0] != "images-pinned-by-digest"] == []
    if not pack_config(stack).get("images-pinned-by-digest", {}).get("require_digest"):
        assert found == []


def test_prods_preview_names_every_image_not_pinned_by_digest(captured):
    stack, resources = captured
    if stack != "prod":
        pytest.skip("only prod's pack config asks for digests")
    assert pack_config("prod")["images-pinned-by-digest"] == {"require_digest": True}
    deployed = {ref for r in resources for ref in images.deployed_images(r.resource_type, r.props)}
    unpinned = {ref for ref in deployed if "@sha256:" not in ref}
    named = {m.split("image ", 1)[1].split(" ", 1)[0] for p, m in violations(resources, pack_config("prod"))
             if p == "images-pinned-by-digest"}
    assert named == unpinned
    # Every kind of place an image is deployed from is read: compose files, units, container nodes, serverless.
    from core.images import default_image
    # (open-webui, mlflow and pgvector run on nodes whose compose file holds a secret: redacted for the pack.)
    for service in ("ollama", "comfyui", "litellm", "cloudflared"):
        assert default_image(service).split("@")[0] in {d.split("@")[0] for d in deployed}, service
    assert any(d.startswith("runpod/worker-v1-vllm:") for d in deployed)


def test_an_image_pinned_by_digest_passes_and_one_by_tag_is_named():
    pinned = "ollama/ollama:0.12.6@sha256:" + "0" * 64
    on = {"require_digest": True}
    assert one(images.images_pinned_by_digest, GPU, CONTAINER | {"launch": {"image": pinned}}, on) == []
    (msg,) = one(images.images_pinned_by_digest, GPU, CONTAINER | {"launch": {"image": "ollama/ollama:0.12.6"}}, on)
    assert "ollama/ollama:0.12.6" in msg and "digest" in msg
    assert one(images.images_pinned_by_digest, GPU, CONTAINER | {"launch": {"image": "ollama/ollama:0.12.6"}}) == []  # off by default
    unit = ("ExecStart=/usr/bin/docker run --rm --name estate-caddy --network host -v /etc/estate/gateway/Caddyfile:"
            "/etc/caddy/Caddyfile:ro -v estate-caddy-data:/data caddy:2.10.2\n")
    (msg,) = one(images.images_pinned_by_digest, "command:remote:Command", {"create": unit}, on)
    assert "caddy:2.10.2" in msg


@pytest.mark.parametrize("ref", ["ghcr.io/berriai/litellm:main-v1.79.0-stable", "ghcr.io/berriai/litellm:main-v1.82.7",
                                 "ghcr.io/berriai/litellm:v1.82.8-stable", "ghcr.io/berriai/litellm:main-latest"])
def test_a_litellm_image_below_the_floor_or_compromised_is_refused_naming_it(ref):
    compose = f"services:\n  litellm:\n    image: {ref}\n"
    for typ, props in ((GPU, CONTAINER | {"launch": {"image": ref}}), ("command:remote:Command", {"create": compose})):
        (msg,) = one(images.litellm_patched, typ, props)
        assert ref in msg
    assert one(images.litellm_patched, GPU, CONTAINER | {"launch": {"image": "ghcr.io/berriai/litellm:main-v1.108.7"}}) == []


@pytest.mark.parametrize("version", ["1.82.7", "1.82.8", "1.80.0"])
def test_a_litellm_package_below_the_floor_or_compromised_is_refused_naming_it(version):
    script = f"pip install --no-cache-dir 'litellm[proxy]=={version}'\n"
    (msg,) = one(images.litellm_patched, "command:remote:Command", {"create": script})
    assert f"litellm=={version}" in msg
    (msg,) = one(images.litellm_patched, GPU, CONTAINER | CONTAINER | {"launch": {"image": "x/y:1", "onstart": script}})
    assert version in msg


def test_every_policy_has_a_name_description_and_level():
    names = [p.name for p in POLICIES]
    assert len(set(names)) == len(names) == 15
    for p in POLICIES:
        assert p.description and p.enforcement_level is not None


def test_a_stack_file_over_its_budget_is_refused_by_the_pack(tmp_path, captured):
    stack, resources = captured
    raw = (tmp_path / f"Pulumi.{stack}.yaml")
    import yaml
    doc = {"config": copy.deepcopy(stack_config(stack))}
    doc["config"]["gpu-estate:budget"]["monthly_usd"] = 40
    raw.write_text(yaml.safe_dump(doc))
    (tmp_path / "policy" / "stacks").mkdir(parents=True)
    found = violations(resources, pack_config(stack, root=tmp_path))
    (msg,) = [m for p, m in found if p == "estate-monthly-budget"]
    assert "exceeds the monthly budget $40.00" in msg
    (msg,) = [m for p, m in found if p == "estate-plan-budget"]
    assert "above the monthly budget $40.00; nothing was rented" in msg


def test_the_monthly_estimate_counts_fixed_costs():
    prod = as_resources(run_program(stack_config("prod"), stack="prod"))
    seen = []
    budget.monthly_budget(StackValidationArgs(prod, {"monthly_usd": 1}), lambda m, urn=None: seen.append(m))
    assert "fixed $5.00" in seen[0]


STAMP = {"node": "inference", "provider": "tensordock", "hourly_usd": 0.8, "hours_per_month": 200,
         "idle_shutdown_minutes": 0, "pay_per_use": True, "gpu": "rtx4090", "market": "on-demand",
         "regions": ["Germany"], "region": "Germany"}


def test_hourly_cap_names_node_figure_and_limit():
    (msg,) = one(budget.node_hourly_cap, GPU, {"stamps": STAMP}, {"max_hourly_per_node": 0.5})
    assert "'inference'" in msg and "$0.800/h" in msg and "$0.50/h" in msg


def test_idle_shutdown_required_for_part_time_pay_per_use():
    (msg,) = one(budget.idle_shutdown_required, GPU, {"stamps": STAMP})
    assert "no idle_shutdown_minutes" in msg
    assert one(budget.idle_shutdown_required, GPU, {"stamps": {**STAMP, "idle_shutdown_minutes": 30}}) == []


def test_daily_cap_on_24h_cloud_vm_tags():
    tags = {"estate-node": "burst", "estate-hourly-usd": "3_1", "estate-hours-per-month": "730",
            "estate-pay-per-use": "true", "estate-idle-shutdown-minutes": "0"}
    (msg,) = one(budget.daily_cap, "aws:ec2/launchTemplate:LaunchTemplate", {"tags": tags}, {"daily_usd": 50})
    assert "$74.40/day" in msg and "$50.00/day" in msg


def test_providers_gpus_and_regions_outside_the_allowed_lists():
    (msg,) = one(safety.allowed_providers, GPU, {"stamps": {**STAMP, "provider": "vastai"}}, {"providers": ["tensordock"]})
    assert "'inference' runs on 'vastai'; allowed providers: tensordock" in msg
    (msg,) = one(safety.allowed_gpus, GPU, {"stamps": {**STAMP, "gpu": "h100"}}, {"gpus": ["rtx4090"]})
    assert "asks for 'h100'; allowed GPUs: rtx4090" in msg
    (msg,) = one(safety.allowed_regions, GPU, {"stamps": {**STAMP, "regions": ["Germany", "Iceland"]}},
                 {"regions": ["germany"]})
    assert "may be placed in Iceland" in msg
    (msg,) = one(safety.allowed_regions, GPU, {"stamps": {**STAMP, "regions": [], "region": ""}}, {"regions": ["germany"]})
    assert "may be placed anywhere" in msg


def test_spot_only_where_allowed():
    spot = {**STAMP, "provider": "runpod", "market": "spot"}
    (msg,) = one(safety.spot_where_allowed, GPU, {"stamps": spot}, {"spot_providers": ["vastai"]})
    assert "uses spot on 'runpod'; spot is allowed on: vastai" in msg
    assert one(safety.spot_where_allowed, GPU, {"stamps": spot}, {"spot_providers": ["runpod"]}) == []


def test_model_server_ports_never_open_to_the_internet():
    (msg,) = one(safety.model_servers_not_exposed, GPU, {"stamps": STAMP, "launch": {"ports": [3000, 11434]}})
    assert "publishes model server ports [11434] without auth" in msg
    assert one(safety.model_servers_not_exposed, GPU, {"stamps": STAMP, "launch": {"ports": [11434]}},
               {"allow_direct_access": True}) == []
    # A model server the stack moved to another port is recognised there, from the node's stamps.
    moved = {**STAMP, "model_ports": "18000-3000"}
    (msg,) = one(safety.model_servers_not_exposed, GPU, {"stamps": moved, "launch": {"ports": [18000]}})
    assert "publishes model server ports [18000]" in msg
    assert one(safety.model_servers_not_exposed, GPU, {"stamps": STAMP, "launch": {"ports": [18000]}}) == []
    # Firewalls: nothing but SSH (its stamped port) and 80/443 open to the world, whatever listens there.
    sg = {"ingress": [{"fromPort": 8000, "toPort": 9000, "protocol": "tcp", "cidrBlocks": ["0.0.0.0/0"]}]}
    (msg,) = one(safety.model_servers_not_exposed, "aws:ec2/securityGroup:SecurityGroup", sg)
    assert "opens 8000-9000 to the internet" in msg
    sg = {"tags": {"estate-ssh-port": "2222"}, "ingress": [
        {"fromPort": p, "toPort": p, "protocol": "tcp", "cidrBlocks": ["0.0.0.0/0"]} for p in (2222, 80, 443)]
        + [{"fromPort": 31337, "toPort": 31337, "protocol": "tcp", "cidrBlocks": ["10.0.0.0/8"]}]}
    assert one(safety.model_servers_not_exposed, "aws:ec2/securityGroup:SecurityGroup", sg) == []
    everything = {"ingress": [{"fromPort": 0, "toPort": 0, "protocol": "-1", "ipv6CidrBlocks": ["::/0"]}]}
    (msg,) = one(safety.model_servers_not_exposed, "aws:ec2/securityGroup:SecurityGroup", everything)
    assert "opens 0-21, 23-79, 81-442, 444-65535" in msg
    fw = {"sourceRanges": ["0.0.0.0/0"], "allows": [{"protocol": "tcp", "ports": ["22", "5000-5001", "31337"]}]}
    (msg,) = one(safety.model_servers_not_exposed, "gcp:compute/firewall:Firewall", fw)
    assert "opens 5000-5001, 31337" in msg


def test_env_keys_a_marketplace_reads_as_docker_options_are_refused():
    props = {"stamps": STAMP, "launch": {"ports": [], "env": {"-p 8080:8080": "1", "OK_NAME": "x"}}}
    (msg,) = one(safety.model_servers_not_exposed, GPU, props, {"allow_direct_access": True})
    assert "env keys ['-p 8080:8080'] are not variable names" in msg


def test_the_programs_own_prod_plan_opens_nothing_the_policy_refuses():
    prod = as_resources(run_program(stack_config("prod"), stack="prod"))
    seen = []
    for r in prod:
        args = ResourceValidationArgs(r.resource_type, r.props, r.urn, r.name, r.opts, r.provider, {})
        safety.model_servers_not_exposed(args, lambda m, urn=None: seen.append(m))
        safety.no_credentials_in_visible_fields(args, lambda m, urn=None: seen.append(m))
    assert seen == [] and any(r.resource_type == safety.AWS_SG for r in prod)


def test_routes_without_auth_or_without_their_access_app_are_refused():
    prod = as_resources(run_program(stack_config("prod"), stack="prod"))
    without_apps = [r for r in prod if r.resource_type != safety.ACCESS_APP]
    seen = []
    safety.routes_behind_auth(StackValidationArgs(without_apps, {}), lambda m, urn=None: seen.append(m))
    assert sorted(seen)[0] == "chat.example.com (inference/open-webui) says auth=access but no Access application covers it"
    record = PolicyResource(safety.DNS_RECORD, {"name": "ollama.example.com", "comment": "gpu-estate route qwen/ollama auth=none"},
                            "urn:r", "r", opts(), None, None, [], {})
    seen = []
    safety.routes_behind_auth(StackValidationArgs([record], {}), lambda m, urn=None: seen.append(m))
    assert seen == ["ollama.example.com publishes qwen/ollama without auth"]
    # A workload of another name says its kind; a kind the pack does not know counts as a model server.
    for comment, refused in (("gpu-estate route gpu/api auth=none kind=container", True),
                             ("gpu-estate route gpu/chat auth=none kind=open-webui", False),
                             ("gpu-estate route gpu/novel auth=none kind=unheard-of", True)):
        record = PolicyResource(safety.DNS_RECORD, {"name": "x.example.com", "comment": comment},
                                "urn:r", "r", opts(), None, None, [], {})
        seen = []
        safety.routes_behind_auth(StackValidationArgs([record], {}), lambda m, urn=None: seen.append(m))
        assert bool(seen) is refused, comment


@pytest.mark.parametrize("typ,props,what", [
    (GPU, {"launch": {"env": {"OPENAI_API_KEY": "sk-proj-abcdefghijklmnopqrstuvwx"}}}, "an OpenAI/LiteLLM style key"),
    ("command:remote:Command", {"create": "echo '-----BEGIN OPENSSH PRIVATE KEY-----' > k"}, "a private key"),
    ("command:remote:Command", {"environment": {"AWS": "AKIAABCDEFGHIJKLMNOP"}}, "an AWS access key id"),
    (GPU, {"launch": {"env": {"POSTGRES_PASSWORD": "hunter2hunter2"}}}, "a credential assignment"),
    # By value, whatever the variable is called.
    (GPU, {"launch": {"env": {"MODEL_SOURCE": "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"}}}, "a Hugging Face token"),
    (GPU, {"launch": {"onstart": "git clone https://ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789@github.com/o/r"}},
     "a GitHub token"),
    ("command:remote:Command", {"create": "psql postgres://estate:s3cretpass@db:5432/vectors"}, "a URL with a password"),
    (GPU, {"launch": {"env": {"UPSTREAM": "https://admin:hunter2@example.com/api"}}}, "a URL with a password"),
    (GPU, {"stamps": {"note": "rpa_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"}}, "a RunPod API key"),
    (GPU, {"label": "x-AIzaSyA1234567890abcdefghijklmnopqrstuv"}, "a Google API key"),
])
def test_credentials_in_fields_others_can_read_are_refused(typ, props, what):
    (msg,) = one(safety.no_credentials_in_visible_fields, typ, props)
    assert what in msg and "Pulumi secret" in msg


def test_a_reference_to_a_secret_is_not_a_credential():
    props = {"create": "install -m 600 /dev/stdin /etc/x; echo MASTER_KEY=$LITELLM_MASTER_KEY"}
    assert one(safety.no_credentials_in_visible_fields, "command:remote:Command", props) == []
    # A RunPod secret is referenced in a pod's env by name; a URL with a user but no password is fine.
    props = {"launch": {"env": {"HF_TOKEN": "{{ RUNPOD_SECRET_hf_token }}", "REPO": "https://git@example.com/o/r"}}}
    assert one(safety.no_credentials_in_visible_fields, GPU, props) == []


def model(node, size, vram=48, max_loaded=0):
    props = {"node": node, "stamps": {"node": node, "model_vram_gb": size, "vram_gb": vram, "max_loaded": max_loaded}}
    return PolicyResource(safety.OLLAMA_MODEL, props, f"urn:{node}-{size}", f"{node}-{size}", opts(), None, None, [], {})


def test_models_must_fit_the_nodes_vram():
    seen = []
    safety.models_fit_vram(StackValidationArgs([model("qwen", 22), model("qwen", 20), model("qwen", 10)], {}),
                           lambda m, urn=None: seen.append(m))
    assert seen == ["node 'qwen': resident models need 52.0 GB VRAM, above the 43.2 GB usable (90% of 48 GB)"]
    seen = []
    safety.models_fit_vram(StackValidationArgs([model("qwen", 22, max_loaded=1), model("qwen", 20, max_loaded=1)], {}),
                           lambda m, urn=None: seen.append(m))
    assert seen == []


def test_litellm_key_references_are_not_credentials():
    props = {"create": "cat > config.yaml <<'EOF'\n    api_key: os.environ/OPENAI_API_KEY\nEOF"}
    assert one(safety.no_credentials_in_visible_fields, "command:remote:Command", props) == []


def test_a_credential_passed_as_a_secret_passes_and_the_same_in_plain_text_fails():
    secret = {"launch": {"env": {"HF_TOKEN": {redact.deserialize.SPECIAL_SIG_KEY: redact.deserialize.SPECIAL_SECRET_SIG,
                                              "value": "hf_abcdefghijklmnopqrstuvwxyz"}}}}
    assert one(safety.no_credentials_in_visible_fields, GPU, redact.redact(secret)) == []
    (msg,) = one(safety.no_credentials_in_visible_fields, GPU, {"launch": {"env": {"HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyz"}}})
    assert "launch.env holds a credential assignment in plain text" in msg


def test_the_pack_hides_secret_values_from_validations():
    from pulumi_policy import policy as pp
    raw = {"a": {redact.deserialize.SPECIAL_SIG_KEY: redact.deserialize.SPECIAL_SECRET_SIG, "value": "s3cr3t"}, "b": 1}
    saved = pp.deserialize_properties
    try:
        redact.install()
        assert pp.deserialize_properties(raw) == {"a": "[secret]", "b": 1}
    finally:
        pp.deserialize_properties = saved


ENDPOINT = "pulumi-python:dynamic/runpod:Endpoint"


def endpoint_props(**stamps):
    from core.config import parse_spec
    from core.stamps import endpoint_stamp
    from core.topology import plan_estate
    from tests.mocks import stack_estate

    plan = plan_estate(parse_spec(stack_estate("prod")))
    stamp = endpoint_stamp("goblin-inference", plan.spec.serverless["goblin-inference"],
                           plan.endpoint_estimates["goblin-inference"])
    return {"name": "gpu-estate-prod-goblin-inference", "stamps": {**stamp, **stamps},
            "template": {"image": "runpod/worker-v1-vllm:v2.27.0", "env": {"HF_TOKEN": "{{ RUNPOD_SECRET_hf-token }}"}}}


def test_a_serverless_endpoint_is_held_to_the_providers_gpus_caps_and_secrets_of_the_pack():
    props = endpoint_props(gpu="AMPERE_24,ADA_24")
    (msg,) = one(safety.allowed_providers, ENDPOINT, props, {"providers": ["runpod"]})
    assert "node 'goblin-inference' runs on 'runpod-serverless'" in msg
    (msg,) = one(safety.allowed_gpus, ENDPOINT, props, {"gpus": ["rtx4090", "AMPERE_24"]})
    assert "asks for 'ADA_24'" in msg  # every pool a worker may start on is checked
    assert one(safety.allowed_gpus, ENDPOINT, props, {"gpus": ["AMPERE_24", "ADA_24"]}) == []
    (msg,) = one(budget.node_hourly_cap, ENDPOINT, props, {"max_hourly_per_node": 0.5})
    assert "node 'goblin-inference' costs $0.684/h, above the cap $0.50/h" in msg
    # Its template's env is readable in RunPod's console: a reference passes, a token does not.
    assert one(safety.no_credentials_in_visible_fields, ENDPOINT, props) == []
    leaked = {**props, "template": {"env": {"HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyz0123456789"}}}
    (msg,) = one(safety.no_credentials_in_visible_fields, ENDPOINT, leaked)
    assert "Hugging Face token" in msg


def test_the_monthly_budget_counts_a_serverless_endpoint_at_its_planned_figure():
    props = endpoint_props()
    resources = [PolicyResource(ENDPOINT, props, "urn:e", "e", opts(), None, None, [], {})]
    seen = []
    budget.monthly_budget(StackValidationArgs(resources, {"monthly_usd": 40}), lambda m, urn=None: seen.append(m))
    (msg,) = seen
    assert "estimated $41.04/month" in msg


def test_the_daily_cap_counts_an_endpoints_active_workers_not_its_flex_ones():
    idle = endpoint_props()  # prod's: no active worker, however busy its flex workers may be
    assert idle["stamps"]["always_on_daily_usd"] == 0
    assert one(budget.daily_cap, ENDPOINT, idle, {"daily_usd": 1}) == []
    kept = endpoint_props(always_on_daily_usd=round(2 * 0.00013 * 3600 * 24, 2), min_workers=2)
    (msg,) = one(budget.daily_cap, ENDPOINT, kept, {"daily_usd": 20})
    assert "keeps 2 active workers at $22.46/day, above $20.00/day" in msg
