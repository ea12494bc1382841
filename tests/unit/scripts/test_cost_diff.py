"""The PR cost diff on real previews of the sandbox stack (tests/fixtures)."""
import tests
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import cost_diff

ROOT = tests.ROOT
FIXTURES = ROOT / "tests" / "fixtures"


def load(name):
    return json.loads((FIXTURES / name).read_text())


def run(*args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "cost_diff.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_costs_before_and_after_come_from_the_stamps():
    change = load("preview-change.json")
    before, after = cost_diff.costs(change, "old"), cost_diff.costs(change, "new")
    assert {n: c.monthly_usd for n, c in before.nodes.items()} == {"inference": 48.0, "qwen": 60.0, "batch": 20.0}
    assert {n: c.monthly_usd for n, c in after.nodes.items()} == {"inference": 48.0, "qwen": 90.0}
    assert (before.total, after.total) == (128.0, 138.0)


def test_markdown_shows_each_node_the_total_and_the_budget(tmp_path):
    out = tmp_path / "comment.md"
    r = run(FIXTURES / "preview-change.json", "--stack", "sandbox", "--output", out)
    assert r.returncode == 0, r.stderr
    assert "| qwen | vastai | rtx3090 | $0.30 | 200 → 300 | $90.00 | +$30.00 (+50%) |" in r.stdout
    assert "| batch (removed) | runpod | rtx4090 | – | 40 | $0.00 | -$20.00 (-100%) |" in r.stdout
    assert "| **total** | | | | | **$138.00** | **+$10.00 (+8%)** |" in r.stdout
    assert "Monthly budget: $200.00; this change leaves the estate at 69% of it." in r.stdout
    assert out.read_text() == r.stdout


@pytest.mark.parametrize("args,message", [
    (["--max-increase", "5"], "the increase $10.00 is above the limit $5.00"),
    (["--max-increase-pct", "5"], "the increase 8% is above the limit 5%"),
    (["--max-total", "130"], "the new total $138.00 is above the limit $130.00"),
])
def test_past_a_limit_the_command_fails_and_says_which(args, message):
    r = run(FIXTURES / "preview-change.json", "--stack", "sandbox", *args)
    assert r.returncode == 1
    assert f"**Over a limit:** {message}" in r.stdout


def test_two_previews_compare_base_and_head():
    r = run(FIXTURES / "preview-change.json", "--base", FIXTURES / "preview-create.json", "--stack", "sandbox",
            "--max-increase", "10")
    assert r.returncode == 0, r.stdout
    assert "**+$10.00 (+8%)**" in r.stdout


def test_a_new_estate_counts_from_zero():
    r = run(FIXTURES / "preview-create.json", "--stack", "sandbox")
    assert "| inference (new) | tensordock | rtx4090 | $0.40 | 120 | $48.00 | +$48.00 |" in r.stdout
    assert "**$128.00**" in r.stdout


def test_a_preview_without_show_sames_is_refused(tmp_path):
    change = load("preview-change.json")
    change["steps"] = [s for s in change["steps"] if s["op"] != "same"]
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(change))
    r = run(path)
    assert r.returncode == 2 and "--show-sames" in r.stderr


def test_over_the_stack_budget_fails(tmp_path):
    r = cost_diff.report(cost_diff.Costs(), cost_diff.costs(load("preview-change.json"), "new"), "sandbox", 100.0,
                         None, None, None)
    assert r.failures == ["the new total $138.00 is above the budget $100.00"]


def test_a_serverless_endpoint_is_costed_from_its_stamps_like_a_node():
    from core.config import parse_spec
    from core.stamps import endpoint_stamp
    from core.topology import plan_estate
    from tests.mocks import stack_estate

    plan = plan_estate(parse_spec(stack_estate("prod")))
    stamp = endpoint_stamp("goblin-inference", plan.spec.serverless["goblin-inference"],
                           plan.endpoint_estimates["goblin-inference"])
    step = {"op": "create", "newState": {"type": "pulumi-python:dynamic/runpod:Endpoint", "inputs": {"stamps": stamp}}}
    after = cost_diff.costs({"steps": [step]}, "new")
    (cost,) = after.nodes.values()
    assert (cost.node, cost.provider, cost.gpu) == ("goblin-inference", "runpod-serverless", "AMPERE_24")
    assert cost.monthly_usd == pytest.approx(plan.endpoint_estimates["goblin-inference"].monthly_usd, abs=0.01)


def test_the_hosted_services_are_costed_from_their_stamps_like_nodes():
    """Fly.io's machine carries its stamps as a map, Cloud Run's service as ``estate-*`` labels."""
    from core.config import parse_spec
    from core.stamps import to_tags
    from core.topology import plan_estate
    from tests.mocks import stack_estate

    plan = plan_estate(parse_spec(stack_estate("prod")))
    est = plan.service_estimates
    fly, run = plan.spec.services["chat-fallback"], plan.spec.services["llama-l4"]
    run_stamp = {k: v for k, v in run.stamp("llama-l4", est["llama-l4"]).items() if k != "regions"}
    steps = [{"op": "create", "newState": {"type": "pulumi-python:dynamic/fly:Machine",
                                           "inputs": {"stamps": fly.stamp("chat-fallback", est["chat-fallback"])}}},
             {"op": "create", "newState": {"type": "gcp:cloudrunv2/service:Service",
                                           "inputs": {"labels": to_tags(run_stamp)}}}]
    after = cost_diff.costs({"steps": steps}, "new")
    assert {n: (c.provider, round(c.monthly_usd, 2)) for n, c in after.nodes.items()} == {
        "chat-fallback": ("fly", 11.70), "llama-l4": ("cloudrun", 31.39)}
    before = cost_diff.costs({"steps": steps}, "old")
    assert after.total - before.total == pytest.approx(11.70 + 31.39, abs=0.02)
