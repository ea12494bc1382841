"""The estate's status in a terminal, and the month's savings.

    .venv/bin/python scripts/status.py prod --outputs <(pulumi stack output --json)
    .venv/bin/python scripts/status.py prod --url http://127.0.0.1:4100        # the health agent's document
    .venv/bin/python scripts/status.py prod --status /var/lib/estate/health/status.json
    .venv/bin/python scripts/status.py savings --url http://127.0.0.1:4100
    .venv/bin/python scripts/status.py savings --document health-checks.json --usage <dir> [--json]

The status view is the health agent's own document (``/status.json`` on the gateway host, behind the
gateway's master key, read from ``LITELLM_MASTER_KEY`` or ``ESTATE_GATEWAY_KEY``; or the file it writes):
nodes, services with their last check, aliases and where they would route now, spend against the budget,
and the savings line. Without one it prints what the stack file and its outputs say (nodes, prices,
aliases, fallbacks), every service ``unknown``. ``savings`` prints the month's report: per alias, the
requests and tokens the estate's nodes and the external fallbacks served, what the estate's share would
have cost at the external APIs' prices, and the saving.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from core import health, savings, status  # noqa: E402
from core.errors import ConfigError  # noqa: E402
from core.spec import NAMESPACE, HealthSpec  # noqa: E402
from core.topology import plan_estate  # noqa: E402

KEY_ENVS = ("ESTATE_GATEWAY_KEY", "LITELLM_MASTER_KEY")


def fetch(url: str) -> Dict[str, Any]:
    key = next((os.environ[k] for k in KEY_ENVS if os.environ.get(k)), "")
    if not key:
        raise SystemExit(f"the status view needs the gateway's master key in {' or '.join(KEY_ENVS)} "
                         "(`pulumi stack output gateway_master_key --show-secrets`)")
    resp = requests.get(f"{url.rstrip('/')}/status.json", headers={"Authorization": f"Bearer {key}"}, timeout=15)
    if resp.status_code != 200:
        raise SystemExit(f"{url}/status.json answered HTTP {resp.status_code}")
    return resp.json()


def from_stack(stack: str, outputs: Optional[str]) -> Dict[str, Any]:
    """The status document the stack file and its outputs give, before any check has run."""
    from scripts.gateway_config import load

    try:
        spec = load(stack)
    except ConfigError as err:
        raise SystemExit(str(err))
    if spec.gateway is None:
        raise SystemExit(f"stack {stack!r} has no {NAMESPACE}:gateway")
    if spec.health is None:
        spec = spec.model_copy(update={"health": HealthSpec()})  # the checks it would run, with their defaults
    hourly: Dict[str, float] = {}
    machines: Dict[str, str] = {}
    if outputs:
        for name, out in (json.loads(Path(outputs).read_text()).get("nodes") or {}).items():
            if out.get("hourly_price") is not None:
                hourly[name] = float(out["hourly_price"])
    document = health.check_document(plan_estate(spec), stack, machines=machines, hourly=hourly)
    return status.status_document(document, {}, time.time())


def read_usage(directory: Path, now: float) -> List[Dict[str, Any]]:
    from agents.health import read_usage as read

    return read(directory, now)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["savings"]:
        ap = argparse.ArgumentParser(prog="status.py savings", description="The month's savings report.")
        ap.add_argument("--url", help="the health agent's address (its /status.json holds the report)")
        ap.add_argument("--status", help="a status document the health agent wrote")
        ap.add_argument("--document", help="the check document (health-checks.json), with --usage")
        ap.add_argument("--usage", help="the directory of the gateway's usage-<month>.jsonl files")
        ap.add_argument("--month", help="YYYY-MM (default this month; with --document)")
        ap.add_argument("--json", action="store_true", help="print the report as JSON")
        args = ap.parse_args(argv[1:])
        if args.document:
            document = json.loads(Path(args.document).read_text())
            now = time.time()
            month = args.month or time.strftime("%Y-%m", time.gmtime(now))
            lines: List[Dict[str, Any]] = []
            usage = Path(args.usage or Path(args.document).parent)
            path = usage / f"usage-{month}.jsonl"
            if path.exists():
                lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            costs = status.node_costs(document, None, now)
            report = savings.month_report(lines, document, month, sum(costs["nodes"].values()), costs["basis"])
        elif args.url or args.status:
            doc = fetch(args.url) if args.url else json.loads(Path(args.status).read_text())
            report = doc.get("savings") or {}
        else:
            ap.error("give --url, --status, or --document with --usage")
        if args.json:
            print(json.dumps(report, indent=2, sort_keys=True))
            return 0
        for alias, a in (report.get("aliases") or {}).items():
            e, x = a["estate"], a["external"]
            worth = f"${a['external_equivalent_usd']:.2f} at {a['priced_at']}" if a.get("priced_at") else a.get("unpriced", "not priced")
            print(f"{alias:<20} estate {e['requests']:>6} req {e['input_tokens']:>10} in {e['output_tokens']:>10} out "
                  f"{e['images']:>4} img | external {x['requests']:>6} req | {worth}")
        print(savings.savings_line(report))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stack", help="a stack's name (Pulumi.<stack>.yaml here) or a stack file's path")
    ap.add_argument("--outputs", help="JSON from `pulumi stack output --json` (node prices)")
    ap.add_argument("--url", help="the health agent's address on the gateway host (e.g. through an SSH forward)")
    ap.add_argument("--status", help="a status document the health agent wrote")
    ap.add_argument("--json", action="store_true", help="print the document as JSON")
    args = ap.parse_args(argv)
    doc = (fetch(args.url) if args.url else json.loads(Path(args.status).read_text()) if args.status
           else from_stack(args.stack, args.outputs))
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print("\n".join(status.status_lines(doc, time.time())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
