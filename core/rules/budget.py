"""Budget rules: no node dearer per hour than the cap, the estate's own estimate within the month, and a spend
watcher that has a gateway to run beside and alerts that come before its stop."""
from __future__ import annotations

from typing import Dict, List

from core import pricing
from core.errors import Problem
from core.spec import NAMESPACE, EstateSpec


def check(spec: EstateSpec, estimates: Dict[str, object], placed: bool) -> List[Problem]:
    """``placed`` is false when some node could not be priced: the monthly total is then meaningless."""
    problems: List[Problem] = []
    b = spec.budget
    priced = [e for e in estimates.values() if isinstance(e, pricing.NodeEstimate)]
    for est in priced:
        if b.max_hourly_per_node is not None and est.hourly_usd > b.max_hourly_per_node:
            problems.append((
                f"{NAMESPACE}:nodes.{est.node}",
                f"${est.hourly_usd:.3f}/h exceeds {NAMESPACE}:budget.max_hourly_per_node ${b.max_hourly_per_node:.2f}/h",
            ))
    for service in (s.estimate(name) for name, s in spec.services.items()):
        hourly = service.instance_hourly_usd
        if b.max_hourly_per_node is not None and hourly > b.max_hourly_per_node:
            problems.append((f"{NAMESPACE}:services.{service.service}", f"an instance is ${hourly:.3f}/h, above "
                                                            f"{NAMESPACE}:budget.max_hourly_per_node "
                                                            f"${b.max_hourly_per_node:.2f}/h"))
    if placed and len(priced) == len(estimates):
        total = pricing.estimate_estate(spec).monthly_usd  # the same figure the stack's cost table shows
        if total > b.monthly_usd:
            problems.append((
                f"{NAMESPACE}:budget.monthly_usd",
                f"the estate's own estimate is ${total:.2f}/month, above the budget (got {b.monthly_usd})",
            ))
    if spec.spend is not None:
        if spec.gateway is None:
            problems.append((f"{NAMESPACE}:spend", "the spend watcher runs beside the gateway: set "
                                                   f"{NAMESPACE}:gateway.node (got no gateway)"))
        for i, p in enumerate(spec.spend.alerts_percent):
            if p >= spec.spend.stop_percent:
                problems.append((f"{NAMESPACE}:spend.alerts_percent[{i}]",
                                 f"an alert at or above stop_percent {spec.spend.stop_percent} never comes first (got {p})"))
    return problems
