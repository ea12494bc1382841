"""Run the estate end to end on the sandbox stack: loopback GPU clouds, the real Pulumi engine.

    python -m sandbox            # up, a second up (no changes), refresh, destroy
    python -m sandbox --keep     # up and leave it running until Ctrl-C
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from pathlib import Path

from sandbox import (
    ROOT, VM_NODE, alive, engine_env, engine_missing, fake_clouds, project_copy, pulled, ssh_agent, stack, vm_missing,
    vm_required,
)


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
    work_dir = ROOT
    vm = not vm_missing()
    if not vm:
        if vm_required():
            print(f"sandbox: the VM node cannot run: {vm_missing()}", file=sys.stderr)
            return 2
        # Without Docker or sshd the rest of the estate still runs, from a copy without the VM node.
        print(f"sandbox: WARNING: no VM node ({vm_missing()}); running the marketplace nodes only", file=sys.stderr)
        work_dir = project_copy(state / "project")
    with fake_clouds(vm=vm) as fakes, ssh_agent(fakes["machine"].sshd.private_key) if vm \
            else contextlib.nullcontext({}) as agent:
        st = stack(engine_env(fakes, state, agent), work_dir=work_dir)
        out = print
        import json

        from policy.pack_config import pack_config

        config = state / "policy-config.json"
        config.write_text(json.dumps(pack_config("sandbox")))
        enforced = {"policy_packs": [str(ROOT / "policy")], "policy_pack_configs": [str(config)]}
        print("== pulumi up (sandbox, policy pack enforced)")
        up = st.up(on_output=out, **enforced)
        print(f"\nrented: {alive(fakes)}  models: {pulled(fakes)}  changes: {up.summary.resource_changes}")
        if fakes["machine"] is not None:
            running = {s: c["state"] for s, c in fakes["machine"].containers().items()}
            print(f"VM node {VM_NODE!r} (this machine over SSH, Docker): containers {running}")
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
