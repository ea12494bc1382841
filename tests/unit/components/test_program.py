"""The whole program under Pulumi mocks, for every committed stack file."""
import pytest

from tests.mocks import MOCK_HOST_KEY, run_program, stack_config

GPU = "pulumi-python:dynamic/gpu:Instance"
NODE = "gpu-estate:index:GpuNode"


@pytest.fixture(scope="module")
def dev():
    return run_program(stack_config("dev"), stack="dev")


@pytest.fixture(scope="module")
def prod():
    return run_program(stack_config("prod"), stack="prod")


def test_dev_rents_one_tensordock_4090_with_ollama_and_webui(dev):
    (inst,) = dev.of_type(GPU)
    assert inst.name == "inference-instance"
    assert inst.inputs["clouds"] == ["tensordock"]
    assert inst.inputs["label"] == "gpu-estate-dev-inference"
    assert inst.inputs["request"]["gpu_model"] == "rtx4090"
    assert inst.inputs["request"]["max_price_per_hour"] == 0.40
    assert inst.inputs["power"] == "running"
    cloud_init = inst.inputs["launch"]["cloud_init"]  # the bootstrap only: no workload edit changes it
    assert cloud_init.startswith("#cloud-config") and "estate-idle.timer" in cloud_init
    assert "ollama/ollama" not in cloud_init
    deploy = dev.named("inference-workloads")  # the compose project arrives over SSH and changes in place
    assert deploy.typ == "command:remote:Command" and deploy.inputs["connection"]["host"] == "198.51.100.7"
    for image in ("ollama/ollama", "open-webui"):
        assert image in deploy.inputs["create"]
    assert "docker compose -f /opt/estate/compose.yaml up -d --remove-orphans" in deploy.inputs["create"]
    assert inst.inputs["stamps"]["idle_shutdown_minutes"] == 30
    assert inst.inputs["stamps"]["hours_per_month"] == 120


def test_every_child_has_a_parent_and_real_type(prod):
    estate = prod.named("estate")
    assert estate.typ == "gpu-estate:index:Estate"
    nodes = {r.name: r for r in prod.of_type(NODE)}
    assert set(nodes) == {"inference", "training", "qwen", "batch", "burst", "gcp-dev", "vps"}
    for r in prod.resources:
        assert r.typ.count(":") >= 2 and not r.typ.startswith("pulumi-python:dynamic:Resource")
    for inst in prod.of_type(GPU):
        assert inst.custom


def test_prod_uses_every_provider(prod):
    clouds = {tuple(r.inputs["clouds"]) for r in prod.of_type(GPU)}
    assert clouds == {("tensordock",), ("vastai",), ("runpod",)}
    assert prod.of_type("aws:ec2/instance:Instance")
    assert prod.of_type("gcp:compute/instance:Instance")
    assert prod.of_type("gcp:storage/bucket:Bucket")


def test_vast_node_is_one_container_running_every_workload(prod):
    qwen = prod.named("qwen-instance")
    launch = qwen.inputs["launch"]
    # ComfyUI needs its own image; Ollama, also declared, is started inside it by the start script.
    assert launch["image"].startswith("yanwk/comfyui-boot")
    assert "ollama serve" in launch["onstart"] and launch["onstart"].rstrip().endswith("exec /runner-scripts/entrypoint.sh")
    assert launch["ports"] == []  # reached over SSH: Ollama and ComfyUI are not published
    assert launch["env"]["OLLAMA_MAX_LOADED_MODELS"] == "1"
    # ComfyUI's images bridge is started beside it, on the container's loopback (reached over SSH).
    assert "images_bridge.py --config /root/estate-images/config.json --host 127.0.0.1 --port 8189" in launch["onstart"]
    assert launch.get("cloud_init") is None
    assert qwen.inputs["bid_per_hour"] == 0.27
    assert qwen.inputs["request"]["spot"] is True


def test_aws_spot_node_has_launch_template_and_private_firewall(prod):
    (lt,) = prod.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert lt.inputs["instanceType"] == "g5.xlarge"
    assert lt.inputs["instanceMarketOptions"]["marketType"] == "spot"
    assert lt.inputs["metadataOptions"]["httpTokens"] == "required"
    (sg,) = prod.of_type("aws:ec2/securityGroup:SecurityGroup")
    assert [i["fromPort"] for i in sg.inputs["ingress"]] == [22]
    assert lt.inputs["tags"]["estate-hourly-usd"] == "0_42"


def test_gcp_spot_node(prod):
    (vm,) = prod.of_type("gcp:compute/instance:Instance")
    assert vm.inputs["machineType"] == "g2-standard-4"
    assert vm.inputs["scheduling"]["provisioningModel"] == "SPOT"
    (fw,) = prod.of_type("gcp:compute/firewall:Firewall")
    assert fw.inputs["allows"][0]["ports"] == ["22"]


def test_gcs_bucket_private_versioned_with_lifecycle(prod):
    (b,) = prod.of_type("gcp:storage/bucket:Bucket")
    assert b.inputs["publicAccessPrevention"] == "enforced"
    assert b.inputs["versioning"]["enabled"] is True
    assert b.inputs["lifecycleRules"][0]["condition"]["daysSinceNoncurrentTime"] == 30


def test_owned_host_creates_nothing_billable(prod):
    vps = prod.named("vps")
    children = [r for r in prod.resources if r.name.startswith("vps-")]
    # Only its pinned host key, from the stack: nothing rented, nothing scanned.
    assert vps.typ == NODE and [c.typ for c in children] == ["pulumi-python:dynamic/ssh:HostKey"]
    assert children[0].inputs["expected"].startswith("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGgtgdW9")


def test_credentials_never_reach_resource_inputs(prod, monkeypatch):
    for r in prod.of_type(GPU):
        flat = repr(r.inputs)
        assert "token" not in flat.lower() and "api_key" not in flat.lower()


MODEL = "pulumi-python:dynamic/ollama:Model"


def test_each_model_is_its_own_resource_reached_over_ssh(prod):
    qwen = {r.inputs["model"]: r for r in prod.of_type(MODEL) if r.inputs["node"] == "qwen"}
    assert set(qwen) == {"qwen3:32b", "qwen3:30b-a3b", "qwen3:14b", "qwen3:8b"}
    m = qwen["qwen3:32b"]
    assert m.name == "qwen-qwen3-32b"
    assert m.inputs.get("endpoint") is None and m.inputs["active"] is True
    assert m.inputs["ssh"] == {"host": "198.51.100.7", "port": 22, "user": "root",
                               "key_env": "ESTATE_SSH_PRIVATE_KEY", "remote_port": 11434,
                               "host_key": MOCK_HOST_KEY}  # the forward verifies the pinned key
    assert m.inputs["instance"] == "vastai:i-1"


def test_direct_access_nodes_give_the_mapped_endpoint():
    sandbox = run_program(stack_config("sandbox"), stack="sandbox")
    models = {(r.inputs["node"], r.inputs["model"]): r for r in sandbox.of_type(MODEL)}
    assert set(models) == {("inference", "llama3.2:3b"), ("inference", "qwen3:8b"), ("qwen", "qwen3:14b"),
                           ("qwen", "qwen3:8b"), ("batch", "tinyllama:1.1b"), ("vm", "127.0.0.1:5000/library/tiny:1")}
    assert models[("inference", "qwen3:8b")].inputs["endpoint"] == "http://198.51.100.7:41434"
    assert models[("inference", "qwen3:8b")].inputs.get("ssh") is None
    # The VM node (access: ssh) is reached through a forward to its loopback, never a published port.
    vm = models[("vm", "127.0.0.1:5000/library/tiny:1")].inputs
    assert vm.get("endpoint") is None and vm["ssh"]["remote_port"] == 21434


def test_models_of_a_stopped_node_are_left_alone():
    config = stack_config("dev")
    config["gpu-estate:nodes"]["inference"]["power"] = "stopped"
    dev = run_program(config, stack="dev")
    models = dev.of_type(MODEL)
    assert models and all(m.inputs["active"] is False for m in models)


def redacted(value):
    """``value`` with every secret replaced, as a state file's plaintext would show it."""
    from tests.mocks import SECRET_SIG

    if isinstance(value, dict):
        if value.get(SECRET_SIG[0]) == SECRET_SIG[1]:
            return "[secret]"
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def test_generated_passwords_and_bucket_keys_reach_nodes_only_as_secrets(prod):
    from tests.mocks import MOCK_SECRET

    assert prod.named("training-pg-password").typ == "random:index/randomPassword:RandomPassword"
    training = prod.named("training-instance")
    secrets = prod.named("training-secrets")  # the password file reaches the node on stdin ...
    assert "stdin" in secrets.secret_paths and secrets.inputs["logging"] == "none"
    assert "/opt/estate/secrets/pg_password " in secrets.inputs["stdin"]
    assert MOCK_SECRET not in prod.named("training-workloads").inputs["create"]  # ... never in a command
    assert training.inputs.get("secrets") is None and training.inputs["launch"]["image"] == "ubuntu2404"
    for r in prod.resources:
        assert MOCK_SECRET not in repr(redacted(r.raw_inputs)), f"{r.name} holds a secret in plain text"


def test_bucket_credentials_are_scoped_to_the_bucket_and_its_nodes(prod):
    members = {m.name: m for m in prod.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")}
    # The readers listed, and the Cloud Run service's own account, which may only read.
    assert set(members) == {"models-training-access", "models-inference-access", "service-llama-l4-model-read"}
    assert members["service-llama-l4-model-read"].inputs["role"] == "roles/storage.objectViewer"
    member = members["models-training-access"]
    assert member.inputs["role"] == "roles/storage.objectAdmin"
    assert member.inputs["bucket"] == "gpu-estate-prod-models"
    assert member.inputs["member"].startswith("serviceAccount:estate-training-")
    accounts = {a.inputs["accountId"] for a in prod.of_type("gcp:serviceaccount/account:Account")}
    assert len(accounts) == 4 and all(6 <= len(a) <= 30 for a in accounts)  # two readers, Cloud Run's two


def test_vms_are_always_declared_running_or_stopped(prod):
    (state,) = prod.of_type("aws:ec2transitgateway/instanceState:InstanceState")
    assert state.inputs["state"] == "running"


def test_an_aws_node_launches_from_a_pinned_image():
    config = stack_config("prod")
    prod = run_program(config, stack="prod")
    (lt,) = prod.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert lt.inputs["imageId"] == "ami-0123456789abcdef0"  # the newest at first launch, then kept
    assert [c.token for c in prod.calls].count("aws:ec2/getAmi:getAmi") == 1
    config["gpu-estate:nodes"]["burst"]["image"] = "ami-0fedcba9876543210"
    named = run_program(config, stack="prod")
    (lt,) = named.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert lt.inputs["imageId"] == "ami-0fedcba9876543210"
    assert "aws:ec2/getAmi:getAmi" not in [c.token for c in named.calls]  # no lookup that could move


def test_power_idle_leaves_the_power_state_to_the_watcher():
    config = stack_config("prod")
    for name in ("burst", "gcp-dev", "inference"):
        config["gpu-estate:nodes"][name]["power"] = "idle"
    prod = run_program(config, stack="prod")
    assert not prod.of_type("aws:ec2transitgateway/instanceState:InstanceState")
    (gcp_vm,) = prod.of_type("gcp:compute/instance:Instance")
    assert gcp_vm.inputs.get("desiredStatus") is None
    (inference,) = [r for r in prod.of_type("pulumi-python:dynamic/gpu:Instance") if r.name == "inference-instance"]
    assert inference.inputs["power"] == "idle"
    # Its models are kept and the gateway still routes to it (fallbacks cover a stopped node).
    assert all(m.inputs["active"] for m in prod.of_type(MODEL) if m.inputs["node"] == "inference")


def test_a_stack_missing_what_a_real_deploy_needs_fails_naming_the_key(monkeypatch):
    from core.config import GCP_PROJECT_ENV, parse_spec
    from core.errors import ConfigError
    from tests.mocks import stack_estate

    raw = stack_estate("prod")
    raw["nodes"]["inference"].pop("ssh")
    with pytest.raises(ConfigError, match=r"gpu-estate:nodes.inference.ssh.public_key: TensorDock creates a VM only "
                                          r"with an SSH public key"):
        parse_spec(raw)
    for name in GCP_PROJECT_ENV:
        monkeypatch.delenv(name, raising=False)
    config = {k: v for k, v in stack_config("prod").items() if k != "gcp:project"}
    with pytest.raises(Exception, match=r"gcp:project: gpu-estate:nodes.gcp-dev.provider is on GCP: set `pulumi "
                                        r"config set gcp:project <id>`"):
        run_program(config, stack="prod")
    assert run_program(stack_config("prod"), stack="prod").of_type("gcp:compute/instance:Instance")


def test_prods_gateway_answers_where_seed_002_expects_it_and_its_route_follows(prod):
    from core.config import parse_spec
    from core.topology import plan_estate
    from tests.mocks import stack_estate

    plan = plan_estate(parse_spec(stack_estate("prod")))
    assert plan.spec.gateway.port == 8000
    assert plan.upstreams["myai.example.com"].url == "http://127.0.0.1:8000"
    qwen = [e for e in plan.estimate.nodes if e.node == "qwen"][0]
    assert 180 <= qwen.hourly_usd * qwen.hours_per_month <= 220  # seed 002's $180-220 a month


def test_tensordock_vms_reached_over_ssh_get_a_generated_host_key_known_before_first_contact(prod):
    keys = {r.name for r in prod.of_type("pulumi-python:dynamic/ssh:Key")}
    assert {"inference-ssh-host-key", "training-ssh-host-key"} <= keys
    inference = prod.named("inference-instance")
    assert "host_key" in inference.secret_paths  # the private key is a secret in state
    (pinned,) = [r for r in prod.of_type("pulumi-python:dynamic/ssh:HostKey") if r.name == "inference-host-key"]
    assert pinned.inputs["expected"] == " ".join(inference.inputs["host_key"]["public"].split()[:2])
    # A Vast.ai container's key is its vendor's: recorded on first contact.
    qwen = prod.named("qwen-instance")
    assert qwen.inputs.get("host_key") is None


def test_a_gcp_vm_boots_with_a_generated_host_key_and_an_older_one_keeps_its_own(prod):
    import yaml

    from providers.host_key import STAGED, launched_with

    vm = prod.named("gcp-dev-vm")
    assert "metadata" in vm.secret_paths or "metadata.user-data" in vm.secret_paths  # the private host key
    doc = yaml.safe_load(vm.inputs["metadata"]["user-data"])
    assert STAGED in [f["path"] for f in doc["write_files"]]
    (pinned,) = [r for r in prod.of_type("pulumi-python:dynamic/ssh:HostKey") if r.name == "gcp-dev-host-key"]
    (key,) = [r for r in prod.of_type("pulumi-python:dynamic/ssh:Key") if r.name == "gcp-dev-ssh-host-key"]
    assert pinned.inputs["expected"] == "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG1vY2t0dW5uZWxrZXk="
    assert key.inputs["comment"] == "gpu-estate-prod-gcp-dev host key"
    # The rule behind it: GCP updates metadata in place, so only a VM launched after the key has it.
    made = "2026-11-24T10:00:00+00:00"
    assert launched_with("2026-11-24T02:00:05.000-08:00", made)       # 10:00:05 UTC: after
    assert not launched_with("2026-11-24T01:59:59.000-08:00", made)   # 09:59:59 UTC: before
    assert not launched_with(None, made) and not launched_with("2026-11-24T11:00:00+00:00", None)
    # AWS keeps its own key (a new user-data would replace the VM): recorded on first contact.
    (burst,) = [r for r in prod.of_type("pulumi-python:dynamic/ssh:HostKey") if r.name == "burst-host-key"]
    assert burst.inputs.get("expected") is None


def test_an_aws_node_runs_in_its_own_region_and_is_pinned_from_its_console(monkeypatch):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    config = stack_config("prod")
    # In the stack's region (aws:region): the default provider, as a VM launched before had.
    assert config["aws:region"] == config["gpu-estate:nodes"]["burst"]["regions"][0]
    prod = run_program(config, stack="prod")
    assert prod.of_type("pulumi:providers:aws") == []
    (key,) = [r for r in prod.of_type("pulumi-python:dynamic/ssh:HostKey") if r.name == "burst-host-key"]
    assert key.inputs["console"] == {"instance_id": "burst-vm-id", "region": "us-east-1"}
    # Elsewhere (seed 004's ca-central-1): a provider of that region makes everything the node has.
    config["gpu-estate:nodes"]["burst"]["regions"] = ["ca-central-1"]
    moved = run_program(config, stack="prod")
    (provider,) = moved.of_type("pulumi:providers:aws")
    assert provider.inputs["region"] == "ca-central-1"
    aws = [r for r in moved.resources if r.typ.startswith("aws:") and r.name.startswith("burst-")]
    assert {r.typ.split(":")[1] for r in aws} >= {"ec2/launchTemplate", "ec2/instance", "ec2/securityGroup"}
    assert all("burst-aws-ca-central-1" in (r.provider or "") for r in aws)
    (ami,) = [c for c in moved.calls if c.token == "aws:ec2/getAmi:getAmi"]
    assert "burst-aws-ca-central-1" in (ami.provider or "")
    (key,) = [r for r in moved.of_type("pulumi-python:dynamic/ssh:HostKey") if r.name == "burst-host-key"]
    assert key.inputs["console"]["region"] == "ca-central-1"


def test_an_aws_node_checks_its_ec2_quota_in_its_region_before_launch(prod):
    (quota,) = prod.of_type("pulumi-python:dynamic/aws:Quota")
    assert quota.name == "burst-quota"
    assert {k: quota.inputs[k] for k in ("node", "region", "instance_type", "market", "vcpus")} == {
        "node": "burst", "region": "us-east-1", "instance_type": "g5.xlarge", "market": "spot", "vcpus": 4}
    assert quota.inputs["quota_names"] == ["All G and VT Spot Instance Requests"]


ENDPOINT = "pulumi-python:dynamic/runpod:Endpoint"


def test_prods_serverless_endpoint_carries_its_scaling_and_secret_references_and_joins_the_gateway(prod):
    (e,) = prod.of_type(ENDPOINT)
    assert e.name == "serverless-goblin-inference" and e.inputs["name"] == "gpu-estate-prod-goblin-inference"
    assert e.inputs["endpoint"] == {"gpu_ids": "AMPERE_24", "gpu_count": 1, "locations": "", "idle_timeout": 300,
                                    "scaler_type": "QUEUE_DELAY", "scaler_value": 4, "workers_min": 0,
                                    "workers_max": 5, "flashboot": True}
    assert e.inputs["template"]["env"] == {"HF_TOKEN": "{{ RUNPOD_SECRET_hf-token }}", "MAX_MODEL_LEN": "8192",
                                           "MODEL_NAME": "Qwen/Qwen3-8B",
                                           "OPENAI_SERVED_MODEL_NAME_OVERRIDE": "qwen3-8b-serverless"}
    assert e.inputs["stamps"]["provider"] == "runpod-serverless" and e.inputs["stamps"]["monthly_usd"] == 41.04
    # The gateway's config routes 'burst' to the endpoint's OpenAI route with the RunPod key by reference.
    deploy = prod.named("gateway-deploy")
    assert "api_base: https://api.runpod.ai/v2/ep-1/openai/v1" in deploy.inputs["stdin"]
    assert "api_key: os.environ/RUNPOD_API_KEY" in deploy.inputs["stdin"]


def test_the_runpod_key_reaches_the_gateway_host_only_as_a_secret():
    key = "rpa_" + "K" * 40
    with_key = run_program({**stack_config("prod"), "gpu-estate:runpodApiKey": key}, stack="prod")
    secrets = with_key.named("gateway-secrets")
    import base64

    files = dict(line.split(" ", 1) for line in secrets.inputs["stdin"].splitlines())
    env = base64.b64decode(files["/etc/estate/gateway/gateway.env"]).decode()
    assert "stdin" in secrets.secret_paths and f"RUNPOD_API_KEY={key}\n" in env
    for r in with_key.resources:
        assert key not in repr(redacted(r.raw_inputs)), f"{r.name} holds the RunPod key in plain text"


def test_a_local_gateway_keeps_a_forward_of_its_own_to_each_ssh_node_it_routes_to():
    sandbox = run_program(stack_config("sandbox"), stack="sandbox")
    (tunnel,) = sandbox.of_type("pulumi-python:dynamic/gateway:LocalTunnel")
    assert tunnel.inputs["node"] == "vm" and tunnel.inputs["remote_ports"] == [21434]
    assert tunnel.inputs["user"] == "root" and tunnel.inputs["host_key"]  # the node's pinned key, nothing else
    assert "private" not in repr(tunnel.inputs).lower()  # the operator's key is read at run time, never an input


def test_the_program_refuses_a_misspelt_top_level_key_it_would_never_ask_for():
    """``pulumi.Config`` reads one named key at a time; the program lists the namespace's keys from the map
    the language host hands it (``PULUMI_CONFIG``), so ``gpu-estate:tunnel`` is refused, not dropped."""
    import copy

    from tests.mocks import run_program, stack_config

    config = copy.deepcopy(stack_config("prod"))
    config["gpu-estate:tunnel"] = config.pop("gpu-estate:tunnels")
    with pytest.raises(Exception, match=r"gpu-estate:tunnel: unknown key `tunnel`; did you mean `tunnels`\?"):
        run_program(config, stack="prod")
