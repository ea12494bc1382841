"""The GitOps workflows: actionlint (built by scripts/build-actionlint.sh, with shellcheck where it is
installed) and what each workflow must do."""
import tests
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = tests.ROOT
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = Path(os.environ.get("GPU_ESTATE_CACHE", Path.home() / ".cache" / "gpu-estate")) / "actionlint-v1.7.12" / "bin" / "actionlint"


def load(name):
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as a boolean
    return doc


@pytest.mark.skipif(not ACTIONLINT.exists(), reason=f"no actionlint at {ACTIONLINT}: `make setup` builds it")
def test_workflows_pass_actionlint():
    run = subprocess.run([str(ACTIONLINT), "-no-color", "-oneline"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.skipif(not ACTIONLINT.exists(), reason=f"no actionlint at {ACTIONLINT}: `make setup` builds it")
def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n")
    run = subprocess.run([str(ACTIONLINT), "-no-color", "-oneline", str(bad)], capture_output=True, text=True)
    assert run.returncode == 1 and 'property "nope" is not defined' in run.stdout


def steps_using(doc, action):
    return [s for job in doc["jobs"].values() for s in job["steps"] if str(s.get("uses", "")).startswith(action)]


def test_pull_requests_preview_every_stack_with_the_pack_and_comment_in_place():
    doc = load("preview.yml")
    assert "pull_request" in doc["on"]
    assert doc["jobs"]["preview"]["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    (pulumi,) = steps_using(doc, "pulumi/actions")
    w = pulumi["with"]
    # The pack and its limits are the base branch's: a pull request cannot raise the limit that judges it.
    assert w["command"] == "preview" and w["policyPacks"] == "base/policy" and w["policyPackConfigs"] == "policy-config.json"
    (base,) = [s for s in doc["jobs"]["preview"]["steps"] if s.get("with", {}).get("path") == "base"]
    assert base["with"]["ref"] == "${{ github.base_ref }}"
    (config,) = [s for s in doc["jobs"]["preview"]["steps"] if "policy.pack_config" in s.get("run", "")]
    assert "cd base && python -m policy.pack_config" in config["run"]
    assert w["comment-on-pr"] is True and w["edit-pr-comment"] is True
    assert w["pulumi-version"] == "3.259.0"
    run = "\n".join(s.get("run", "") for s in doc["jobs"]["preview"]["steps"])
    assert "--show-sames" in run and "scripts/cost_diff.py" in run and "--max-increase-pct" in run
    assert "--policy-pack base/policy" in run
    (comment,) = steps_using(doc, "actions/github-script")
    assert "updateComment" in comment["with"]["script"]
    # The estate drawn goes under the cost table, into the file the comment posts, before it is posted.
    steps = doc["jobs"]["preview"]["steps"]
    (drawn,) = [i for i, s in enumerate(steps) if "scripts/diagram.py" in s.get("run", "")]
    assert steps[drawn]["run"].endswith(">> cost.md") and steps.index(comment) == drawn + 1
    assert "cost_diff.py" in steps[drawn - 1]["run"]


def test_pull_request_previews_get_no_production_secret():
    doc = load("preview.yml")
    job = doc["jobs"]["preview"]
    text = (WORKFLOWS / "preview.yml").read_text()
    # Never a fork's code; always a reviewer's approval (the protected environment) before secrets.
    assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert job["environment"] == "preview"
    assert "secrets." not in yaml.safe_dump(doc.get("env", {}))  # nothing secret outside the job
    # No marketplace token and no write credential anywhere in the workflow.
    for name in ("TENSORDOCK_API_TOKEN", "VASTAI_API_KEY", "RUNPOD_API_KEY", "ESTATE_SSH_PRIVATE_KEY",
                 "secrets.AWS_ROLE_ARN", "secrets.GCP_SERVICE_ACCOUNT", "secrets.CLOUDFLARE_API_TOKEN"):
        assert name not in text, name
    assert job["env"]["CLOUDFLARE_API_TOKEN"] == "${{ secrets.CLOUDFLARE_READONLY_API_TOKEN }}"


def test_merges_to_main_deploy_with_the_pack_one_update_per_stack():
    doc = load("deploy.yml")
    assert doc["on"]["push"]["branches"] == ["main"]
    job = doc["jobs"]["up"]
    assert job["concurrency"]["cancel-in-progress"] is False
    preview, up = steps_using(doc, "pulumi/actions")  # in this order: the pack judges a preview first
    assert preview["with"]["command"] == "preview" and preview["with"]["policyPacks"] == "policy"
    assert up["with"]["command"] == "up" and up["with"]["policyPacks"] == "policy"


def test_the_daily_drift_check_writes_no_state():
    doc = load("drift.yml")
    assert doc["on"]["schedule"]
    (pulumi,) = steps_using(doc, "pulumi/actions")
    # A preview with refresh: drift fails the run and stays visible to the next `up` (a refresh would
    # write the drifted state and hide it).
    w = pulumi["with"]
    assert w["command"] == "preview" and w["refresh"] is True and w["expect-no-changes"] is True


# An action used by a tag runs whatever its publisher (or whoever takes over its account) points the tag at
# next: LiteLLM's compromised releases of March 2026 came through a CI action moved that way. Every action
# is a full commit SHA, its tag in a comment for the reader and for Dependabot.
PINNED = re.compile(r"^\s*(-\s+)?uses:\s*(?P<action>[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+)@(?P<ref>[0-9a-f]{40})\s+#\s*v\d+(\.\d+)*\s*$")
LOCAL = re.compile(r"^\s*(-\s+)?uses:\s*\./")


def uses_lines(root=ROOT / ".github"):
    for path in sorted(root.rglob("*.y*ml")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"^\s*(-\s+)?uses:", line):
                yield f"{path.relative_to(root)}:{n}", line


def test_every_action_is_pinned_by_commit_with_its_tag_in_a_comment():
    lines = list(uses_lines())
    assert len(lines) >= 10  # the workflows and the composite action are read
    unpinned = [f"{where}: {line.strip()}" for where, line in lines if not (PINNED.match(line) or LOCAL.match(line))]
    assert not unpinned, "actions used by tag or branch:\n" + "\n".join(unpinned)


def test_the_pin_check_catches_an_action_by_tag(tmp_path):
    bad = tmp_path / "workflows" / "bad.yml"
    bad.parent.mkdir()
    bad.write_text("jobs:\n  x:\n    steps:\n      - uses: actions/checkout@v4\n"
                   "      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683\n"  # no tag comment
                   "      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2\n")
    verdicts = [bool(PINNED.match(line)) for _, line in uses_lines(tmp_path)]
    assert verdicts == [False, False, True]


def test_dependabot_keeps_requirements_images_and_actions_current():
    doc = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    updates = {(u["package-ecosystem"], tuple(u.get("directories") or [u.get("directory")])) for u in doc["updates"]}
    assert ("pip", ("/",)) in updates  # requirements.txt and requirements-gateway.txt
    assert ("docker-compose", ("/assets/images",)) in updates
    assert any(eco == "github-actions" and "/" in dirs and "/.github/actions/setup" in dirs for eco, dirs in updates)
    # The LiteLLM package and its image move in the same pull request.
    grouped = {u["package-ecosystem"] for u in doc["updates"] if u.get("multi-ecosystem-group") == "runtime"}
    assert {"pip", "docker-compose"} <= grouped and "runtime" in doc["multi-ecosystem-groups"]
