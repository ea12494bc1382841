"""A GPU job in the prod stack, run under Pulumi mocks: its billing resource carries its cap for the policy pack,
its secrets (secret env, bucket key, SSH key, host key) are secret inputs only, it has its own bucket key, and
the gateway host's spend watcher gets the job and its bucket key in a watch entry of the job's own, written over
SSH before the job's machine is rented."""
import base64
import json

import pytest

from tests.mocks import MOCK_SECRET, run_program, stack_config

JOB = "pulumi-python:dynamic/job:Job"
WATCH = "pulumi-python:dynamic/job:Watch"
TOKEN = "wandb-" + "T" * 30


@pytest.fixture(scope="module")
def prod():
    config = stack_config("prod")
    config["gpu-estate:storage"] = {**config["gpu-estate:storage"],
                                   "runs": {"provider": "s3", "location": "us-east-1"}}
    config["gpu-estate:jobs"] = {"finetune": {
        "provider": "tensordock", "gpu": {"model": "RTX_4090"}, "max_price_per_hour": 0.4,
        "ssh": {"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXNhbmRib3hrZXk= ops@estate"},
        "image": "ghcr.io/acme/trainer:1.2", "command": ["python3", "train.py", "--epochs", "10"],
        "secret_env": ["WANDB_API_KEY"], "bucket": "runs", "inputs": ["datasets/chat/"],
        "outputs": "models/acme/tiny/3", "max_hours": 8, "max_usd": 0.8}}
    config["gpu-estate:WANDB_API_KEY"] = TOKEN
    return run_program(config, stack="prod")


def test_the_job_is_one_billing_resource_stamped_at_its_cap(prod):
    (job,) = prod.of_type(JOB)
    assert job.inputs["label"] == "gpu-estate-prod-job-finetune-1" and job.inputs["clouds"] == ["tensordock"]
    assert job.inputs["caps"] == {"max_hours": 8, "max_usd": 0.8}
    s = job.inputs["stamps"]
    assert (s["node"], s["hourly_usd"], s["hours_per_month"]) == ("job:finetune", 0.4, 2.0)
    assert job.inputs["document"]["command"] == ["python3", "train.py", "--epochs", "10"]
    assert job.inputs["document"]["bucket"] == "gpu-estate-prod-runs"
    assert job.inputs["launch"]["cloud_init"].startswith("#cloud-config")
    assert {"secrets", "host_key"} <= set(job.secret_paths)
    assert TOKEN not in json.dumps(job.inputs["document"]) and TOKEN not in job.inputs["launch"]["cloud_init"]
    # Its own IAM user and key, scoped to its bucket.
    assert [u.inputs["name"] for u in prod.of_type("aws:iam/user:User")] == ["gpu-estate-prod-runs-job-finetune"]


def test_the_watcher_gets_the_job_and_its_bucket_key_as_a_secret_before_the_machine_is_rented(prod):
    (watch,) = prod.of_type(WATCH)
    entry = watch.inputs["entry"]
    assert (watch.name, watch.inputs["directory"]) == ("job-finetune-watch", "/etc/estate/gateway/spend/jobs")
    assert watch.inputs["file"].startswith("finetune-") and watch.inputs["file"].endswith(".json")
    assert entry["label"] == "gpu-estate-prod-job-finetune-1" and entry["clouds"] == ["tensordock"]
    assert (entry["max_hours"], entry["max_usd"], entry["bucket"]) == (8, 0.8, "gpu-estate-prod-runs")
    assert entry["status_prefix"] == "estate-jobs/gpu-estate-prod-job-finetune-1"
    assert entry["key"]["secret_key"] == MOCK_SECRET and any(p.startswith("entry") for p in watch.secret_paths)
    gateway_host = prod.named("gateway-secrets")  # over SSH to the gateway host, pinned to its host key
    assert watch.inputs["ssh"]["user"] == "root" and watch.inputs["ssh"]["host_key"]
    # Written first: the job's resource waits for its watch entry (its registration follows the entry's).
    names = [r.name for r in prod.resources]
    assert names.index("job-finetune-watch") < names.index("job-finetune")
    # The gateway's own files no longer carry the job: it is watched whether or not the gateway deploys.
    deploy = prod.named("gateway-deploy")
    assert '"job": "finetune"' not in deploy.inputs["stdin"] and MOCK_SECRET not in deploy.inputs["stdin"]
    assert "ESTATE_JOB_KEYS" not in base64.b64decode(dict(
        line.split(" ", 1) for line in gateway_host.inputs["stdin"].splitlines())["/etc/estate/gateway/gateway.env"]).decode()
    assert "/etc/estate/gateway/spend/jobs:/app/spend/jobs:ro" in deploy.inputs["stdin"]


def test_the_cost_diff_and_the_policy_pack_count_the_job_at_its_cap(prod):
    from policy.stamps import node_stamps
    from scripts import cost_diff

    (job,) = prod.of_type(JOB)
    step = {"op": "create", "newState": {"type": JOB, "inputs": job.inputs}}
    after = cost_diff.costs({"steps": [step]}, "new")
    assert after.nodes["job:finetune"].monthly_usd == pytest.approx(0.8) and after.total == pytest.approx(0.8)
    verdict = cost_diff.report(cost_diff.Costs(), after, "prod", budget=500.0, max_increase=0.5,
                               max_increase_pct=None, max_total=None)
    assert "job:finetune (new)" in verdict.markdown and verdict.failures  # past a $0.50 limit: it fails
    assert node_stamps(JOB, job.inputs)["hourly_usd"] == 0.4


@pytest.fixture(scope="module")
def vast_spot():
    """Seed 003's job as the prod stack declares it: a Vast.ai interruptible bid, TensorDock as its failover."""
    config = stack_config("prod")
    config["gpu-estate:storage"] = {**config["gpu-estate:storage"],
                                   "runs": {"provider": "s3", "location": "us-east-1"}}
    config["gpu-estate:jobs"] = {"finetune": {
        "provider": "vastai", "market": "spot", "bid_per_hour": 0.3, "failover": ["tensordock"],
        "gpu": {"model": "RTX_4090"}, "max_price_per_hour": 0.4,
        "ssh": {"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXNhbmRib3hrZXk= ops@estate"},
        "image": "ghcr.io/acme/trainer:1.2", "command": ["python3", "train.py"], "secret_env": ["WANDB_API_KEY"],
        "bucket": "runs", "outputs": "models/acme/tiny/3", "max_hours": 8, "max_usd": 0.8}}
    config["gpu-estate:WANDB_API_KEY"] = TOKEN
    return run_program(config, stack="prod")


def test_a_vastai_spot_job_bids_like_a_spot_node_and_is_stamped_as_one(vast_spot):
    (job,) = vast_spot.of_type(JOB)
    assert job.inputs["clouds"] == ["vastai", "tensordock"] and job.inputs["bid_per_hour"] == 0.3
    assert job.inputs["request"]["spot"] is True
    s = job.inputs["stamps"]
    assert (s["provider"], s["market"], s["hourly_usd"], s["monthly_usd"]) == ("vastai", "spot", 0.4, 0.8)
    # The job's image is the container machine's (the provider launches it there); no secret rides in the launch.
    assert job.inputs["document"]["image"] == "ghcr.io/acme/trainer:1.2"
    assert TOKEN not in json.dumps(job.inputs["launch"]) and TOKEN not in json.dumps(job.inputs["document"])


def test_the_job_is_rented_only_once_the_spend_watcher_runs(prod):
    """Nothing on a job's machine stops its own billing (only the vendor's API deletes it), so the job waits for
    what runs the watcher that releases it: on a gateway host, the deploy that enables the watcher's timer."""
    names = [r.name for r in prod.resources]
    assert names.index("gateway-deploy") < names.index("job-finetune")
    # Its watch entry too: the caps count from the entry's writing, so it is written just before the rent.
    assert names.index("gateway-deploy") < names.index("job-finetune-watch") < names.index("job-finetune")


def test_beside_a_local_gateway_the_job_waits_for_the_local_spend_watcher():
    config = stack_config("sandbox")
    config["gpu-estate:storage"] = {**(config.get("gpu-estate:storage") or {}),
                                   "runs": {"provider": "s3", "location": "us-east-1"}}
    config["gpu-estate:jobs"] = {"finetune": {
        "provider": "tensordock", "gpu": {"model": "RTX_4090"}, "max_price_per_hour": 0.4,
        "ssh": {"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXNhbmRib3hrZXk= ops@estate"},
        "image": "ghcr.io/acme/trainer:1.2", "command": ["python3", "train.py"], "bucket": "runs",
        "outputs": "models/acme/tiny/3", "max_hours": 8, "max_usd": 0.8}}
    names = [r.name for r in run_program(config, stack="sandbox").resources]
    assert names.index("gateway-spend") < names.index("job-finetune-watch") < names.index("job-finetune")
