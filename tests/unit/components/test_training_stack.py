"""Seed 000's training node: MLflow's artifacts in the estate's bucket (an existing S3-compatible one too) with
its backend store on the node's data directory, and pgvector's ``vector`` extension created on every start.
The compose document is checked by Docker's own compose where it is installed."""
import shutil
import subprocess

import pytest
import yaml

from components.workloads import compose_project, secret_files
from core.config import parse_spec
from core.workloads.node_files import BucketAccess, NodeSecrets

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXNhbmRib3hrZXk= ops@estate"


def training():
    spec = parse_spec({
        "nodes": {"training": {"provider": "tensordock", "gpu": {"model": "rtx4090"}, "max_price_per_hour": 0.5,
                               "ssh": {"public_key": KEY},
                               "workloads": {"mlflow": {"artifact_bucket": "models"}, "pgvector": {}}}},
        "storage": {"models": {"provider": "s3", "location": "us-east-1", "endpoint": "https://s3.example.net",
                               "access_key_secret": "S3_KEY", "secret_key_secret": "S3_SECRET",
                               "readers": ["training"]}},
        "budget": {"monthly_usd": 1000}})
    secrets = NodeSecrets(pg_password="pw", buckets={"models": BucketAccess(
        url="s3://models", aws_access_key_id="AK", aws_secret_access_key="SK", endpoint="https://s3.example.net")})
    return spec.nodes["training"], secrets


def test_mlflow_keeps_runs_on_the_node_and_artifacts_in_the_bucket():
    node, secrets = training()
    doc = compose_project(node, secrets)
    mlflow = doc["services"]["mlflow"]
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"] == "sqlite:////mlflow/mlflow.db"
    assert mlflow["volumes"] == ["/opt/estate/data/mlflow:/mlflow"]  # the sqlite file outlives the container
    assert "--serve-artifacts" in mlflow["command"]
    files = dict(secret_files(node, secrets))
    env = files["/opt/estate/secrets/mlflow-artifacts.env"]
    assert "MLFLOW_ARTIFACTS_DESTINATION=s3://models/mlflow\n" in env
    assert "MLFLOW_S3_ENDPOINT_URL=https://s3.example.net" in env
    assert "AWS_ENDPOINT_URL_S3=https://s3.example.net" in files["/opt/estate/secrets/models-s3.env"]


def test_pgvector_creates_its_extension_each_time_it_starts():
    node, secrets = training()
    doc = compose_project(node, secrets)
    (hook,) = doc["services"]["pgvector"]["post_start"]
    assert hook["command"][-1].endswith("-c 'CREATE EXTENSION IF NOT EXISTS vector'")
    assert "$" not in hook["command"][-1]  # compose would read it as a variable
    if not shutil.which("docker") or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode:
        pytest.skip("no docker compose here")
    alone = {**doc, "services": {"pgvector": doc["services"]["pgvector"]}}  # its files exist on the node only
    checked = subprocess.run(["docker", "compose", "-f", "-", "config"], input=yaml.safe_dump(alone), text=True,
                             capture_output=True)
    assert checked.returncode == 0, checked.stderr
    assert "CREATE EXTENSION IF NOT EXISTS vector" in checked.stdout
