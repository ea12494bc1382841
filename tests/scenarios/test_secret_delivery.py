"""No secret leaves in a vendor's metadata: planted in every secret config key of the prod estate, each
value reaches its node only on the stdin of an SSH command, and neither a resource input (the launch
spec, cloud-init, the AWS launch template, GCP metadata, scripts, units, configs) nor any request body the
loopback marketplaces receive holds one."""
import base64
import copy
import json
import re
import subprocess
import time

import pytest

from components import workloads
from core.config import parse_spec
from core.errors import ConfigError
from core.text import install_secrets, secret_bundle
from providers.gpu_instance import PROVIDER_VERSION, GpuInstanceProvider
from tests.mocks import run_program, stack_config, stack_estate

GPU = "pulumi-python:dynamic/gpu:Instance"
COMMAND = "command:remote:Command"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXNhbmRib3hrZXk= ops@estate"

# Every secret config key the prod estate can name, with a value that appears nowhere else.
SECRET_ENV = {
    ("inference", "ollama"): "HF_TOKEN",
    ("inference", "open-webui"): "WEBUI_SECRET_KEY",
    ("training", "mlflow"): "MLFLOW_TRACKING_TOKEN",
    ("qwen", "comfyui"): "CIVITAI_TOKEN",
    ("burst", "ollama"): "BURST_HF_TOKEN",
    ("gcp-dev", "ollama"): "GCP_HF_TOKEN",
}
PLANTED = {name: f"planted-{name.lower()}-5c1e" for name in SECRET_ENV.values()}
PLANTED.update({"OPENAI_API_KEY": "sk-planted-openai-5c1e", "ANTHROPIC_API_KEY": "sk-ant-planted-5c1e",
                "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nplanted-ssh-key-5c1e\n"
                                 "-----END OPENSSH PRIVATE KEY-----\n"})


def planted_config():
    config = copy.deepcopy(stack_config("prod"))
    nodes = config["gpu-estate:nodes"]
    for (node, kind), name in SECRET_ENV.items():
        nodes[node]["workloads"][kind]["secret_env"] = [name]
    for node in ("inference", "training"):
        # Reached directly: the compose project would have ridden in user-data; with secrets it must not.
        nodes[node]["access"] = "direct"
        nodes[node]["ssh"] = {"public_key": SSH_KEY}
    # The edge reaches nodes only through the gateway's tunnels: no routes to the direct ones.
    config["gpu-estate:routes"] = {h: r for h, r in config["gpu-estate:routes"].items()
                                   if r["service"].split("/")[0] not in ("inference", "training")}
    config.update({f"gpu-estate:{k}": v for k, v in PLANTED.items()})
    return config


@pytest.fixture(scope="module")
def program():
    return run_program(planted_config(), stack="prod")


def without_stdin(resource) -> str:
    inputs = dict(resource.inputs)
    if resource.typ == COMMAND:
        # What a silent SSH command (its output never logged) sends on stdin is the one place secrets travel;
        # a script sent on stdin (the gateway host's deploy) is read like any other input.
        if inputs.get("logging") == "none":
            inputs.pop("stdin", None)
        # The key the command provider signs in with stays on the operator's machine, a secret in state.
        if "privateKey" in inputs["connection"]:
            assert "connection.privateKey" in resource.secret_paths or "connection" in resource.secret_paths
            inputs["connection"] = {k: v for k, v in inputs["connection"].items() if k != "privateKey"}
    text = json.dumps(inputs, default=str)
    if resource.typ == "aws:ec2/launchTemplate:LaunchTemplate":
        text += base64.b64decode(inputs["userData"]).decode()
    return text


def leaks(text: str) -> list:
    return sorted(k for k, v in PLANTED.items() if v.strip().splitlines()[len(v.strip().splitlines()) // 2] in text)


def test_no_resource_input_outside_ssh_stdin_holds_a_secret(program):
    checked = 0
    for r in program.resources:
        assert leaks(without_stdin(r)) == [], f"{r.typ} {r.name}"
        checked += 1
    assert checked > 40
    # The launch documents themselves were looked at: cloud-init of both TensorDock VMs, AWS and GCP.
    assert len([r for r in program.of_type(GPU) if r.inputs["launch"].get("cloud_init")]) == 2
    assert program.of_type("aws:ec2/launchTemplate:LaunchTemplate")[0].inputs["userData"]
    assert program.of_type("gcp:compute/instance:Instance")[0].inputs["metadata"]["user-data"]


def test_every_planted_node_secret_arrives_on_an_ssh_commands_stdin(program):
    delivered = {}
    for r in program.of_type(COMMAND):
        if r.inputs.get("logging") != "none":
            continue  # a script on stdin, not a secret bundle
        for line in (r.inputs.get("stdin") or "").splitlines():
            path, data = line.split(" ", 1)
            delivered.setdefault(r.name.rsplit("-", 1)[0], {})[path] = base64.b64decode(data).decode()
    for (node, kind), name in SECRET_ENV.items():
        env_file = delivered[node][f"{workloads.SECRETS_DIR}/{kind}.env"]
        assert env_file == f"{name}={PLANTED[name]}\n", (node, kind)
    # The Vast.ai node (one container) gets its secrets the same way, and its start script waits for them.
    (vast,) = [r for r in program.of_type(GPU) if r.inputs["clouds"] == ["vastai"]]
    assert workloads.SECRETS_MANIFEST in vast.inputs["launch"]["onstart"]
    assert vast.inputs["launch"]["env"].get("CIVITAI_TOKEN") is None


def test_what_the_marketplaces_receive_holds_no_secret(program, clouds):
    launched = 0
    for r in program.of_type(GPU):
        props = {**r.inputs, "version": PROVIDER_VERSION}
        result = GpuInstanceProvider().check({}, props)
        assert result.failures == [], r.name
        GpuInstanceProvider().create(result.inputs)
        launched += 1
    assert launched == 4  # two TensorDock VMs, the Vast.ai node and the RunPod node
    for name, fake in clouds.items():
        sent = json.dumps(fake.requests, default=str)
        assert any(m in ("POST", "PUT") for m, _, _ in fake.requests), name
        assert leaks(sent) == [], name


def test_a_runpod_node_cannot_take_secret_env_and_says_what_to_use_instead():
    raw = stack_estate("prod")
    raw["nodes"]["batch"]["workloads"]["ollama"]["secret_env"] = ["HF_TOKEN"]
    raw["nodes"]["qwen"]["workloads"]["comfyui"]["secret_env"] = ["CIVITAI_TOKEN"]
    raw["nodes"]["qwen"]["workloads"].pop("ollama")
    raw["nodes"]["qwen"]["failover"] = ["runpod"]
    with pytest.raises(ConfigError) as err:
        parse_spec(raw)
    problems = dict(err.value.problems)
    assert "RUNPOD_SECRET_" in problems["gpu-estate:nodes.batch.workloads.ollama.secret_env"]
    assert "secrets delivered over SSH" in problems["gpu-estate:nodes.qwen.failover[0]"]


def test_a_runpod_failover_is_refused_where_the_start_script_matters():
    raw = stack_estate("prod")
    raw["nodes"]["qwen"]["failover"] = ["runpod"]  # ComfyUI with Ollama inside: a start script runs both
    with pytest.raises(ConfigError, match=r"nodes.qwen.failover\[0\]: this node needs its start script "
                                          r"\(2 workloads in one container\)"):
        parse_spec(raw)
    raw = stack_estate("prod")
    batch = raw["nodes"]["batch"]
    batch.update(provider="vastai", failover=["runpod"], regions=[])
    with pytest.raises(ConfigError, match=r"nodes.batch.failover\[0\]: this node needs its start script "
                                          r"\(the idle watcher\)"):
        parse_spec(raw)
    batch.pop("idle_shutdown_minutes")
    assert parse_spec(raw).nodes["batch"].failover[0].value == "runpod"  # one workload: its image as it is


def stubbed_start(tmp_path, start: str):
    """The start script with /opt/estate under tmp_path and the workload a stub that records its env."""
    root = tmp_path / "estate"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    runs = tmp_path / "runs"
    (bin_dir / "ollama").write_text(f'#!/bin/sh\necho "$$ CIVITAI_TOKEN=$CIVITAI_TOKEN" >> {runs}\nexec sleep 60\n')
    (bin_dir / "ollama").chmod(0o755)
    script = start.replace(workloads.ESTATE_DIR, str(root)).replace("/var/log/", f"{tmp_path}/")
    return root, bin_dir, runs, script


def wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_container_node_starts_its_workload_with_secrets_from_ssh_and_again_when_they_change(tmp_path):
    raw = stack_estate("sandbox")
    raw["nodes"]["qwen"]["workloads"]["ollama"]["secret_env"] = ["CIVITAI_TOKEN"]
    raw["nodes"]["qwen"].pop("idle_shutdown_minutes")  # its watcher would install into /usr/local/sbin
    node = parse_spec(raw).nodes["qwen"]
    image, env, _ports, start = workloads.container_launch(node)
    assert "CIVITAI_TOKEN" not in env
    root, bin_dir, runs, script = stubbed_start(tmp_path, start)
    proc = subprocess.Popen(["sh", "-c", script], env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.5)
        assert not runs.exists()  # the workload waits for its secrets
        install = (install_secrets(f"{root}/secrets/.manifest") + "; "
                   + workloads.restart_after_secrets().replace(workloads.ESTATE_DIR, str(root)))
        # A value that a shell would run if it sourced the file: it must arrive as it is.
        first = "tok$(touch " + str(tmp_path / "pwned") + ")'\"`x`"
        for value in (first, "rotated-token"):
            bundle = secret_bundle([(f"{root}/secrets/ollama.env", f"CIVITAI_TOKEN={value}\n")])
            subprocess.run(["sh", "-c", install], input=bundle, text=True, check=True, timeout=10)
            assert wait_for(lambda: runs.exists() and runs.read_text().endswith(f"CIVITAI_TOKEN={value}\n")), \
                (runs.read_text() if runs.exists() else "", proc.stdout)
        pids = [line.split()[0] for line in runs.read_text().splitlines()]
        assert len(pids) == 2 and pids[0] != pids[1]  # started once, then again on the rotated value
        assert not (tmp_path / "pwned").exists()
        first_pid = int(pids[0])
        assert wait_for(lambda: subprocess.run(["kill", "-0", str(first_pid)], capture_output=True).returncode != 0)
    finally:
        pid_file = root / "run" / "workloads.pid"
        if pid_file.exists():
            subprocess.run(["kill", "-TERM", "--", f"-{pid_file.read_text().strip()}"], capture_output=True)
        proc.kill()
        proc.wait(timeout=5)


def test_the_gateways_cloud_run_key_reaches_only_the_identity_proxys_secret_file(program):
    """The gateway's service-account key (``gcp.serviceaccount.Key``, its private key a secret output) for the
    Cloud Run service: on the silent secrets command's stdin as the identity proxy's 0600 env file, nowhere
    else (not the deploy script, not the LiteLLM config or env file, no other resource's inputs)."""
    from components import gateway
    from core import identity
    from tests.mocks import MOCK_SECRET

    key = program.named("service-llama-l4-gateway-key")
    encoded = base64.b64encode(json.dumps({"type": "service_account", "private_key": MOCK_SECRET,
                                           "client_email": f"{key.name}@example.iam"}).encode()).decode()
    (secrets,) = [r for r in program.of_type(COMMAND) if r.name == "gateway-secrets"]
    assert secrets.inputs["logging"] == "none" and "stdin" in secrets.secret_paths
    files = {p: base64.b64decode(d).decode() for p, d in (line.split(" ", 1) for line in secrets.inputs["stdin"].splitlines())}
    holding = sorted(p for p, text in files.items() if f'"private_key":"{MOCK_SECRET}"' in text)
    assert holding == [gateway.IDENTITY_ENV]
    assert files[gateway.IDENTITY_ENV].startswith(f"{identity.KEYS_ENV}=")
    for r in program.resources:
        text = without_stdin(r)
        # However it is quoted or escaped (a JSON string in a JSON document, a heredoc, an env file).
        assert not re.search(r"private_key\W{1,12}" + MOCK_SECRET, text) and encoded not in text, f"{r.typ} {r.name}"
