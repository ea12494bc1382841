"""The health agent's MLflow probe, as the workload kind describes it, against MLflow's real tracking server
(PyPI's mlflow, ``sandbox/mlflow.py``): it passes on the running server and fails once the server is gone."""
import pytest

from agents import health as agent
from core.workloads.mlflow import Mlflow
from sandbox import mlflow as real_mlflow
from tests.conftest import required_or_skip


def test_the_kinds_probe_passes_on_mlflow_and_fails_when_it_stops():
    required_or_skip(real_mlflow.missing(), "MLflow's server")
    probe = Mlflow(kind="mlflow").probe([])
    assert probe["type"] == "http"  # a route of MLflow's own, not a bare TCP connection
    with real_mlflow.MlflowServer() as server:
        agent.probe(server.url, probe, 10)
        with pytest.raises(agent.ProbeFailed):  # a route MLflow does not serve is not taken for health
            agent.probe(server.url, {**probe, "path": "/no-such-route"}, 10)
        url = server.url
    with pytest.raises((agent.ProbeFailed, OSError)):
        agent.probe(url, probe, 2)
