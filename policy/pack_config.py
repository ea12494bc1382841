"""The policy pack's config for a stack: its budget from Pulumi.<stack>.yaml, the rest from
policy/stacks/<stack>.json (which providers, GPUs, regions and spot a stack may use, and whether it may
reach nodes directly). Written as the JSON that `pulumi preview|up --policy-pack-config` reads.

    .venv/bin/python -m policy.pack_config prod > /tmp/prod-policy.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict

from core.config import stack_file_config

ROOT = Path(__file__).resolve().parent.parent


def pack_config(stack: str, root: Path = ROOT) -> Dict[str, Any]:
    budget = stack_file_config(stack, root).get("gpu-estate:budget") or {}
    out: Dict[str, Any] = {}
    if "monthly_usd" in budget:
        out["estate-monthly-budget"] = {"monthly_usd": float(budget["monthly_usd"])}
        out["estate-plan-budget"] = {"monthly_usd": float(budget["monthly_usd"])}
    if budget.get("max_hourly_per_node"):
        out["node-hourly-cap"] = {"max_hourly_per_node": float(budget["max_hourly_per_node"])}
    if budget.get("daily_usd"):
        out["node-daily-cap"] = {"daily_usd": float(budget["daily_usd"])}
    overrides = root / "policy" / "stacks" / f"{stack}.json"
    if overrides.exists():
        for policy, values in json.loads(overrides.read_text()).items():
            out.setdefault(policy, {}).update(values)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m policy.pack_config <stack>")
    json.dump(pack_config(sys.argv[1]), sys.stdout, indent=2)
    sys.stdout.write("\n")
