"""Machines and serverless endpoints that bill under a stack's accounts, carry the stack's label, and that
no stack's state holds: what a killed `up`, a lost answer or a hand-edited state can leave rented. On
Fly.io, the apps the stack's services name that Fly holds and no state does.

    .venv/bin/python scripts/leftovers.py prod              # list them, with $/h and age; exit 2 if any
    .venv/bin/python scripts/leftovers.py prod --terminate  # ... and remove them, after a confirmation
    .venv/bin/python scripts/leftovers.py prod --terminate --yes   # no prompt (scripts, CI)

Labels are ``<project>-<stack>-<node>`` (serverless endpoints ``<project>-<stack>-<name>``). A label is this
stack's when it starts with ``<project>-<stack>-`` and with no longer stack name of the same project
(``prod-eu`` is not ``prod``'s), so another project's or another stack's machines are never named. Each
stack's state is read with ``pulumi stack export`` (the CLI on PATH, the backend and passphrase of the
environment, as for `pulumi up`); anything a state names (a resource id or an output) is held. The
vendors' keys come from the environment, as the program's providers read them.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set

import yaml

from core.config import PROJECT_ROOT, stack_file_config
from core.vendors import MARKETPLACES
from providers import gpu_cloud
from providers.gpu_cloud import Status
from providers.http import CloudError
from providers.fly import FlyApi, FlyMachineProvider
from providers.runpod_serverless import ServerlessApi

SEEN_FILE = "leftovers-seen.json"
"""When this script first saw each leftover, for an age where the vendor's listing gives none."""


@dataclasses.dataclass(frozen=True)
class Leftover:
    cloud: str
    """A marketplace, ``runpod-serverless``, or ``fly`` (an app of the stack's services)."""
    id: str
    label: str
    status: str
    per_hour: Optional[float]
    age_seconds: Optional[float]

    @property
    def key(self) -> str:
        return f"{self.cloud}:{self.id}"


def pulumi(args: Sequence[str], cwd: Path) -> str:
    run = subprocess.run(["pulumi", *args, "--non-interactive"], cwd=cwd, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"leftovers: `pulumi {' '.join(args)}` failed: {run.stderr.strip()[-2000:]}")
    return run.stdout


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def held(deployment: Dict[str, Any]) -> Set[str]:
    """Every id and output string a state holds (a machine's ``<cloud>:<id>``, an endpoint's id, labels)."""
    out: Set[str] = set()
    for r in deployment.get("resources") or []:
        if r.get("id"):
            out.add(str(r["id"]))
        out.update(_strings(r.get("outputs") or {}))
    for op in deployment.get("pending_operations") or []:  # a create the engine started and never finished
        out.update(_strings((op.get("resource") or {}).get("outputs") or {}))
    return out


def owner(label: str, project: str, stacks: Iterable[str]) -> Optional[str]:
    """The stack whose label prefix is the longest that ``label`` starts with, or None (another project's)."""
    found = [s for s in stacks if label.startswith(f"{project}-{s}-")]
    return max(found, key=len) if found else None


def _age(seen: Dict[str, float], key: str, now: float) -> float:
    return now - seen.setdefault(key, now)


def fly_apps(config: Dict[str, Any]) -> List[str]:
    """The Fly apps a stack file's services name (a Fly app's name is the stack's, not a label)."""
    services = config.get("gpu-estate:services") or {}
    return [str(s["app"]) for s in services.values() if isinstance(s, dict) and s.get("provider") == "fly"
            and s.get("app")]


def fly_leftovers(apps: Sequence[str], holds: Set[str], seen: Dict[str, float], now: float) -> List[Leftover]:
    """The stack's Fly apps that Fly holds and no state does (their Machine and volume bill)."""
    if not apps:
        return []
    found: List[Leftover] = []
    try:
        api = FlyApi({})
    except CloudError as err:
        print(f"leftovers: fly: {err}; its apps are not looked at", file=sys.stderr)
        return []
    with api:
        for app in apps:
            if app in holds:
                continue
            try:
                if api.app(app) is None:
                    continue
                machines = api.machines(app)
            except CloudError as err:
                print(f"leftovers: fly: cannot read app {app} ({err}); it is not named", file=sys.stderr)
                continue
            found.append(Leftover("fly", app, app, f"{len(machines)} machines", None, _age(seen, f"fly:{app}", now)))
    return found


def find(project: str, stack: str, stacks: Sequence[str], holds: Set[str], seen: Dict[str, float],
         now: Optional[float] = None, apps: Sequence[str] = ()) -> List[Leftover]:
    """What bills under the accounts in the environment with ``stack``'s label (or, on Fly.io, under an app
    name of ``apps``) and is held by no state."""
    now = time.time() if now is None else now
    found: List[Leftover] = []
    for cloud in MARKETPLACES:
        with gpu_cloud.client(cloud) as client:
            try:
                listed = client.listed()
            except CloudError as err:
                print(f"leftovers: {cloud}: cannot list the account ({err}); nothing there is named", file=sys.stderr)
                continue
            for inst in listed:
                if inst.status is Status.GONE or owner(inst.label, project, stacks) != stack:
                    continue
                if f"{cloud}:{inst.id}" in holds or inst.id in holds:
                    continue
                full = client.get(inst.id) or inst  # a listing may carry only id, name and status
                found.append(Leftover(cloud, inst.id, inst.label, full.status.value, full.price_per_hour,
                                      _age(seen, f"{cloud}:{inst.id}", now)))
    api = ServerlessApi({})
    try:
        endpoints = api.endpoints()
    except CloudError as err:
        print(f"leftovers: runpod serverless: cannot list the account ({err}); nothing there is named",
              file=sys.stderr)
        endpoints = []
    for e in endpoints:
        name = str(e.get("name") or "")
        if owner(name, project, stacks) != stack or str(e.get("id")) in holds:
            continue
        found.append(Leftover("runpod-serverless", str(e["id"]), name, f"workers {e.get('workersMin', 0)}"
                              f"-{e.get('workersMax', 0)}", None, _age(seen, f"runpod-serverless:{e['id']}", now)))
    return found + fly_leftovers(apps, holds, seen, now)


def terminate(leftover: Leftover) -> None:
    if leftover.cloud == "fly":  # the Machine, the volume, the app: each verified gone
        FlyMachineProvider().delete(leftover.id, {})
        return
    if leftover.cloud == "runpod-serverless":
        api = ServerlessApi({})
        endpoint = api.find_endpoint(id_=leftover.id)
        if endpoint is not None:
            if endpoint.get("workersMin") or endpoint.get("workersMax"):
                api.scale_to_zero(endpoint)  # RunPod deletes only an endpoint with no workers
            api.delete_endpoint(leftover.id)
        try:  # its template (named after it) bills nothing; RunPod may keep it a few minutes after its endpoint
            api.delete_template(leftover.label)
        except CloudError as err:
            if "not found" in str(err).lower():
                return
            print(f"leftovers: endpoint {leftover.id} is deleted; its template {leftover.label!r} (bills nothing) "
                  f"is left: {err}", file=sys.stderr)
        return
    with gpu_cloud.client(leftover.cloud) as client:
        client.terminate(leftover.id)


def _hours(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def describe(leftovers: Sequence[Leftover]) -> str:
    lines = [f"{'cloud':<18} {'id':<14} {'label':<36} {'status':<12} {'$/h':>7}  first seen"]
    for x in leftovers:
        price = f"{x.per_hour:.3f}" if x.per_hour is not None else "per use"
        lines.append(f"{x.cloud:<18} {x.id:<14} {x.label:<36} {x.status:<12} {price:>7}  {_hours(x.age_seconds)} ago")
    total = sum(x.per_hour or 0.0 for x in leftovers)
    lines.append(f"{len(leftovers)} left over, ${total:.3f}/h")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stack")
    ap.add_argument("--terminate", action="store_true", help="remove what is found, after a confirmation")
    ap.add_argument("--yes", action="store_true", help="with --terminate: no confirmation (scripts)")
    ap.add_argument("--cwd", type=Path, default=PROJECT_ROOT, help="the project directory (Pulumi.yaml)")
    args = ap.parse_args(argv)
    project = yaml.safe_load((args.cwd / "Pulumi.yaml").read_text())["name"]
    stacks = [s["name"].rsplit("/", 1)[-1] for s in json.loads(pulumi(["stack", "ls", "--json"], args.cwd) or "[]")]
    if args.stack not in stacks:
        raise SystemExit(f"leftovers: no stack {args.stack!r} in this backend (stacks: {', '.join(stacks) or 'none'})")
    holds: Set[str] = set()
    for s in stacks:  # another stack's state holding a machine means it is not a leftover
        holds |= held(json.loads(pulumi(["stack", "export", "--stack", s], args.cwd)).get("deployment") or {})
    seen_path = Path(os.environ.get("ESTATE_LEFTOVERS_SEEN", args.cwd / ".estate" / args.stack / SEEN_FILE))
    seen = json.loads(seen_path.read_text()) if seen_path.exists() else {}
    found = find(project, args.stack, stacks, holds, seen, apps=fly_apps(stack_file_config(args.stack, args.cwd)))
    seen_path.parent.mkdir(parents=True, exist_ok=True)
    seen_path.write_text(json.dumps({x.key: seen[x.key] for x in found}, indent=2) + "\n")
    if not found:
        print(f"leftovers: nothing of {project}-{args.stack} bills outside the state")
        return 0
    print(describe(found))
    if not args.terminate:
        return 2
    if not args.yes:
        answer = input(f"terminate these {len(found)}? type 'terminate' to go on: ")
        if answer.strip() != "terminate":
            print("leftovers: nothing terminated")
            return 2
    failed = 0
    for x in found:
        try:
            terminate(x)
            print(f"terminated {x.key} ({x.label})")
        except CloudError as err:
            failed += 1
            print(f"leftovers: {x.key} ({x.label}) could not be terminated: {err}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
