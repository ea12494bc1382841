"""Run the estate end to end on the sandbox stack: loopback GPU clouds, the real Pulumi engine.

    python scripts/sandbox.py            # up, a second up (no changes), refresh, destroy
    python scripts/sandbox.py --keep     # up and leave it running until Ctrl-C

It starts the fake TensorDock, Vast.ai and RunPod servers, points the providers at them through the
environment, and drives `pulumi` through the automation API with a local file backend under
.estate/ and a passphrase secrets provider. Nothing leaves 127.0.0.1.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, Iterator

from core.config import PROJECT_ROOT as ROOT
from loopback.ollama import FakeOllama
from loopback.runpod import FakeRunPod
from loopback.tensordock import FakeTensorDock
from loopback.vastai import FakeVast

CACHE = Path(os.environ.get("GPU_ESTATE_CACHE", Path.home() / ".cache" / "gpu-estate"))


def _pulumi_bin() -> Path:
    """Where scripts/build-pulumi.sh built or found the CLI, the language host and the command plugin."""
    marker = CACHE / "pulumi-bin"
    return Path(marker.read_text().strip()) if marker.exists() else CACHE / "pulumi-v3.259.0" / "bin"


PULUMI_BIN = _pulumi_bin()


def engine_missing() -> str:
    """Why the engine cannot run here, or '' when the CLI and the Python language host are in place."""
    for part in ("pulumi", "pulumi-language-python", "pulumi-language-python-exec", "pulumi-resource-pulumi-python"):
        if not (PULUMI_BIN / part).exists():
            return f"no {part} in {PULUMI_BIN}: run `make setup` (see README, Engine parts)"
    return ""


@contextlib.contextmanager
def fake_clouds() -> Iterator[Dict[str, object]]:
    """The three marketplaces, each with a loopback Ollama behind the port its instances map for 11434.
    The Ollama servers are under the ``ollama`` key, by cloud."""
    td, vast, rp = FakeTensorDock(), FakeVast(), FakeRunPod()
    ollamas = {name: FakeOllama(name=f"{name}-ollama") for name in ("tensordock", "vastai", "runpod")}
    for name, cloud in (("tensordock", td), ("vastai", vast), ("runpod", rp)):
        cloud.port_map[11434] = ollamas[name].httpd.server_address[1]
    try:
        yield {"tensordock": td, "vastai": vast, "runpod": rp, "ollama": ollamas}
    finally:
        for f in (td, vast, rp, *ollamas.values()):
            f.close()


def engine_env(fakes: Dict[str, object], state_dir: Path) -> Dict[str, str]:
    """Environment for the engine and its plugins: loopback endpoints, local state, no downloads."""
    td, vast, rp = fakes["tensordock"], fakes["vastai"], fakes["runpod"]
    state_dir.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": f"{PULUMI_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PULUMI_HOME": str(state_dir / "home"),
        "PULUMI_BACKEND_URL": f"file://{state_dir / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": os.environ.get("PULUMI_CONFIG_PASSPHRASE", "sandbox-passphrase"),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "GPU_ESTATE_LITELLM": os.environ.get("GPU_ESTATE_LITELLM", str(ROOT / ".venv-gateway" / "bin" / "litellm")),
        "TENSORDOCK_API_URL": f"{td.url}/api/v2", "TENSORDOCK_API_TOKEN": td.token,
        "VASTAI_API_URL": f"{vast.url}/api/v0", "VASTAI_API_KEY": "sandbox-vast-key",
        "RUNPOD_API_URL": f"{rp.url}/graphql", "RUNPOD_API_KEY": "sandbox-runpod-key",
        "ESTATE_POLL_SECONDS": "0.2", "ESTATE_HTTP_BACKOFF": "0.05",
    }


def stack(env: Dict[str, str], name: str = "sandbox", work_dir: Path = ROOT):
    from pulumi import automation as auto

    for k, v in env.items():
        os.environ[k] = v
    Path(env["PULUMI_BACKEND_URL"].removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    ws = auto.LocalWorkspaceOptions(work_dir=str(work_dir), env_vars=env,
                                    pulumi_command=auto.PulumiCommand(str(PULUMI_BIN.parent), skip_version_check=False))
    return auto.create_or_select_stack(stack_name=name, work_dir=str(work_dir), opts=ws)


PROJECT_FILES = ("Pulumi.yaml", "Pulumi.sandbox.yaml", "__main__.py", "requirements.txt", "core", "components",
                 "providers", "assets", "policy", "scripts", "loopback", "tests")


def project_copy(dest: Path) -> Path:
    """A copy of the project to run a stack whose config a test or benchmark changes, so the committed
    stack file stays as it is. Its .venv is a link to the project's."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest / name)
    venv = dest / ".venv"
    if not venv.exists():
        venv.symlink_to(ROOT / ".venv")
    return dest


def auto_config(value: object):
    """A structured config value for the automation API's set_config."""
    import json

    from pulumi import automation as auto

    return auto.ConfigValue(value=json.dumps(value))


def alive(fakes: Dict[str, object]) -> Dict[str, int]:
    return {name: len(fakes[name].alive()) for name in ("tensordock", "vastai", "runpod")}


def pulled(fakes: Dict[str, object]) -> Dict[str, list]:
    """The models on each cloud's machine disk. The loopback Ollama outlives the loopback instance, but a
    real disk does not: once a cloud has no machine, none of its models remain."""
    return {name: sorted(o.installed) if fakes[name].alive() else [] for name, o in fakes["ollama"].items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="leave the estate up until interrupted")
    ap.add_argument("--state-dir", default=str(ROOT / ".estate" / "sandbox"))
    args = ap.parse_args()
    if engine_missing():
        print(engine_missing(), file=sys.stderr)
        return 2
    state = Path(args.state_dir)
    shutil.rmtree(state, ignore_errors=True)  # the fakes start empty, so the state must too
    with fake_clouds() as fakes:
        st = stack(engine_env(fakes, state))
        out = print
        import json

        from policy.pack_config import pack_config

        config = state / "policy-config.json"
        config.write_text(json.dumps(pack_config("sandbox")))
        enforced = {"policy_packs": [str(ROOT / "policy")], "policy_pack_configs": [str(config)]}
        print("== pulumi up (sandbox, policy pack enforced)")
        up = st.up(on_output=out, **enforced)
        print(f"\nrented: {alive(fakes)}  models: {pulled(fakes)}  changes: {up.summary.resource_changes}")
        if "gateway" in up.outputs:
            url = up.outputs["gateway"].value["url"]
            print(f"gateway: {url} (key: `pulumi stack output gateway_master_key --show-secrets`), e.g.\n"
                  f"  curl {url}/v1/chat/completions -H 'Authorization: Bearer $KEY' "
                  "-d '{\"model\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}'")
        print("== pulumi preview (expect no changes)")
        st.preview(on_output=out, expect_no_changes=True, **enforced)
        print("== pulumi refresh")
        st.refresh(on_output=out)
        if args.keep:
            print("estate is up; Ctrl-C destroys it")
            with contextlib.suppress(KeyboardInterrupt):
                import threading
                threading.Event().wait()
        print("== pulumi destroy")
        st.destroy(on_output=out)
        left = alive(fakes)
        print(f"\nafter destroy: {left}")
        return 0 if not any(left.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
