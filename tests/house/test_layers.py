"""The import direction of pyproject.toml's contracts: core at the bottom, then providers, then agents,
then components, then the policy pack and the scripts; no cycles; core imports no Pulumi; the loopback clouds
import nothing of ours."""
import tests
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = tests.ROOT
PACKAGES = ("core", "providers", "agents", "components", "policy", "scripts", "sandbox", "loopback")
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    # Run from ``root`` with only it on the path, so the copy's modules are the ones analysed.
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


def planted(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess:
    """lint-imports on a copy of the packages where ``module`` (a path under the root) gained ``line``."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    return lint(tmp_path)


def test_the_layers_contracts_hold():
    run = lint(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    contracts = (ROOT / "pyproject.toml").read_text().count("[[tool.importlinter.contracts]]")
    assert f"{contracts} kept, 0 broken" in run.stdout


def test_pulumi_imported_by_the_pure_layer_breaks_the_contract(tmp_path):
    run = planted(tmp_path, "core/workloads/ollama.py", "import pulumi")
    assert run.returncode != 0
    assert "core.workloads.ollama -> pulumi" in run.stdout


def test_an_import_pointing_the_wrong_way_breaks_the_contract(tmp_path):
    run = planted(tmp_path, "core/text.py", "from components import workloads")
    assert run.returncode != 0
    assert "core.text -> components.workloads" in run.stdout


def test_a_cycle_inside_a_package_breaks_the_contract(tmp_path):
    run = planted(tmp_path, "core/kinds.py", "from core import spec")
    assert run.returncode != 0 and "No import cycles inside any package BROKEN" in run.stdout


def test_a_provider_importing_an_agent_breaks_the_contract(tmp_path):
    """Only the two providers that run an agent here may import the agents' process helpers."""
    run = planted(tmp_path, "providers/gpu_instance.py", "from agents import spend")
    assert run.returncode != 0
    assert "providers.gpu_instance -> agents.spend" in run.stdout
