"""Run the Pulumi program under mocks for a committed stack file and record what it registers."""
from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any, Dict, List, Optional

import pulumi
from pulumi.runtime import settings

from core import config as spec

ROOT = Path(__file__).resolve().parent.parent


# Every secret the mocked providers hand out: tests look for it where it must never appear.
MOCK_SECRET = "mock-secret-7f3a9c"


# The host key every mocked node answers with (recorded on first contact).
MOCK_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG1vY2tob3N0a2V5bW9ja2hvc3RrZXk="


SECRET_SIG = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")


def unwrap(value: Any, path: str = "", found: List[str] = None) -> Any:
    """``value`` with Pulumi's secret wrappers removed; the paths of secret values go to ``found``."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG[0]) == SECRET_SIG[1]:
            if found is not None:
                found.append(path)
            return unwrap(value.get("value"), path, found)
        return {k: unwrap(v, f"{path}.{k}" if path else k, found) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: List[pulumi.runtime.MockResourceArgs] = []
        self.calls: List[pulumi.runtime.MockCallArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        args.secret_paths = []
        args.raw_inputs = args.inputs
        args.inputs = unwrap(args.inputs, found=args.secret_paths)
        self.resources.append(args)
        outs = dict(args.inputs)
        if args.typ == "pulumi-python:dynamic/gpu:Instance":
            cloud = args.inputs["clouds"][0]
            outs.update(cloud=cloud, instance_id="i-1", status=args.inputs["power"], address="198.51.100.7",
                        ssh_host="198.51.100.7", ssh_port=22,
                        ports={str(int(p)): 40000 + int(p) % 10000 for p in args.inputs["launch"]["ports"]},
                        price_per_hour=0.3, launch_price_per_hour=0.3, region="DE",
                        # As the provider does: a machine it rents with a generated host key reports it.
                        host_public_key=" ".join(args.inputs["host_key"]["public"].split()[:2])
                        if args.inputs.get("host_key") and args.inputs["clouds"][0] == "tensordock" else None)
            return f"{cloud}:i-1", outs
        if args.typ == "pulumi-python:dynamic/runpod:Endpoint":
            outs.update(endpoint_id="ep-1", template_id="tpl-1", openai_base="https://api.runpod.ai/v2/ep-1/openai/v1")
            return "ep-1", outs
        if args.typ == "pulumi-python:dynamic/fly:Machine":
            # As the provider does: the app's address, and the bearer it generated (a secret output).
            outs.update(machine_id="3d8d9e1c", volume_id="vol_1", machine_state="started",
                        url=f"https://{args.inputs['app']}.fly.dev", api_key=MOCK_SECRET)
            return args.inputs["app"], outs
        if args.typ == "pulumi-python:dynamic/identity:LocalProxy":
            outs.update(url="http://127.0.0.1:43101", pid=4242)  # as the provider does: the port it listens on
        if args.typ == "gcp:cloudrunv2/service:Service":
            outs.update(uri=f"https://{args.inputs['name']}-abc123-uk.a.run.app")
        if args.typ == "gcp:serviceaccount/key:Key":
            import base64
            key = {"type": "service_account", "private_key": MOCK_SECRET, "client_email": f"{args.name}@example.iam"}
            outs["privateKey"] = base64.b64encode(json.dumps(key).encode()).decode()
        if args.typ == "gcp:serviceaccount/account:Account":
            outs.update(email=f"{args.inputs['accountId']}@example.iam.gserviceaccount.com",
                        name=f"projects/p/serviceAccounts/{args.inputs['accountId']}")
        if args.typ == "aws:iam/accessKey:AccessKey":
            outs["secret"] = MOCK_SECRET
        if args.typ == "random:index/randomPassword:RandomPassword":
            outs.update(result=MOCK_SECRET, bcryptHash="$2a$10$" + MOCK_SECRET)
        if args.typ == "random:index/randomBytes:RandomBytes":
            outs.update(base64=MOCK_SECRET, hex=MOCK_SECRET)
        if args.typ == "pulumi-python:dynamic/ssh:HostKey":
            outs.update(host_key=args.inputs.get("expected") or MOCK_HOST_KEY)
        if args.typ == "pulumi-python:dynamic/ssh:Key":
            outs.update(public_key=f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG1vY2t0dW5uZWxrZXk= {args.inputs['comment']}",
                        private_key=MOCK_SECRET, created_at="2026-11-24T10:00:00+00:00")
        if args.typ == "cloudflare:index/zeroTrustAccessApplication:ZeroTrustAccessApplication":
            outs.update(aud=f"aud-{args.inputs['domain']}")
        if args.typ == "aws:ec2/instance:Instance":
            outs.update(public_ip="198.51.100.8")
        if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            outs.update(latest_version=1)
        if args.typ == "gcp:compute/instance:Instance":
            outs["networkInterfaces"] = [{"accessConfigs": [{"natIp": "198.51.100.9"}]}]
            outs["creationTimestamp"] = "2026-11-24T02:00:05.000-08:00"  # launched just after the key
        return f"{args.name}-id", outs

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append(args)
        if args.token == "cloudflare:index/getZeroTrustTunnelCloudflaredToken:getZeroTrustTunnelCloudflaredToken":
            return {"token": MOCK_SECRET, "accountId": args.args.get("accountId"), "tunnelId": args.args.get("tunnelId")}
        if args.token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-0123456789abcdef0", "architecture": "x86_64"}
        return {}

    def of_type(self, typ: str) -> List[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == typ]

    def named(self, name: str) -> pulumi.runtime.MockResourceArgs:
        (match,) = [r for r in self.resources if r.name == name]
        return match


def stack_config(stack: str) -> Dict[str, Any]:
    return spec.stack_file_config(stack, ROOT)


def stack_estate(stack: str) -> Dict[str, Any]:
    """A fresh copy of the stack file's estate keys, as parse_spec takes them."""
    return spec.estate_config(stack_config(stack))


def run_program(config: Dict[str, Any], stack: str = "test", workdir: Optional[Path] = None) -> RecordingMocks:
    """Run __main__.py under mocks with ``config`` (full keys) and wait for every registration. The
    marketplaces' keys in this process's environment (an engine test sets them) are hidden meanwhile: what
    the program does depends on the config given here alone. It runs in ``workdir`` (a fresh directory
    unless given), where a local gateway's state and spend ledger would be; a gateway host's ledger is read
    over SSH only on this machine (a committed stack's addresses are not dialled)."""
    import contextlib
    import os
    import tempfile

    import components.estate
    from core.vendors import VENDOR_KEYS
    from providers.ssh_forward import ForwardError

    real_read, real_write = components.estate.read_file, components.estate.write_file

    def loopback_only(real: Any) -> Any:
        def call(host: str, *args: Any, **kwargs: Any) -> Optional[str]:
            if host not in ("127.0.0.1", "localhost"):
                raise ForwardError(f"{host}: the tests reach nothing off this machine")
            return real(host, *args, **kwargs)
        return call

    saved = settings.SETTINGS
    hidden = {env: os.environ.pop(env) for env, _ in VENDOR_KEYS.values() if env in os.environ}
    mocks = RecordingMocks()
    cwd = os.getcwd()
    saved_env = os.environ.get("PULUMI_CONFIG")
    scratch = contextlib.nullcontext(str(workdir)) if workdir else tempfile.TemporaryDirectory(prefix="estate-mocks-")
    try:
        components.estate.read_file, components.estate.write_file = loopback_only(real_read), loopback_only(real_write)
        os.chdir(scratch.__enter__())
        pulumi.runtime.set_mocks(mocks, project="gpu-estate", stack=stack, preview=False)
        flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
        pulumi.runtime.set_all_config(flat)
        # What the language host hands a program: the whole map, which the program lists its keys from.
        os.environ["PULUMI_CONFIG"] = json.dumps(flat)

        @pulumi.runtime.test
        def program():
            runpy.run_path(str(ROOT / "__main__.py"), run_name="program")
            return pulumi.Output.from_input(True)

        program()
    finally:
        pulumi.runtime.set_all_config({})
        if saved_env is None:
            os.environ.pop("PULUMI_CONFIG", None)
        else:
            os.environ["PULUMI_CONFIG"] = saved_env
        settings.SETTINGS = saved
        os.environ.update(hidden)
        os.chdir(cwd)
        scratch.__exit__(None, None, None)
        components.estate.read_file, components.estate.write_file = real_read, real_write
    return mocks


def unpack_library(dest: Path) -> None:
    """Run the deploy script's library block (``components.gateway.library_script``) with this machine's
    bash, base64 and tar, as a gateway host runs it: the modules land in ``dest``."""
    import subprocess

    from components.gateway import library_script

    # On stdin, as the gateway host's deploy gets it (core.text.RUN_STDIN): the block is past one argument's limit.
    run = subprocess.run(["bash", "-eu"], input=library_script(str(dest)), capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
