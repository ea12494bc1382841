"""What a gateway host is shipped (``agents.library``): every project module its agents import, found from
the sources, so an import added to an agent or a client travels with it."""
import shutil
import subprocess
from pathlib import Path

from agents import library
from components import gateway
from core.vendors import MARKETPLACES
from providers.local_gateway import litellm_binary

ROOT = library.ROOT


def test_the_gateway_library_is_the_agents_and_everything_they_import():
    shipped = set(gateway.LIBRARY)
    assert {"agents/spend.py", "agents/wake.py", "providers/gpu_cloud.py", "providers/http.py",
            "core/spend.py", "core/__init__.py", "providers/__init__.py", "agents/__init__.py"} <= shipped
    assert {f"providers/{cloud}.py" for cloud in MARKETPLACES} <= shipped  # routed by name, no import says so
    assert set(library.DATA) <= shipped
    assert not {"components/gateway.py", "providers/gpu_instance.py", "agents/library.py"} & shipped
    assert all((ROOT / path).is_file() for path in shipped)


def test_an_import_added_to_an_agent_ships_its_module(tmp_path):
    for package in library.PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    before = library.files(library.GATEWAY_AGENTS, tmp_path)
    assert "providers/ssh_forward.py" not in before
    wake = tmp_path / "agents" / "wake.py"
    wake.write_text(wake.read_text() + "\nfrom providers import ssh_forward  # noqa\n")
    after = library.files(library.GATEWAY_AGENTS, tmp_path)
    assert set(after) - set(before) == {"providers/ssh_forward.py", "core/text.py"}  # and what it imports


def test_the_shipped_files_alone_import_every_agent_and_client(tmp_path):
    """In LiteLLM's Python (the gateway image's packages, none of this project), isolated from the
    project's path: what the host gets is enough for the agents to import."""
    for path in gateway.LIBRARY:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    python = litellm_binary().parent / "python"
    run = subprocess.run([str(python), "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                          + "; ".join(f"import {name}" for name in library.GATEWAY_AGENTS), str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
