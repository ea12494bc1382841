"""Turn previews into a Markdown cost diff for a pull request, and fail past a limit.

    pulumi preview --json --show-sames > head.json
    .venv/bin/python scripts/cost_diff.py head.json --stack prod                  # before/after from one preview
    .venv/bin/python scripts/cost_diff.py head.json --base base.json --stack prod # two previews (base branch, PR)
    ... --max-increase 50 --max-increase-pct 20 --max-total 600                   # exit 1 past any of them

A preview's steps carry each resource's old and new inputs; `--show-sames` makes it list the unchanged
resources too, without which their cost would be missing (the command refuses such a preview). The cost of a node is read from what the
program stamps on its billing resource (the same reader the policy pack uses: ``policy/stamps.py``),
buckets add their fixed monthly cost. With one preview, "before" is each step's old state (what is
deployed) and "after" its new state; with ``--base`` the base preview's new state is "before".
The budget line reads ``gpu-estate:budget.monthly_usd`` from Pulumi.<stack>.yaml, and past the budget
the command fails too. Exit codes: 0 within limits, 1 over a limit, 2 unreadable input.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from core.config import PROJECT_ROOT as ROOT
from core.config import stack_file_config
from policy.stamps import fixed_monthly, image_stamps, node_stamps


@dataclasses.dataclass(frozen=True)
class NodeCost:
    node: str
    provider: str
    gpu: str
    hourly_usd: float
    hours_per_month: float

    @property
    def monthly_usd(self) -> float:
        return self.hourly_usd * self.hours_per_month


@dataclasses.dataclass
class Costs:
    nodes: Dict[str, NodeCost] = dataclasses.field(default_factory=dict)
    fixed_usd: float = 0.0
    images: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)
    """``alias@node`` -> workflow, seconds_per_image, usd_per_image: what an image costs, within the nodes'
    hours (so not added to the total)."""

    @property
    def total(self) -> float:
        return sum(n.monthly_usd for n in self.nodes.values()) + self.fixed_usd


def _states(preview: Dict[str, Any], side: str) -> Iterable[Tuple[str, Dict[str, Any]]]:
    for step in preview.get("steps") or []:
        op = step.get("op")
        if side == "old" and op in ("create", "create-replacement"):
            continue
        if side == "new" and op in ("delete", "delete-replaced", "discard"):
            continue
        state = step.get("oldState" if side == "old" else "newState") or step.get("newState" if side == "old" else "oldState")
        if state:
            yield state.get("type", ""), state.get("inputs") or {}


def costs(preview: Dict[str, Any], side: str) -> Costs:
    out = Costs()
    for typ, inputs in _states(preview, side):
        s = node_stamps(typ, inputs)
        if s:
            out.nodes[str(s["node"])] = NodeCost(str(s["node"]), str(s.get("provider", "")), str(s.get("gpu", "")),
                                                 float(s["hourly_usd"]), float(s["hours_per_month"]))
        out.fixed_usd += fixed_monthly(typ, inputs)
        out.images.update(image_stamps(typ, inputs))
    return out


def missing_sames(preview: Dict[str, Any]) -> bool:
    listed = sum(1 for step in preview.get("steps") or [] if step.get("op") == "same")
    return listed < int((preview.get("changeSummary") or {}).get("same", 0))


def _money(v: Optional[float]) -> str:
    return "–" if v is None else f"${v:,.2f}"


def _delta(before: float, after: float) -> str:
    d = after - before
    if abs(d) < 0.005:
        return "±$0.00"
    pct = f" ({d / before:+.0%})" if before else ""
    return f"{'+' if d > 0 else '-'}${abs(d):,.2f}{pct}"


def _per_image(v: Optional[float]) -> str:
    return "–" if v is None else f"${v:,.4f}"


def _image_lines(before: Costs, after: Costs) -> List[str]:
    """Image aliases and what one image costs on each node serving them (node $/h x seconds per image)."""
    keys = sorted(set(before.images) | set(after.images))
    if not keys:
        return []
    lines = ["| image alias | node | workflow | s/image | $/image | change |", "|---|---|---|---:|---:|---:|"]
    for key in keys:
        b, a = before.images.get(key), after.images.get(key)
        alias, _, node = key.rpartition("@")
        status = " (new)" if b is None else " (removed)" if a is None else ""
        now = a or b
        was, cost = (b or {}).get("usd_per_image"), (a or {}).get("usd_per_image")
        change = "" if b is None or a is None or was == cost else \
            f"{'+' if cost > was else '-'}{_per_image(abs(cost - was))}"
        lines.append(f"| {alias}{status} | {node} | {now['workflow']} | {now['seconds_per_image']:g} | "
                     f"{_per_image(cost if a else was)} | {change or '±$0.0000'} |")
    return lines + [""]


@dataclasses.dataclass
class Verdict:
    markdown: str
    failures: List[str]


def report(before: Costs, after: Costs, stack: str, budget: Optional[float], max_increase: Optional[float],
           max_increase_pct: Optional[float], max_total: Optional[float]) -> Verdict:
    lines = [f"### Cost of `{stack}`", "",
             "| node | provider | GPU | $/h | h/month | $/month | change |",
             "|---|---|---|---:|---:|---:|---:|"]
    for name in sorted(set(before.nodes) | set(after.nodes)):
        b, a = before.nodes.get(name), after.nodes.get(name)
        n = a or b
        rate = _money(a.hourly_usd if a else None) if (b is None or a is None or b.hourly_usd == a.hourly_usd) \
            else f"{_money(b.hourly_usd)} → {_money(a.hourly_usd)}"
        hours = f"{(a or b).hours_per_month:.0f}" if (b is None or a is None or b.hours_per_month == a.hours_per_month) \
            else f"{b.hours_per_month:.0f} → {a.hours_per_month:.0f}"
        status = " (new)" if b is None else " (removed)" if a is None else ""
        lines.append(f"| {name}{status} | {n.provider} | {n.gpu or '–'} | {rate} | {hours} | "
                     f"{_money(a.monthly_usd if a else 0.0)} | {_delta(b.monthly_usd if b else 0.0, a.monthly_usd if a else 0.0)} |")
    if before.fixed_usd or after.fixed_usd:
        lines.append(f"| storage and fixed | | | | | {_money(after.fixed_usd)} | {_delta(before.fixed_usd, after.fixed_usd)} |")
    lines.append(f"| **total** | | | | | **{_money(after.total)}** | **{_delta(before.total, after.total)}** |")
    lines.append("")
    lines += _image_lines(before, after)
    failures: List[str] = []
    increase = after.total - before.total
    if budget is not None:
        lines.append(f"Monthly budget: {_money(budget)}; this change leaves the estate at "
                     f"{after.total / budget:.0%} of it." if budget else "")
        if after.total > budget + 1e-9:
            failures.append(f"the new total {_money(after.total)} is above the budget {_money(budget)}")
    if max_total is not None and after.total > max_total + 1e-9:
        failures.append(f"the new total {_money(after.total)} is above the limit {_money(max_total)}")
    if max_increase is not None and increase > max_increase + 1e-9:
        failures.append(f"the increase {_money(increase)} is above the limit {_money(max_increase)}")
    if max_increase_pct is not None and before.total and increase / before.total * 100 > max_increase_pct + 1e-9:
        failures.append(f"the increase {increase / before.total:.0%} is above the limit {max_increase_pct:.0f}%")
    lines.append("")
    lines += [f"**Over a limit:** {f}" for f in failures] or ["Within every cost limit."]
    return Verdict("\n".join(lines) + "\n", failures)


def stack_budget(stack: str) -> Optional[float]:
    if not (ROOT / f"Pulumi.{stack}.yaml").exists():
        return None
    value = (stack_file_config(stack, ROOT).get("gpu-estate:budget") or {}).get("monthly_usd")
    return float(value) if value is not None else None


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preview", help="`pulumi preview --json` of the change")
    ap.add_argument("--base", help="`pulumi preview --json` of the base branch (default: the deployed state)")
    ap.add_argument("--stack", default="", help="stack name: its budget is read from Pulumi.<stack>.yaml")
    ap.add_argument("--max-increase", type=float, help="fail when the monthly total grows by more USD than this")
    ap.add_argument("--max-increase-pct", type=float, help="... or by more percent than this")
    ap.add_argument("--max-total", type=float, help="fail when the new monthly total is above this")
    ap.add_argument("--output", help="also write the Markdown here (for the PR comment)")
    args = ap.parse_args(argv)
    try:
        head = json.loads(Path(args.preview).read_text())
        base = json.loads(Path(args.base).read_text()) if args.base else None
    except (OSError, ValueError) as err:
        print(f"cannot read preview: {err}", file=sys.stderr)
        return 2
    for name, preview in (("preview", head), ("base", base)):
        if preview is not None and missing_sames(preview):
            print(f"the {name} lists fewer unchanged resources than its summary counts: run "
                  "`pulumi preview --json --show-sames`", file=sys.stderr)
            return 2
    before = costs(base, "new") if base is not None else costs(head, "old")
    after = costs(head, "new")
    verdict = report(before, after, args.stack or "stack", stack_budget(args.stack) if args.stack else None,
                     args.max_increase, args.max_increase_pct, args.max_total)
    sys.stdout.write(verdict.markdown)
    if args.output:
        Path(args.output).write_text(verdict.markdown)
    return 1 if verdict.failures else 0


if __name__ == "__main__":
    sys.exit(main())
