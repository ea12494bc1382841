"""The project's dynamic-provider host: the SDK's own, started through the plugin Pulumi.yaml names,
serving with a larger pool than the SDK's four threads."""
import os
import select
import subprocess
import sys

import yaml

from core.config import PROJECT_ROOT
from providers import dynamic_host


def test_pulumi_yaml_points_the_dynamic_provider_plugin_at_the_project_host():
    project = yaml.safe_load((PROJECT_ROOT / "Pulumi.yaml").read_text())
    (plugin,) = [p for p in project["plugins"]["providers"] if p["name"] == "pulumi-python"]
    script = PROJECT_ROOT / plugin["path"] / "pulumi-resource-pulumi-python"
    assert script.exists() and os.access(script, os.X_OK)
    assert "providers.dynamic_host" in script.read_text()


def test_the_pool_is_the_projects_size_whatever_the_sdk_asks():
    assert dynamic_host._Pool(max_workers=4)._max_workers == dynamic_host.WORKERS >= 32


def test_the_pool_serves_as_many_operations_as_the_engine_runs():
    assert dynamic_host.workers({}) == dynamic_host.DEFAULT_WORKERS == 64
    assert dynamic_host.workers({"PULUMI_PARALLEL": "200"}) == 200  # no started operation waits for a thread
    assert dynamic_host.workers({"PULUMI_PARALLEL": "8"}) == 64  # the engine's default is 4 x cores
    assert dynamic_host.workers({"PULUMI_PARALLEL": "many"}) == 64
    assert dynamic_host.workers({"PULUMI_PARALLEL": "200", "ESTATE_PROVIDER_WORKERS": "4"}) == 4  # as asked


def test_the_host_reads_the_engine_parallelism_from_the_environment_it_is_started_in():
    env = {k: v for k, v in os.environ.items() if k != "ESTATE_PROVIDER_WORKERS"}
    probe = "from providers import dynamic_host; print(dynamic_host.WORKERS)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env={**env, "PULUMI_PARALLEL": "150", "PYTHONPATH": str(PROJECT_ROOT)}, timeout=60)
    assert done.stdout.strip() == "150", done.stderr


def test_the_plugin_starts_the_sdk_host_and_announces_its_port():
    script = PROJECT_ROOT / "providers" / "plugin" / "pulumi-resource-pulumi-python"
    proc = subprocess.Popen([str(script), "127.0.0.1:1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "ESTATE_PROVIDER_WORKERS": "48"})
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, proc.stderr.read1().decode() if proc.poll() is not None else "no port announced in 30 s"
        port = int(proc.stdout.readline())
        assert 0 < port < 65536 and proc.poll() is None  # serving
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wrapper_depth(method) -> int:
    """How many sorting wrappers the SDK has stacked on the pickler's ``_batch_setitems``."""
    depth = 0
    while getattr(method, "__closure__", None):
        inner = [c.cell_contents for c in method.__closure__ if callable(c.cell_contents)]
        if not inner:
            break
        method, depth = inner[0], depth + 1
    return depth


def test_registering_many_dynamic_resources_stacks_no_pickler_wrappers():
    import pickle

    from tests.mocks import run_program, stack_config

    config = stack_config("sandbox")
    node = config["gpu-estate:nodes"]["qwen"]
    config["gpu-estate:nodes"] = {f"node-{i}": node for i in range(30)}
    config.pop("gpu-estate:gateway", None)
    config.pop("gpu-estate:spend", None)  # it runs beside the gateway
    config["gpu-estate:budget"] = {"monthly_usd": 1_000_000}
    mocks = run_program(config, stack="sandbox")
    assert len(mocks.of_type("pulumi-python:dynamic/gpu:Instance")) == 30
    # The SDK wraps the method once per serialization and never unwraps it; without the project's base
    # class this would be about 90 deep here (and a RecursionError at about a thousand resources).
    assert _wrapper_depth(pickle._Pickler._batch_setitems) == 1
