"""Workloads and node bootstrap: compose, cloud-init (checked by cloud-init's own schema validator),
the idle watcher (its units checked by systemd-analyze, its script run against a loopback Ollama) and
and where ComfyUI's model files go on a node (never in what it is launched with)."""
import hashlib
import os
import shutil
import subprocess
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from components import workloads
from core.text import install_secrets, secret_bundle
from core.catalog import ASSETS
from core.config import parse_spec
from core.errors import ConfigError
from core.kinds import WorkloadKind
from tests.mocks import stack_estate

SECRETS = workloads.NodeSecrets(
    pg_password="pg-secret-value-123",
    buckets={"models": workloads.BucketAccess(url="gs://gpu-estate-prod-models",
                                              gcs_key_json='{"type": "service_account", "private_key": "k"}')})


def spec_of(stack):
    """The stack's estate keys (config secrets such as gpu-estate:HF_TOKEN are not part of the spec)."""
    return parse_spec(stack_estate(stack))


@pytest.fixture(scope="module")
def prod():
    return spec_of("prod")


def vm_nodes(spec):
    return {n: node for n, node in spec.nodes.items() if not node.provider.is_container}


def test_compose_keeps_data_on_bind_mounts_and_secrets_in_files(prod):
    training = prod.nodes["training"]
    doc = workloads.compose_project(training, SECRETS)
    for kind in (WorkloadKind.MLFLOW, WorkloadKind.PGVECTOR):
        svc = doc["services"][kind.value]
        assert svc["volumes"] == [f"/opt/estate/data/{kind.value}:{kind.info.data_path}"]
        assert svc["ports"][0].startswith("127.0.0.1:")  # access ssh: loopback only
        assert svc["healthcheck"]["test"]
    assert doc["services"]["pgvector"]["secrets"] == ["pg_password"]
    assert doc["secrets"]["pg_password"] == {"file": "/opt/estate/secrets/pg_password"}
    assert doc["services"]["mlflow"]["env_file"] == ["/opt/estate/secrets/mlflow-artifacts.env"]
    text = workloads.render_compose(training, SECRETS)
    assert "pg-secret-value-123" not in text and "private_key" not in text


def test_gpu_workloads_reserve_the_gpus(prod):
    doc = workloads.compose_project(prod.nodes["inference"])
    assert doc["services"]["ollama"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "deploy" not in doc["services"]["open-webui"]
    assert doc["services"]["open-webui"]["environment"]["OLLAMA_BASE_URL"] == "http://ollama:11434"


def test_no_secret_file_ever_rides_in_cloud_init(prod):
    # The training node's secrets (pgvector's password, MLflow's bucket key) are files, delivered over SSH.
    training = prod.nodes["training"]
    paths = [p for p, _ in workloads.secret_files(training, SECRETS)]
    assert "/opt/estate/secrets/pg_password" in paths and "/opt/estate/secrets/mlflow-artifacts.env" in paths
    for name, node in prod.nodes.items():
        for with_workloads in (True, False):
            text = workloads.render_cloud_init(node, (), workloads=with_workloads)
            written = [f["path"] for f in yaml.safe_load(text)["write_files"]]
            assert not [p for p in written if p.startswith("/opt/estate/secrets/")], name
            assert "pg-secret-value-123" not in text, name
    # A node reached directly still gets its compose project over SSH once it holds secrets.
    direct = training.model_copy(update={"access": workloads.Access.DIRECT})
    assert workloads.delivered_over_ssh(direct, secrets=True)
    assert not workloads.delivered_over_ssh(direct, secrets=False)


def test_idle_watcher_is_installed_only_where_idle_shutdown_is_set(prod):
    inference = yaml.safe_load(workloads.render_cloud_init(prod.nodes["inference"]))
    paths = {f["path"] for f in inference["write_files"]}
    assert {"/usr/local/sbin/estate-idle", "/etc/systemd/system/estate-idle.timer"} <= paths
    assert ["systemctl", "enable", "--now", "estate-idle.timer"] in inference["runcmd"]
    assert workloads.render_idle_units(prod.nodes["qwen"]) == {}  # runs around the clock


def test_container_nodes_start_the_watcher_then_exec_the_workload():
    raw = stack_estate("sandbox")  # its Vast.ai node with Ollama alone
    del raw["nodes"]["qwen"]["workloads"]["comfyui"], raw["gateway"]["aliases"]["dall-e-3"]
    image, env, ports, start = workloads.container_launch(parse_spec(raw).nodes["qwen"])
    assert image.startswith("ollama/ollama") and ports == [11434]
    assert "ESTATE_IDLE_MINUTES=30" in start and "CONTAINER_API_KEY" in start
    assert start.rstrip().endswith("exec ollama serve")
    # As the sandbox has it, it runs ComfyUI (Ollama inside it) and publishes its images bridge (access: direct).
    spec = spec_of("sandbox")
    image, env, ports, start = workloads.container_launch(spec.nodes["qwen"])
    assert image.startswith("yanwk/comfyui-boot") and ports == [8188, 8189, 11434]
    assert start.rstrip().endswith("exec /runner-scripts/entrypoint.sh")
    # RunPod can only replace the image's CMD, which the Ollama entrypoint would take as arguments.
    assert workloads.container_launch(spec.nodes["batch"])[3] == ""
    assert "runpodctl stop pod" in workloads.container_start(spec.nodes["batch"])


def test_a_container_node_with_several_workloads_runs_them_all(tmp_path, prod):
    # prod's Vast.ai node declares ComfyUI beside Ollama: ComfyUI needs its own image (CUDA, torch), so the
    # node runs that image and starts Ollama inside it, pinned to the version of Ollama's own image.
    node = prod.nodes["qwen"]
    image, env, ports, start = workloads.container_launch(node)
    assert image == "yanwk/comfyui-boot:cu124-slim"
    assert "OLLAMA_VERSION=0.12.6" in start and env["OLLAMA_HOST"] == "127.0.0.1:11434"
    # Run the script with every command it calls stubbed: each declared workload is started, the
    # primary last (exec), none dropped.
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    for tool in ("curl", "ollama", "sh-stub", "python3"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n')
        (bin_dir / tool).chmod(0o755)
    # The container's /root (the images bridge's files) is the test's directory: nothing is written or left
    # running on this machine.
    script = start.replace("/runner-scripts/entrypoint.sh", f"{bin_dir}/sh-stub entrypoint").replace(
        "/var/log/", f"{tmp_path}/").replace("/root/", f"{tmp_path}/root/")
    run = subprocess.run(["sh", "-c", script], env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    for _ in range(50):  # the background start
        if log.exists() and "ollama serve" in log.read_text() and "images_bridge.py" in log.read_text():
            break
        time.sleep(0.05)
    calls = log.read_text().splitlines()
    assert "ollama serve" in calls and "sh-stub entrypoint" in calls
    assert any(c.startswith(f"python3 {tmp_path}/root/estate-images/images_bridge.py") for c in calls)
    assert not any(c.startswith("curl") for c in calls)  # ollama is "installed" (on PATH): no download


def test_a_container_node_refuses_workloads_it_cannot_run():
    cfg = stack_estate("prod")
    cfg["nodes"]["batch"]["workloads"]["open-webui"] = {}
    with pytest.raises(ConfigError) as err:
        parse_spec(cfg)
    assert any(p == "gpu-estate:nodes.batch.workloads" and "one workload per node" in m
               for p, m in err.value.problems), err.value.problems


@pytest.mark.skipif(not shutil.which("cloud-init"), reason="cloud-init is not installed (apt-get install cloud-init)")
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_rendered_cloud_init_passes_the_cloud_init_schema(tmp_path, stack):
    spec = spec_of(stack)
    for name, node in vm_nodes(spec).items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(workloads.render_cloud_init(node, (80, 443)))
        run = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
        assert run.returncode == 0, f"{stack}/{name}: {run.stdout}{run.stderr}"


@pytest.mark.skipif(not shutil.which("cloud-init"), reason="cloud-init is not installed (apt-get install cloud-init)")
def test_the_schema_check_catches_a_broken_document(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("#cloud-config\nwrite_files: 3\n")
    assert subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True).returncode != 0


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_rendered_idle_units_pass_systemd_analyze_verify(tmp_path, prod):
    script = tmp_path / "estate-idle"
    shutil.copy(ASSETS / "idle" / "estate-idle.sh", script)
    script.chmod(0o755)
    units = workloads.render_idle_units(prod.nodes["inference"], script=str(script))
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    run = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in units)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "ESTATE_IDLE_MINUTES=30" in units["estate-idle.service"]


# -- the idle watcher script, run for real -----------------------------------------------------------

def run_watcher(tmp_path, ollama, gpu_percent, since=None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\necho {gpu_percent}\necho 0\n")
    smi.chmod(0o755)
    state = tmp_path / "idle-since"
    if since is not None:
        state.write_text(str(since))
    stopped = tmp_path / "stopped"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ESTATE_IDLE_MINUTES": "30",
           "ESTATE_STOP_COMMAND": f"touch {stopped}", "ESTATE_IDLE_STATE": str(state),
           "ESTATE_OLLAMA_URL": ollama.url}
    run = subprocess.run(["sh", str(ASSETS / "idle" / "estate-idle.sh")], env=env,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return run.stdout, state, stopped



def test_watcher_starts_counting_when_idle(tmp_path, ollama):
    out, state, stopped = run_watcher(tmp_path, ollama, gpu_percent=0)
    assert "idle for 0 min of 30" in out and state.exists() and not stopped.exists()


def test_watcher_stops_the_node_after_the_idle_limit(tmp_path, ollama):
    out, state, stopped = run_watcher(tmp_path, ollama, gpu_percent=1, since=int(time.time()) - 31 * 60)
    assert "stopping the node" in out and stopped.exists() and not state.exists()


def test_a_busy_gpu_resets_the_count(tmp_path, ollama):
    out, state, stopped = run_watcher(tmp_path, ollama, gpu_percent=80, since=int(time.time()) - 31 * 60)
    assert "busy: gpu at 80%" in out and not state.exists() and not stopped.exists()


def test_a_model_loaded_in_ollama_counts_as_busy(tmp_path, ollama, monkeypatch):
    orig = ollama.route
    monkeypatch.setattr(ollama, "route", lambda m, p, q, b: (200, {"models": [{"name": "qwen3:8b"}]})
                        if p == "/api/ps" else orig(m, p, q, b))
    out, _state, stopped = run_watcher(tmp_path, ollama, gpu_percent=0, since=int(time.time()) - 31 * 60)
    assert "ollama has a model loaded" in out and not stopped.exists()


# -- ComfyUI's model files ----------------------------------------------------------------------------

def checkpoint_node(raw, node="qwen", secret_env=()):
    """``node``'s ComfyUI with two files: one Hugging Face serves, one from elsewhere."""
    comfy = raw["nodes"][node]["workloads"]["comfyui"]
    raw["nodes"][node]["workloads"]["comfyui"] = {**comfy, **({"secret_env": list(secret_env)} if secret_env else {}),
                                                  "checkpoints": [
        {"name": "flux1-dev.safetensors", "url": "https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/"
         "flux1-dev.safetensors", "sha256": "a" * 64, "size_gb": 23.8, "kind": "unet", "gated": bool(secret_env)},
        {"name": "ae.safetensors", "url": "https://example.com/ae.safetensors", "sha256": "b" * 64, "size_gb": 0.3,
         "kind": "vae"}]}
    return parse_spec(raw).nodes[node]


def test_model_files_live_in_comfyuis_models_directory_on_a_vm_and_in_a_container():
    container = checkpoint_node(stack_estate("prod"))
    assert container.provider.is_container
    assert [(f.workload, f.path, f.token_file) for f in workloads.node_files(container)] == [
        ("comfyui", "/root/ComfyUI/models/unet/flux1-dev.safetensors", None),
        ("comfyui", "/root/ComfyUI/models/vae/ae.safetensors", None)]
    raw = stack_estate("prod")
    raw["nodes"]["qwen"].update(provider="tensordock", ssh={"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXNhbmRib3hrZXk= op@host"})
    raw["nodes"]["qwen"].pop("market", None)
    raw["nodes"]["qwen"].pop("bid_per_hour", None)
    raw["budget"]["monthly_usd"] = 5000
    vm = checkpoint_node(raw, secret_env=["HF_TOKEN"])
    # A gated file goes with the workload's token, read on the node from its secret env file; the other
    # file's host never sees it.
    assert [(f.path, f.token_file) for f in workloads.node_files(vm)] == [
        ("/opt/estate/data/comfyui/ComfyUI/models/unet/flux1-dev.safetensors", "/opt/estate/secrets/comfyui.env"),
        ("/opt/estate/data/comfyui/ComfyUI/models/vae/ae.safetensors", None)]


def test_model_files_are_in_nothing_a_machine_is_launched_with_nor_its_deploy():
    """Editing a file is never a new machine: neither a VM's user-data nor a container's start script, nor
    the compose deploy over SSH, holds them (their resources deliver them, providers/model_files.py)."""
    container = checkpoint_node(stack_estate("prod"), secret_env=["HF_TOKEN"])
    start = workloads.container_launch(container)[3]
    raw = stack_estate("prod")
    qwen = raw["nodes"]["qwen"]
    raw["nodes"]["td"] = {**{k: v for k, v in qwen.items() if k not in ("market", "bid_per_hour")},
                          "provider": "tensordock", "access": "direct",
                          "ssh": {"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXNhbmRib3hrZXk= op@host"},
                          "workloads": {"comfyui": qwen["workloads"]["comfyui"]}}
    raw["budget"]["monthly_usd"] = 5000
    vm = checkpoint_node(raw, node="td")
    assert not workloads.delivered_over_ssh(vm)  # its compose project rides in its cloud-init
    launch = [start, workloads.render_cloud_init(vm), workloads.deploy_script(vm)]
    for text in launch:
        assert workloads.CHECKPOINT_SCRIPT not in text and "a" * 64 not in text and "example.com/ae" not in text
    raw["nodes"]["td"]["workloads"]["comfyui"] = dict(raw["nodes"]["td"]["workloads"]["comfyui"], checkpoints=[])
    assert workloads.render_cloud_init(parse_spec(raw).nodes["td"]) == launch[1]


def test_secrets_on_container_nodes_are_refused():
    from core.errors import ConfigError

    raw = stack_estate("prod")
    raw["nodes"]["qwen"]["workloads"]["pgvector"] = {}
    with pytest.raises(ConfigError, match=r"gpu-estate:nodes.qwen.workloads.pgvector: .*one container"):
        parse_spec(raw)


def test_every_bucket_a_node_reads_gets_a_credentials_file(prod):
    s3 = workloads.NodeSecrets(buckets={"ckpt": workloads.BucketAccess(
        url="s3://b", aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="s3-secret")})
    files = dict(workloads.secret_files(prod.nodes["inference"], s3))
    assert files == {"/opt/estate/secrets/ckpt-s3.env": "AWS_ACCESS_KEY_ID=AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY=s3-secret\n"}


def test_secret_env_reaches_vm_workloads_through_a_0600_env_file(prod):
    raw = stack_estate("prod")
    raw["nodes"]["inference"]["workloads"]["ollama"]["secret_env"] = ["HF_TOKEN"]
    node = parse_spec(raw).nodes["inference"]
    secrets = workloads.NodeSecrets(env={"HF_TOKEN": "hf_value_123456"})
    assert workloads.compose_project(node, secrets)["services"]["ollama"]["env_file"] == ["/opt/estate/secrets/ollama.env"]
    assert "hf_value_123456" not in workloads.render_compose(node, secrets)
    assert dict(workloads.secret_files(node, secrets))["/opt/estate/secrets/ollama.env"] == "HF_TOKEN=hf_value_123456\n"


def test_a_missing_config_secret_names_the_key_before_anything_is_created():
    from components.stack import load_stack
    from core.errors import ConfigError

    class Config:
        def __init__(self, values):
            self.values = values

        def get_object(self, key):
            return self.values.get(key)

        def get_secret(self, key):
            return None

    raw = stack_estate("sandbox")
    with pytest.raises(ConfigError, match=r"gpu-estate:nodes.vm.workloads.ollama.secret_env\[0\]: no config secret "
                                          r"gpu-estate:HF_TOKEN: run `pulumi config set --secret gpu-estate:HF_TOKEN"):
        load_stack(Config(raw), project="gpu-estate", stack="sandbox")


def test_a_workload_edit_changes_the_ssh_delivery_not_the_machine():
    raw = stack_estate("prod")
    before = parse_spec(raw).nodes["inference"]
    raw["nodes"]["inference"]["workloads"]["ollama"]["image"] = "ollama/ollama:0.13.0"
    after = parse_spec(raw).nodes["inference"]
    assert workloads.delivered_over_ssh(after)
    # The bootstrap (what the VM is created with) stays; the compose project delivered over SSH changes.
    assert workloads.render_cloud_init(before, workloads=False) == workloads.render_cloud_init(after, workloads=False)
    assert "ollama/ollama:0.13.0" in workloads.deploy_script(after)
    assert workloads.deploy_script(before) != workloads.deploy_script(after)


@pytest.mark.skipif(not shutil.which("cloud-init"), reason="cloud-init is not installed (apt-get install cloud-init)")
def test_the_bootstrap_only_cloud_init_passes_the_schema(tmp_path, prod):
    path = tmp_path / "bootstrap.yaml"
    path.write_text(workloads.render_cloud_init(prod.nodes["inference"], workloads=False))
    run = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_secret_bundle_round_trips_through_the_install_script(tmp_path):
    files = [(str(tmp_path / "s" / "pg_password"), "p@ss word\n"), (str(tmp_path / "s" / "b.json"), '{"k": 1}')]
    script = install_secrets(str(tmp_path / "s" / ".manifest"))
    run = subprocess.run(["sh", "-c", script], input=secret_bundle(files), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    for path, content in files:
        assert open(path).read() == content
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_a_rotated_or_dropped_secret_leaves_no_old_copy(tmp_path):
    d = tmp_path / "s"
    script = install_secrets(str(d / ".manifest"))
    first = [(str(d / "pg_password"), "old-password"), (str(d / "ollama.env"), "HF_TOKEN=old-token\n")]
    second = [(str(d / "pg_password"), "new-password")]
    for bundle in (first, second):
        run = subprocess.run(["sh", "-c", script], input=secret_bundle(bundle), capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    assert (d / "pg_password").read_text() == "new-password"
    assert not (d / "ollama.env").exists()
    left = b"".join(f.read_bytes() for f in d.rglob("*") if f.is_file())
    assert b"old-" not in left
    # An empty bundle removes every file the last one wrote.
    subprocess.run(["sh", "-c", script], input="", capture_output=True, text=True, check=True)
    assert not (d / "pg_password").exists()


def test_open_webui_signup_is_off_wherever_it_runs(prod):
    raw = stack_estate("prod")
    raw["nodes"]["training"]["workloads"]["open-webui"] = {}  # beside MLflow, no Ollama on the node
    spec = parse_spec(raw)
    for node in ("inference", "training"):
        env = workloads.workload_env(spec.nodes[node], "open-webui")
        assert env["ENABLE_SIGNUP"] == "false", node
    assert "OLLAMA_BASE_URL" not in workloads.workload_env(spec.nodes["training"], "open-webui")


def test_model_servers_listen_only_where_they_are_reached(prod):
    # A container node reached over SSH: the forward lands on the container's own loopback.
    _image, env, ports, _start = workloads.container_launch(prod.nodes["qwen"])
    assert env["OLLAMA_HOST"] == "127.0.0.1:11434" and ports == []
    # A compose project: the container's port is published to the VM's loopback only.
    doc = workloads.compose_project(prod.nodes["inference"])
    assert doc["services"]["ollama"]["environment"]["OLLAMA_HOST"] == "0.0.0.0:11434"
    assert doc["services"]["ollama"]["ports"] == ["127.0.0.1:11434:11434"]
    # Reached directly (a private network, the sandbox): the provider maps the container's port.
    direct = spec_of("sandbox").nodes["qwen"]
    assert workloads.container_launch(direct)[1]["OLLAMA_HOST"] == "0.0.0.0:11434"


def registry_node(**ollama):
    """The prod stack's TensorDock node `training` (reached over SSH) with an Ollama beside its MLflow
    and pgvector, pulling the project's tiny model from a registry on its loopback."""
    r = stack_estate("prod")
    r["nodes"]["training"]["workloads"]["ollama"] = {"models": ["127.0.0.1:5000/library/tiny:1"], **ollama}
    return r


def test_only_a_registry_on_the_nodes_loopback_may_be_insecure():
    r = registry_node(insecure_registries=["registry.example.com:5000"], host_network=True)
    with pytest.raises(ConfigError, match=r"gpu-estate:nodes.training.workloads.ollama.insecure_registries: only a "
                                          r"registry on the node's loopback .*'registry.example.com:5000'"):
        parse_spec(r)
    for loopback in ("127.0.0.1:5000", "localhost:5000", "[::1]:5000", "127.0.0.2:5000"):
        spec = parse_spec(registry_node(insecure_registries=[loopback], host_network=True))
        ollama = spec.nodes["training"].workloads["ollama"]
        assert ollama.insecure_pull("127.0.0.1:5000/library/tiny:1") is (loopback == "127.0.0.1:5000")
        assert ollama.insecure_pull("qwen3:8b") is False


def test_a_loopback_registry_is_reached_from_the_vms_own_network():
    r = registry_node(insecure_registries=["127.0.0.1:5000"])
    with pytest.raises(ConfigError, match=r"gpu-estate:nodes.training.workloads.ollama.models\[0\]: .* set "
                                          r"gpu-estate:nodes.training.workloads.ollama.host_network: true"):
        parse_spec(r)
    node = parse_spec(registry_node(insecure_registries=["127.0.0.1:5000"], host_network=True)).nodes["training"]
    service = workloads.compose_project(node)["services"]["ollama"]
    # On the VM's network Ollama listens on the VM's loopback at its port itself: nothing is published.
    assert service["network_mode"] == "host" and "ports" not in service
    assert service["environment"]["OLLAMA_HOST"] == "127.0.0.1:11434"
    # Unset, the compose service is as it always was.
    plain = parse_spec(stack_estate("prod")).nodes["inference"]
    assert "network_mode" not in workloads.compose_project(plain)["services"]["ollama"]


def test_host_network_is_refused_where_it_cannot_work():
    r = registry_node(insecure_registries=["127.0.0.1:5000"], host_network=True)
    r["nodes"]["training"]["workloads"]["open-webui"] = {"port": 3001}
    with pytest.raises(ConfigError, match=r"gpu-estate:nodes.training.workloads.ollama.host_network: open-webui "
                                          r"reaches Ollama on the compose network"):
        parse_spec(r)
    r = stack_estate("prod")
    r["nodes"]["qwen"]["workloads"]["ollama"]["host_network"] = True
    with pytest.raises(ConfigError, match=r"gpu-estate:nodes.qwen.workloads.ollama.host_network: ollama .* vastai "
                                          r"nodes are one container"):
        parse_spec(r)


def test_a_model_of_a_registry_has_the_size_of_the_same_model():
    from core.catalog import ollama_model, registry_of

    assert ollama_model("127.0.0.1:5000/library/tiny:1") == ollama_model("tiny:1") is not None
    assert ollama_model("localhost:5000/library/qwen3:8b") == ollama_model("qwen3:8b")
    assert ollama_model("127.0.0.1:5000/library/unknown:1") is None
    assert [registry_of(t) for t in ("qwen3:8b", "library/qwen3:8b", "hf.co/org/m:Q4", "localhost/x:1")] == \
        [None, None, "hf.co", "localhost"]


def test_vram_gb_of_zero_is_no_figure_as_it_always_was(prod):
    import dataclasses

    node = prod.nodes["qwen"] if "qwen" in prod.nodes else next(n for n in prod.nodes.values() if n.gpu)
    from core.workloads.vllm import Vllm

    server = Vllm(model="Qwen/Qwen2.5-7B-Instruct")
    assert server.vram(node) == server.model_copy(update={"vram_gb": 0}).vram(node) > 0
