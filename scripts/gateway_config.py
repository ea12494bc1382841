"""Print the LiteLLM config a stack would deploy, without deploying anything.

    .venv/bin/python scripts/gateway_config.py prod                  # the config, as YAML
    .venv/bin/python scripts/gateway_config.py prod --outputs out.json   # with addresses from
                                                                        # `pulumi stack output --json`
    .venv/bin/python scripts/gateway_config.py prod --units          # the gateway host's systemd units

It reads Pulumi.<stack>.yaml, checks it as `pulumi up` would, and renders the same document the program
writes to the gateway host. Secrets appear only as `os.environ/NAME` references. Nodes reached through
the gateway's tunnels have their final api_base (127.0.0.1:<local port>); a node reached directly whose
address is not known yet says so in its api_base (`address-of-<node>-known-after-up`), and so does a
serverless endpoint RunPod has not given an id yet, unless --outputs gives the stack's `nodes` and
`serverless` outputs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from components import gateway
from core.config import PROJECT_ROOT as ROOT
from core.config import estate_config, parse_spec, stack_file_config
from core.errors import ConfigError
from core.spec import NAMESPACE
from core.topology import plan_estate


def load(stack: str):
    """The checked spec of a stack: ``prod`` reads ``Pulumi.prod.yaml`` here; a path to a stack file reads
    that file (``Pulumi.prod.yaml``, ``/tmp/Pulumi.mine.yaml``)."""
    given = Path(stack)
    if given.name.startswith("Pulumi.") and given.suffix == ".yaml" and given.exists():
        return parse_spec(estate_config(stack_file_config(given.name[len("Pulumi."):-len(".yaml")],
                                                          given.resolve().parent)))
    if not (ROOT / f"Pulumi.{stack}.yaml").exists():
        raise SystemExit(f"no stack file Pulumi.{stack}.yaml")
    return parse_spec(estate_config(stack_file_config(stack, ROOT)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stack", help="a stack's name (Pulumi.<stack>.yaml here) or a stack file's path")
    ap.add_argument("--outputs", help="JSON from `pulumi stack output --json` (fills in node addresses and "
                                      "serverless routes)")
    ap.add_argument("--units", action="store_true", help="print the gateway host's units instead")
    args = ap.parse_args(argv)
    try:
        spec = load(args.stack)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    if spec.gateway is None:
        print(f"stack {args.stack!r} has no {NAMESPACE}:gateway", file=sys.stderr)
        return 2
    plan = plan_estate(spec)
    endpoints, hourly, ssh, serverless = {}, {}, {}, {}
    if args.outputs:
        outputs = json.loads(Path(args.outputs).read_text())
        nodes = outputs.get("nodes", {})
        serverless = {name: out["openai_base"] for name, out in (outputs.get("serverless") or {}).items()
                      if out.get("openai_base")}
        for name, out in nodes.items():
            endpoints[name] = (out.get("address"), out.get("ports") or {})
            if out.get("hourly_price") is not None:
                hourly[name] = float(out["hourly_price"])
            if out.get("ssh_host"):
                ssh[name] = (out["ssh_host"], int(out.get("ssh_port") or 22), spec.nodes[name].ssh.user)
    if args.units:
        for unit, text in gateway.gateway_units(plan, ssh).items():
            print(f"# /etc/systemd/system/{unit}\n{text}")
        return 0
    sys.stdout.write(gateway.render_litellm_config(plan, endpoints, hourly, serverless))
    return 0


if __name__ == "__main__":
    sys.exit(main())
