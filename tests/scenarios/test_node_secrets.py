"""Every secret a service on a node mounts is a file the node's secret bundle writes, on every stack
and in any order of workloads; MLflow on prod reads its bucket key from where its env says."""
import base64
import copy

import pytest
import yaml

from tests.mocks import MOCK_SECRET, run_program, stack_config

SECRETS_PREFIX = "/opt/estate/secrets/"


def bundle(command) -> dict:
    return {path: base64.b64decode(data).decode()
            for path, data in (line.split(" ", 1) for line in command.inputs["stdin"].splitlines())}


def compose_of(command) -> dict:
    """The compose project a node's workloads command writes (a quoted heredoc in its script)."""
    body = command.inputs["create"].split("cat > /opt/estate/compose.yaml.tmp <<'", 1)[1].split("\n", 1)[1]
    return yaml.safe_load(body.split("\nESTATE_", 1)[0])


def mounted_secret_files(compose: dict) -> dict:
    """Service -> every host file it reads secrets from (env files and compose secrets)."""
    top = compose.get("secrets") or {}
    out = {}
    for name, svc in compose["services"].items():
        files = [f for f in svc.get("env_file", []) if f.startswith(SECRETS_PREFIX)]
        for s in svc.get("secrets", []):
            source = s["source"] if isinstance(s, dict) else s
            files.append(top[source]["file"])
        out[name] = files
    return out


def run(config):
    return run_program(config, stack="prod")


@pytest.fixture(scope="module")
def prod():
    return run(copy.deepcopy(stack_config("prod")))


def test_every_mounted_secret_on_prod_is_delivered(prod):
    checked = 0
    for workloads in prod.of_type("command:remote:Command"):
        if not workloads.name.endswith("-workloads"):
            continue
        node = workloads.name.removesuffix("-workloads")
        compose = compose_of(workloads)
        written = bundle(prod.named(f"{node}-secrets")) if any(r.name == f"{node}-secrets" for r in prod.resources) else {}
        for service, files in mounted_secret_files(compose).items():
            for f in files:
                assert f in written, f"{node}/{service} mounts {f}, which no secret bundle writes"
                checked += 1
    assert checked >= 3  # training: pgvector's password, mlflow's env file and its bucket key


def test_mlflow_on_prod_mounts_its_bucket_key_where_its_env_points(prod):
    compose = compose_of(prod.named("training-workloads"))
    mlflow = compose["services"]["mlflow"]
    assert {"source": "bucket_key", "target": "bucket.json"} in mlflow["secrets"]
    assert compose["secrets"]["bucket_key"] == {"file": "/opt/estate/secrets/models-gcs.json"}
    written = bundle(prod.named("training-secrets"))
    env = written["/opt/estate/secrets/mlflow-artifacts.env"]
    assert "GOOGLE_APPLICATION_CREDENTIALS=/run/secrets/bucket.json" in env
    assert MOCK_SECRET in written["/opt/estate/secrets/models-gcs.json"]  # the key itself, delivered on stdin


def test_the_order_of_workloads_does_not_matter():
    config = copy.deepcopy(stack_config("prod"))
    training = config["gpu-estate:nodes"]["training"]["workloads"]
    training = dict(reversed(list(training.items())))  # pgvector before mlflow
    config["gpu-estate:nodes"]["training"]["workloads"] = training
    mocks = run(config)
    compose = compose_of(mocks.named("training-workloads"))
    assert list(compose["services"])[0] == "pgvector"
    assert set(compose["secrets"]) == {"pg_password", "bucket_key"}
    assert {"source": "bucket_key", "target": "bucket.json"} in compose["services"]["mlflow"]["secrets"]
