"""The project's dynamic-provider host: the SDK's own, started through the plugin Pulumi.yaml names,
serving with a larger pool than the SDK's four threads, on the SDK versions that workaround was checked on."""
import base64
import os
import select
import subprocess
import sys
from concurrent import futures

import dill
import grpc
from google.protobuf import struct_pb2
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

import yaml

from core.config import PROJECT_ROOT
from providers import dynamic_host
from tests.holding_provider import Gate, HoldingProvider


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


CALLS = 6  # more than the SDK host's pool


def _start_host(command, env=None):
    """A provider host started as the engine starts one: it prints the port it serves on."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=PROJECT_ROOT,
                            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})})
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    assert ready, proc.stderr.read1().decode() if proc.poll() is not None else "no port announced in 30 s"
    return proc, int(proc.stdout.readline())


def _most_calls_at_once(command, env=None) -> int:
    """Sends ``CALLS`` creates at once to a host and returns how many it ran at the same time."""
    gate = Gate(target=CALLS)
    proc, port = _start_host(command, env)
    try:
        provider = base64.b64encode(dill.dumps(HoldingProvider(), recurse=True)).decode()
        props = struct_pb2.Struct()
        props.update({"__provider": provider, "url": gate.url})
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            with futures.ThreadPoolExecutor(CALLS) as pool:
                calls = [pool.submit(stub.Create, provider_pb2.CreateRequest(
                    urn=f"urn:pulumi:test::project::pulumi-python:dynamic:Resource::r{i}", properties=props),
                    timeout=60) for i in range(CALLS)]
                assert {c.result().id for c in calls} == {"held"}
        return gate.peak
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        gate.close()


def test_the_sdks_own_host_runs_at_most_four_calls_at_once():
    # The defect this host works around, on the pinned SDK: six creates sent at once, four run.
    assert _most_calls_at_once([sys.executable, "-m", "pulumi.dynamic"]) == dynamic_host.SDK_POOL_SIZE == 4


def test_the_projects_host_runs_every_call_the_engine_sends_at_once():
    plugin = PROJECT_ROOT / "providers" / "plugin" / "pulumi-resource-pulumi-python"
    assert _most_calls_at_once([str(plugin)], {"ESTATE_PROVIDER_WORKERS": ""}) == CALLS


def test_outside_the_checked_sdk_versions_the_host_warns_and_keeps_the_sdks_pool(monkeypatch, capsys):
    monkeypatch.setattr(futures, "ThreadPoolExecutor", futures.ThreadPoolExecutor)  # restored after the test
    sdk_pool = futures.ThreadPoolExecutor
    assert dynamic_host.larger_pool(version="3.300.0") is False
    assert futures.ThreadPoolExecutor is sdk_pool
    warning = capsys.readouterr().err
    assert "3.300.0" in warning and "3.259.0" in warning and dynamic_host.POOL_ISSUE in warning
    assert dynamic_host.larger_pool(version="3.259.0") is True
    assert futures.ThreadPoolExecutor is dynamic_host._Pool


def test_only_the_sdk_hosts_pool_is_made_larger(monkeypatch):
    monkeypatch.setattr(futures, "ThreadPoolExecutor", futures.ThreadPoolExecutor)  # restored after the test
    sdk_pool = futures.ThreadPoolExecutor
    assert dynamic_host.larger_pool(version="3.259.0") is True
    one = futures.ThreadPoolExecutor(max_workers=1)  # another pool, built before the SDK's: as asked
    assert one._max_workers == 1
    grpc_pool = futures.ThreadPoolExecutor(max_workers=dynamic_host.SDK_POOL_SIZE)  # what the SDK's host builds
    assert grpc_pool._max_workers == dynamic_host.WORKERS
    assert futures.ThreadPoolExecutor is sdk_pool  # every pool after it is the standard library's, as asked
    assert futures.ThreadPoolExecutor(max_workers=dynamic_host.SDK_POOL_SIZE)._max_workers == dynamic_host.SDK_POOL_SIZE
    for pool in (one, grpc_pool):
        pool.shutdown()
