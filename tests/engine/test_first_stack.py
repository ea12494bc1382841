"""A newcomer's first stack, from the README's "Your first stack" section alone: its example (seed 002's
plan) passes every offline check the section names, each mistake a newcomer made with that plan is refused
naming its key and how to fix it, and an offline preview shows the engine's error without a traceback."""
import copy
import os
import re
import subprocess
import sys

import pytest
import yaml

from core.config import PROJECT_ROOT, estate_config, parse_spec
from core.errors import ConfigError
from policy.pack_config import pack_config
import sandbox

STACK = "seed002"


def section() -> str:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("## Your first stack\n", 1)[1].split("\n## ", 1)[0]


def blocks(language: str) -> list:
    """The section's code blocks in ``language`` ('' for none), without the list's indentation."""
    found = re.findall(r"(?ms)^( *)```(\w*)\n(.*?)^ *```$", section())
    return ["\n".join(line[len(indent):] for line in body.splitlines()) for indent, lang, body in found
            if lang == language]


def readme_config() -> dict:
    """The stack the section says to put under ``config:``."""
    (block,) = blocks("yaml")
    return yaml.safe_load(block)["config"]


@pytest.fixture
def stack_file(tmp_path):
    path = tmp_path / f"Pulumi.{STACK}.yaml"
    path.write_text(yaml.safe_dump({"config": readme_config()}, sort_keys=False))
    return path


def test_the_section_makes_the_stack_with_stack_init_and_never_a_copied_salt():
    text = section()
    assert f"pulumi stack init {STACK}" in text and "encryptionsalt" in text and "incorrect passphrase" in text
    assert "encryptionsalt" not in yaml.safe_dump(readme_config())
    assert "\nstack-setup:" in (PROJECT_ROOT / "Makefile").read_text()
    for step in ("make stack-setup", "config set --secret", "scripts/gateway_config.py", "scripts/diagram.py", "policy.pack_config",
                 "pulumi preview", "pulumi up", "pulumi destroy", "docs/keys.md"):
        assert step in text, step


def test_the_example_passes_every_offline_check(stack_file, tmp_path):
    spec = parse_spec(estate_config(readme_config()))
    qwen = spec.nodes["gpu"]
    assert qwen.gpu.model == "rtx3090" and qwen.price_cap == 0.2739  # "3090", $200 a month
    for script, shown in (("scripts/gateway_config.py", "model_name: gpt-4"), ("scripts/diagram.py", "xychart-beta")):
        run = subprocess.run([sys.executable, script, str(stack_file)], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0 and shown in run.stdout, run.stderr
    assert pack_config(STACK, tmp_path)["estate-monthly-budget"] == {"monthly_usd": 250.0}


def _workloads(c):
    return c["gpu-estate:nodes"]["gpu"]["workloads"]


# What went wrong for the engineer who wrote seed 002's plan as a stack (issue 37), each applied to the
# README's example: (what was done, the key path the refusal names, what the refusal says).
MISTAKES = [
    ("a misspelt top-level key", lambda c: c.__setitem__("gpu-estate:tunnel", c.pop("gpu-estate:tunnels")),
     "gpu-estate:tunnel", "did you mean `tunnels`?"),
    ("port on the litellm workload", lambda c: c["gpu-estate:nodes"]["vps"]["workloads"]["litellm"].update(port=8000),
     "gpu-estate:nodes.vps.workloads.litellm.port", "gpu-estate:gateway.port"),
    ("vram_gb on Ollama", lambda c: _workloads(c)["ollama"].update(vram_gb=40),
     "gpu-estate:nodes.gpu.workloads.ollama.vram_gb", "its models' own sizes"),
    ("a gated checkpoint without a token", lambda c: _workloads(c)["comfyui"].update(checkpoints=[{
        "name": "flux1-dev.safetensors", "gated": True, "size_gb": 23.8, "sha256": "0" * 64,
        "url": "https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/flux1-dev.safetensors"}]),
     "gpu-estate:nodes.gpu.workloads.comfyui.checkpoints[0].gated", "add HF_TOKEN to"),
    ("a spot bid above the cap", lambda c: c["gpu-estate:nodes"]["gpu"].update(bid_per_hour=0.35),
     "gpu-estate:nodes.gpu.bid_per_hour", "above the node's cap of $0.2739/h"),
    ("ComfyUI without a VRAM figure", lambda c: _workloads(c)["comfyui"].pop("vram_gb"),
     "gpu-estate:nodes.gpu.workloads.comfyui.vram_gb", "give vram_gb"),
    ("a misspelt key in a node", lambda c: c["gpu-estate:nodes"]["gpu"].update(max_price_per_hr=0.3),
     "gpu-estate:nodes.gpu.max_price_per_hr", "did you mean `max_price_per_hour`?"),
    ("a kind's name misspelt", lambda c: _workloads(c).__setitem__("comfy-ui", _workloads(c).pop("comfyui")),
     "gpu-estate:nodes.gpu.workloads", "'comfy-ui' looks like `comfyui`"),
    ("a model the table does not list", lambda c: _workloads(c)["ollama"]["models"].append("qwen3:235b"),
     "gpu-estate:nodes.gpu.workloads.ollama.models[4]", "model_sizes.qwen3:235b"),
    ("a GPU name several cards share", lambda c: c["gpu-estate:nodes"]["gpu"]["gpu"].update(model="a100"),
     "gpu-estate:nodes.gpu.gpu.model", "a100-40 or a100-80"),
]


def refusal(mistake) -> list:
    config = copy.deepcopy(readme_config())
    mistake(config)
    with pytest.raises(ConfigError) as err:
        parse_spec(estate_config(config))
    return err.value.problems


@pytest.mark.parametrize("what,mistake,key,says", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_is_refused_naming_its_key(what, mistake, key, says):
    found = [m for p, m in refusal(mistake) if p == key]
    assert found and says in found[0], refusal(mistake)


def test_the_refusals_the_section_shows_are_the_programs():
    (shown,) = [b for b in blocks("") if "did you mean" in b]
    lines = [line.strip() for line in shown.splitlines() if line.strip()]
    said = {f"{p}: {m}" for what, mistake, *_ in MISTAKES for p, m in refusal(mistake)}
    for line in lines:
        head = line.split(" ...")[0].rstrip(":. ")
        assert any(s.startswith(head) for s in said), line


@pytest.mark.engine
@pytest.mark.skipif(bool(sandbox.engine_missing()), reason=sandbox.engine_missing())
def test_an_offline_preview_shows_the_engines_error_and_no_traceback(tmp_path):
    """With no plugin but the command provider's (a fresh PULUMI_HOME, nothing downloaded) the preview stops
    on the random plugin the gateway's key needs: the output names it, with no Python traceback over it.
    Where the plugin is installed, the preview passes. The vendor API points at a closed loopback port."""
    work = sandbox.project_copy(tmp_path / "project")
    env = {**os.environ, "PATH": f"{sandbox.PULUMI_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "PULUMI_HOME": str(tmp_path / "home"), "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
           "PULUMI_CONFIG_PASSPHRASE": "first-stack", "PULUMI_SKIP_UPDATE_CHECK": "true",
           "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true", "VASTAI_API_URL": "http://127.0.0.1:9/api/v0"}
    (tmp_path / "state").mkdir()

    def pulumi(*args, stdin=None):
        return subprocess.run([str(sandbox.PULUMI_BIN / "pulumi"), *args, "--non-interactive"], cwd=work, env=env,
                              input=stdin, capture_output=True, text=True, timeout=300)

    assert pulumi("stack", "init", STACK).returncode == 0
    path = work / f"Pulumi.{STACK}.yaml"
    doc = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**doc, "config": readme_config()}, sort_keys=False))
    for key in ("vastaiApiKey", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        assert pulumi("config", "set", "--secret", f"gpu-estate:{key}", stdin="not-a-real-key").returncode == 0
    run = pulumi("preview")
    out = run.stdout + run.stderr
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert run.returncode == 0 or "pulumi-resource-random" in out, out


@pytest.mark.engine
@pytest.mark.skipif(bool(sandbox.engine_missing()), reason=sandbox.engine_missing())
def test_the_real_language_host_hands_the_program_a_misspelt_key_to_refuse(tmp_path):
    """The program lists its keys from what the official language host hands it (``PULUMI_CONFIG``), not from
    anything the mocks set: through the real engine, ``gpu-estate:tunnel`` is refused naming ``tunnels``."""
    work = sandbox.project_copy(tmp_path / "project")
    path = work / "Pulumi.sandbox.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["gpu-estate:tunnel"] = []
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with sandbox.fake_clouds() as fakes:
        st = sandbox.stack(sandbox.engine_env(fakes, tmp_path / "engine"), work_dir=work)
        with pytest.raises(Exception, match=r"gpu-estate:tunnel: unknown key `tunnel`; did you mean `tunnels`\?"):
            st.preview()
        assert sandbox.alive(fakes) == {"tensordock": 0, "vastai": 0, "runpod": 0}
