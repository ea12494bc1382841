"""Run the estate end to end on the sandbox stack: loopback GPU clouds, the real Pulumi engine.

    python -m sandbox            # up, a real answer, a preview (no changes), refresh, destroy
    python -m sandbox --keep     # up and leave it running until Ctrl-C

After the up, OpenAI's own Python client asks the gateway (the real LiteLLM proxy) for the ``tiny`` alias:
LiteLLM sends it through its SSH forward to the VM node, whose real Ollama (in Docker on this machine)
answers with tokens of the tiny model it pulled from the loopback registry; the answer is printed with
the route it took.
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from pathlib import Path

from sandbox import (
    IMAGES_ALIAS, IMAGES_NODE, ROOT, TINY, VM_ALIAS, VM_NODE, alive, engine_env, engine_missing, fake_clouds, project_copy, pulled, ssh_agent, stack,
    vm_missing, vm_required,
)

TUNNEL_TYPE = "pulumi-python:dynamic/gateway:LocalTunnel"


def ask(st, url: str, key: str, tag: str) -> str:
    """One chat completion for the VM node's alias through OpenAI's client; the route it took and the
    answer, as lines to print. Raises when no answer comes."""
    import requests
    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model=VM_ALIAS, max_tokens=16, messages=[{"role": "user", "content": "Say hello from the estate."}])
    done = raw.parse()
    base = raw.headers.get("x-litellm-model-api-base") or "?"
    (tunnel,) = [r["outputs"] for r in st.export_stack().deployment["resources"] if r["type"] == TUNNEL_TYPE
                 and r["outputs"].get("node") == VM_NODE]
    remote = {int(local): int(port) for port, local in tunnel["ports"].items()}
    local = int(base.rsplit(":", 1)[-1]) if base[-1:].isdigit() else None
    version = requests.get(f"{base}/api/version", timeout=10).json().get("version", "?")
    return "\n".join([
        f"  OpenAI client -> LiteLLM {url} (model {VM_ALIAS!r}, deployment {raw.headers.get('x-litellm-model-id')})",
        f"  -> {base}: the gateway's SSH forward (pid {int(tunnel['pid'])}) to {tunnel['user']}@{tunnel['host']}:"
        f"{int(tunnel['port'])}, port {remote.get(local, '?')} on the node's loopback",
        f"  -> the real Ollama {version} in Docker on node {VM_NODE!r}, model {tag}",
        f"  -> {done.usage.completion_tokens} tokens: {done.choices[0].message.content!r}",
    ])


def draw(url: str, key: str, comfyui) -> str:
    """One image for the image alias through OpenAI's client; the route it took, as lines to print. Raises
    when no PNG comes."""
    import base64

    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)
    raw = client.images.with_raw_response.generate(model=IMAGES_ALIAS, prompt="a lighthouse at dusk", size="1024x1024",
                                                   response_format="b64_json")
    png = base64.b64decode(raw.parse().data[0].b64_json)
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise RuntimeError(f"the answer is no PNG: {png[:16]!r}")
    (prompt,) = comfyui.prompts[-1:]
    nodes = sorted({n["class_type"] for n in prompt.values()})
    return "\n".join([
        f"  OpenAI client -> LiteLLM {url} (model {IMAGES_ALIAS!r}, deployment {raw.headers.get('x-litellm-model-id')}, "
        f"${float(raw.headers.get('x-litellm-response-cost') or 0):.5f} an image)",
        f"  -> {raw.headers.get('x-litellm-model-api-base')}: the estate's images bridge on node {IMAGES_NODE!r}",
        f"  -> ComfyUI's /prompt, /history, /view (the loopback ComfyUI): {len(prompt)} nodes, {', '.join(nodes)}",
        f"  -> a {len(png)}-byte PNG, {int.from_bytes(png[16:20], 'big')}x{int.from_bytes(png[20:24], 'big')}; "
        f"ComfyUI keeps {len(comfyui.files())} files of it",
    ])


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
        answered, drawn, failed = "", "", ""
        if "gateway" in up.outputs:
            url = up.outputs["gateway"].value["url"]
            print(f"gateway: {url} (key: `pulumi stack output gateway_master_key --show-secrets`), e.g.\n"
                  f"  curl {url}/v1/chat/completions -H 'Authorization: Bearer $KEY' "
                  "-d '{\"model\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}'")
            if vm:
                print(f"== a real answer: {VM_ALIAS!r} through the gateway")
                try:
                    answered = ask(st, url, up.outputs["gateway_master_key"].value, fakes["registry"].name(*TINY))
                    print(answered)
                except Exception as err:  # reported, and the estate is still destroyed
                    failed = f"sandbox: no answer from the real Ollama: {type(err).__name__}: {err}"
                    print(failed, file=sys.stderr)
            print(f"== an image: {IMAGES_ALIAS!r} through the gateway")
            try:
                drawn = draw(url, up.outputs["gateway_master_key"].value, fakes["comfyui"])
                print(drawn)
            except Exception as err:  # reported, and the estate is still destroyed
                failed = f"sandbox: no image from ComfyUI: {type(err).__name__}: {err}"
                print(failed, file=sys.stderr)
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
        if answered:
            print(f"== the answer the real Ollama gave through the gateway, before the destroy\n{answered}")
        if drawn:
            print(f"== the image ComfyUI made through the gateway, before the destroy\n{drawn}")
        elif failed:
            print(failed, file=sys.stderr)
        return 0 if not any(left.values()) and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
