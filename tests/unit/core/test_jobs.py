"""GPU jobs in the stack: declared like a node plus what they run, refused naming the key when a cap, a
bucket or a machine rule is wrong, and counted at their cap in the month's estimate and the budget rules."""
import copy

import pytest

from core import pricing
from core.config import parse_spec
from core.errors import ConfigError
from core.jobs import JobSpec, Preemption, job_document, label, stamp

BASE = {
    "nodes": {"gw": {"provider": "host", "address": "127.0.0.1", "ssh": {
        "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXNhbmRib3hrZXk="},
        "workloads": {"litellm": {}}}},
    "gateway": {"node": "gw", "deploy": "local"},
    "spend": {},
    "storage": {"models": {"provider": "s3", "location": "us-east-1"}},
    "budget": {"monthly_usd": 100},
    "jobs": {"train": {
        "provider": "tensordock", "gpu": {"model": "RTX 4090"}, "max_price_per_hour": 0.4, "regions": ["Germany"],
        "ssh": {"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXNhbmRib3hrZXk= me@host"},
        "image": "ghcr.io/acme/trainer:1.2", "command": ["python3", "train.py", "--epochs", "3; rm -rf /"],
        "env": {"LR": "3e-4"}, "secret_env": ["WANDB_API_KEY"], "bucket": "models",
        "inputs": ["datasets/chat/"], "outputs": "models/acme/tiny/3/", "max_hours": 8, "max_usd": 0.8}},
}


def config(**changes):
    raw = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        d = raw
        for p in parents:
            d = d[p]
        if value is None:
            del d[leaf]
        else:
            d[leaf] = value
    return raw


def problems(raw) -> dict:
    with pytest.raises(ConfigError) as err:
        parse_spec(raw)
    return dict(err.value.problems)


def test_a_job_is_a_node_shaped_machine_plus_what_it_runs():
    spec = parse_spec(config())
    job = spec.jobs["train"]
    assert job.gpu.model == "rtx4090" and job.machine.price_cap == 0.4 and job.machine.regions == ["Germany"]
    assert job.command == ["python3", "train.py", "--epochs", "3; rm -rf /"]  # words, kept as data
    assert job.outputs == "models/acme/tiny/3" and job.on_preemption is Preemption.REPORT and job.run == "1"
    doc = job_document(job, label("gpu-estate", "prod", "train", job.run), "s3://models", None, "us-east-1")
    assert doc["command"] == job.command and doc["bucket"] == "models"
    assert doc["status_prefix"] == "estate-jobs/gpu-estate-prod-job-train-1"
    assert "WANDB_API_KEY" not in str(doc)  # names of secrets reach the machine over SSH, never in the document


@pytest.mark.parametrize("key", ["max_hours", "max_usd"])
def test_a_job_without_a_cap_is_refused_naming_the_key(key):
    assert f"gpu-estate:jobs.train.{key}" in problems(config(**{f"jobs__train__{key}": None}))


@pytest.mark.parametrize("path,value,key,says", [
    ("jobs__train__max_hours", 0, "gpu-estate:jobs.train.max_hours", "greater than 0"),
    ("jobs__train__max_usd", -1, "gpu-estate:jobs.train.max_usd", "greater than 0"),
    ("jobs__train__provider", "runpod", "gpu-estate:jobs.train.provider", "tensordock or vastai"),
    ("jobs__train__failover", ["aws"], "gpu-estate:jobs.train.failover", "aws"),
    ("jobs__train__market", "spot", "gpu-estate:jobs.train", "spot"),  # the node's own rule
    ("jobs__train__gpu", None, "gpu-estate:jobs.train", "gpu.model"),
    ("jobs__train__bucket", "nowhere", "gpu-estate:jobs.train.bucket", "nowhere"),
    ("jobs__train__outputs", "../etc", "gpu-estate:jobs.train.outputs", "../etc"),
    ("jobs__train__inputs", ["/abs"], "gpu-estate:jobs.train.inputs.0", "/abs"),
    ("jobs__train__command", [], "gpu-estate:jobs.train.command", "at least 1"),
    ("jobs__train__command", ["a\nb"], "gpu-estate:jobs.train.command.0", "a\\nb"),
    ("jobs__train__image", "ghcr.io/acme/trainer:1.2;id", "gpu-estate:jobs.train.image", ";id"),
    ("jobs__train__run", "two words", "gpu-estate:jobs.train.run", "two words"),
    ("jobs__train__on_preemption", "retry", "gpu-estate:jobs.train.on_preemption", "retry"),
    ("jobs__train__workloads", {}, "gpu-estate:jobs.train.workloads", "workloads"),
    ("spend", None, "gpu-estate:jobs", "spend watcher"),
    ("jobs__train__ssh", {}, "gpu-estate:jobs.train.ssh.public_key", "SSH public key"),
])
def test_bad_job_keys_are_refused_before_any_resource(path, value, key, says):
    found = problems(config(**{path: value}))
    assert key in found, found
    assert says in found[key]


def test_a_job_named_like_a_node_or_over_the_hourly_cap_is_refused():
    raw = config()
    raw["jobs"]["gw"] = raw["jobs"].pop("train")
    assert "share the name" in problems(raw)["gpu-estate:jobs.gw"]
    raw = config()
    raw["budget"]["max_hourly_per_node"] = 0.3
    assert "max_hourly_per_node" in problems(raw)["gpu-estate:jobs.train"]


def test_the_cap_is_the_jobs_cost_in_the_estimate_and_the_budget():
    spec = parse_spec(config())
    est = pricing.estimate_job("train", spec.jobs["train"])
    # 8 h at $0.40/h would be $3.20: the $0.80 cap is what it may cost, two hours of the machine.
    assert (est.hourly_usd, est.hours_per_month, est.monthly_usd) == (0.4, 2.0, 0.8)
    total = pricing.estimate_estate(spec)
    assert total.monthly_usd == 0.8 and [r["node"] for r in pricing.cost_table(total, 100)["nodes"]] == ["gw", "job:train"]
    # The hour cap binds when it is the lower one.
    spec = parse_spec(config(jobs__train__max_hours=1))
    assert pricing.estimate_job("train", spec.jobs["train"]).monthly_usd == 0.4
    # Over the month's budget: refused naming the budget.
    found = problems(config(budget__monthly_usd=0.5))
    assert "$0.80/month" in found["gpu-estate:budget.monthly_usd"]
    s = stamp("train", spec.jobs["train"], pricing.estimate_job("train", spec.jobs["train"]))
    assert s["hourly_usd"] * s["hours_per_month"] == pytest.approx(0.4) and s["pay_per_use"]


def test_an_existing_bucket_at_an_endpoint_needs_its_keys():
    raw = config()
    raw["storage"]["models"]["endpoint"] = "http://127.0.0.1:9000"
    assert "access_key_secret" in problems(raw)["gpu-estate:storage.models"]
    raw["storage"]["models"].update(access_key_secret="S3_KEY", secret_key_secret="S3_SECRET")
    assert parse_spec(raw).storage["models"].secret_names == ["S3_KEY", "S3_SECRET"]
    raw["storage"]["models"]["provider"] = "gcs"
    assert "provider s3" in problems(raw)["gpu-estate:storage.models"]


def test_a_jobs_machine_keys_are_the_nodes_own():
    from core.spec import NodeSpec

    for key in ("gpu", "regions", "max_price_per_hour", "market", "bid_per_hour", "ssh"):
        assert JobSpec.model_fields[key].annotation == NodeSpec.model_fields[key].annotation
        assert JobSpec.model_fields[key].description == NodeSpec.model_fields[key].description


def test_a_month_over_budget_rents_no_new_job():
    from core import spend

    spec = parse_spec(config())
    over = {**spend.new_ledger("2026-12"), "spent_usd": 120.0, "nodes": {}}
    now = 1796200000.0  # in 2026-12
    assert "would start job train" in spend.refusal(spec, over, now)
    # A job the watcher has seen (rented before the month went over) is not rented again by `up`.
    assert spend.refusal(spec, {**over, "nodes": {"job:train": {}}}, now) is None


def test_a_spot_job_on_vastai_is_declared_like_a_spot_node_and_priced_at_its_cap():
    """Seed 003's budget training job: a Vast.ai interruptible bid for an RTX 4090, 8 hours, at most $0.80."""
    raw = config(jobs__train__provider="vastai", jobs__train__market="spot", jobs__train__bid_per_hour=0.3,
                 jobs__train__regions=None, jobs__train__failover=["tensordock"])
    job = parse_spec(raw).jobs["train"]
    assert (job.provider.value, job.market.value, job.bid_per_hour) == ("vastai", "spot", 0.3)
    est = pricing.estimate_job("train", job)
    assert est.monthly_usd == pytest.approx(job.cap_usd(est.hourly_usd)) and est.monthly_usd <= 0.8
