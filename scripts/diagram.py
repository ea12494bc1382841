"""Draw the estate a stack describes, as Mermaid, without deploying anything.

    .venv/bin/python scripts/diagram.py prod                 # Markdown: the estate and its cost chart
    .venv/bin/python scripts/diagram.py prod --output d.md   # ... also written to d.md (the PR comment)

It reads Pulumi.<stack>.yaml, checks it as `pulumi up` would, and draws its nodes by provider (GPU and
price), their workloads, the gateway's tunnels, aliases, external models and fallbacks, and the public
hostnames with their auth (core/diagram.py); then a bar chart of each node's monthly cost.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core import diagram
from core.errors import ConfigError
from core.topology import plan_estate
from scripts.gateway_config import load


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stack", help="a stack's name (Pulumi.<stack>.yaml here) or a stack file's path")
    ap.add_argument("--output", help="also write the Markdown here")
    args = ap.parse_args(argv)
    try:
        plan = plan_estate(load(args.stack))
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    name = Path(args.stack).name
    text = diagram.markdown(plan, name[len("Pulumi."):-len(".yaml")] if name.startswith("Pulumi.") else args.stack)
    sys.stdout.write(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
