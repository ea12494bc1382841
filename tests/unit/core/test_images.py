"""The default images' data file (assets/images/compose.yaml): its format, the digests it may carry and
how they reach what is deployed, the fill command, and the one LiteLLM release deployed and tested."""
import tests
import dataclasses
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from components import workloads
from core import images
from core.config import parse_spec
from core.kinds import KINDS, WorkloadKind
from providers.local_gateway import litellm_binary
from tests.mocks import stack_estate

ROOT = tests.ROOT
DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_the_file_is_a_compose_document_of_one_pinned_image_per_service():
    doc = yaml.safe_load(images.IMAGES_FILE.read_text())
    assert set(doc) == {"services"}
    for name, svc in doc["services"].items():
        assert set(svc) == {"image"}, name  # nothing a bot or a reader would take for configuration
        image = images.parse_image(svc["image"])
        assert image.tag not in ("latest", "main", "stable"), (name, svc["image"])  # a tag that moves by design
        assert image.digest is None or images.parse_image(svc["image"]).digest.startswith("sha256:")
    assert {k.value for k in WorkloadKind if KINDS[k].image} | {"cloudflared", "caddy"} <= set(doc["services"])


@pytest.mark.parametrize("ref,ok", [
    ("ollama/ollama:0.12.6", True),
    (f"ollama/ollama:0.12.6@{DIGEST}", True),
    (f"ghcr.io/berriai/litellm:main-v1.108.7@{DIGEST}", True),
    (f"localhost:5000/team/api:1.0@{DIGEST}", True),
    ("ollama/ollama:0.12.6@sha256:" + "0" * 63, False),
    ("ollama/ollama:0.12.6@sha256:" + "A" * 64, False),
    ("ollama/ollama:0.12.6@sha512:" + "0" * 64, False),
    (f"ollama/ollama:0.12.6@{DIGEST}\n", False),
    (f"ollama/ollama:0.12.6 @{DIGEST}", False),
])
def test_an_image_is_name_tag_and_an_optional_sha256_digest(ref, ok):
    if ok:
        assert images.parse_image(ref).digest == (DIGEST if "@" in ref else None)
    else:
        with pytest.raises(ValueError):
            images.parse_image(ref)


def test_a_kinds_version_is_its_tags_with_or_without_a_digest():
    ollama = KINDS[WorkloadKind.OLLAMA]
    pinned = dataclasses.replace(ollama, image=f"ollama/ollama:0.12.6@{DIGEST}")
    assert pinned.version == dataclasses.replace(ollama, image="ollama/ollama:0.12.6").version == "0.12.6"
    webui = dataclasses.replace(KINDS[WorkloadKind.OPEN_WEBUI], image=f"ghcr.io/open-webui/open-webui:v0.6.34@{DIGEST}")
    assert webui.version == "0.6.34"  # what a container node's start script installs with pip


def test_a_digest_in_a_stack_image_field_reaches_the_compose_file_as_given():
    cfg = stack_estate("prod")
    cfg["nodes"]["inference"]["workloads"]["ollama"]["image"] = f"ollama/ollama:0.12.6@{DIGEST}"
    cfg["serverless"]["goblin-inference"]["image"] = f"runpod/worker-v1-vllm:v2.27.0@{DIGEST}"
    spec = parse_spec(cfg)
    doc = workloads.compose_project(spec.nodes["inference"])
    assert doc["services"]["ollama"]["image"] == f"ollama/ollama:0.12.6@{DIGEST}"
    assert spec.serverless["goblin-inference"].image.endswith(DIGEST)


def test_the_deployed_and_the_tested_litellm_are_one_patched_release():
    pinned = images.litellm_version()
    required = images.required_version("litellm", images.GATEWAY_REQUIREMENTS.read_text())
    assert required == pinned, (f"requirements-gateway.txt runs LiteLLM {required}, the estate deploys {pinned} "
                                f"({images.IMAGES_FILE.name}): move both together")
    assert images.litellm_verdict(pinned) is None


def test_the_gateway_venv_holds_the_pinned_litellm():
    python = litellm_binary().parent / "python"
    if not python.exists():
        pytest.skip(f"no LiteLLM proxy at {litellm_binary()}: `make setup` installs requirements-gateway.txt")
    run = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == images.litellm_version(), "the gateway tests would run another LiteLLM: `make setup`"


@pytest.mark.parametrize("version,refused", [
    ("1.84.0", False), ("1.108.7", False), ("main-v1.84.2-stable", False),
    ("1.83.14", True), ("1.79.0", True), ("main-v1.79.0-stable", True), ("1.82.7", True), ("1.82.8", True),
    ("main-latest", True),
])
def test_litellm_below_the_floor_or_compromised_is_named(version, refused):
    why = images.litellm_verdict(version)
    assert bool(why) is refused
    if version in ("1.82.7", "1.82.8"):
        assert "compromised" in why and version in why


def test_the_fill_command_pins_every_image_by_digest_keeping_its_tag(tmp_path):
    """scripts/pin-images.sh with a stand-in for crane (the registries are not reachable here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    crane = bin_dir / "crane"
    crane.write_text("#!/bin/sh\n[ \"$1\" = digest ] || exit 2\n"
                     "printf 'sha256:%s\\n' \"$(printf '%s' \"$2\" | sha256sum | cut -c1-64)\"\n")
    crane.chmod(0o755)
    copy = tmp_path / "compose.yaml"
    copy.write_text(images.IMAGES_FILE.read_text())
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PIN_IMAGES_FILE": str(copy)}
    for _ in range(2):  # a second run replaces the digests, never appends another
        run = subprocess.run(["bash", str(ROOT / "scripts" / "pin-images.sh")], env=env, capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 0, run.stderr
    before = yaml.safe_load(images.IMAGES_FILE.read_text())["services"]
    after = yaml.safe_load(copy.read_text())["services"]
    assert set(after) == set(before)
    for name, svc in after.items():
        image = images.parse_image(svc["image"])
        assert image.digest and f"{image.name}:{image.tag}" == before[name]["image"].split("@")[0], svc
    assert copy.read_text().count("# ") == images.IMAGES_FILE.read_text().count("# ")  # comments kept
