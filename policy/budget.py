"""Budget policies: the estate's monthly estimate, each node's $/h, and the daily cost of 24h nodes."""
from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy, StackValidationArgs,
    StackValidationPolicy,
)

from policy.settings import schema, setting
from policy.stamps import fixed_monthly, node_stamps

DEFAULTS = {"monthly_usd": 500.0, "max_hourly_per_node": 2.0, "daily_usd": 50.0}


def _cfg(args, key: str) -> float:
    return float(setting(args, DEFAULTS, key))


def monthly_budget(args: StackValidationArgs, report_violation) -> None:
    nodes = fixed = 0.0
    for r in args.resources:
        s = node_stamps(r.resource_type, r.props)
        if s:
            nodes += float(s["hourly_usd"]) * float(s["hours_per_month"])
        fixed += fixed_monthly(r.resource_type, r.props)
    total = nodes + fixed
    limit = _cfg(args, "monthly_usd")
    if total > limit + 1e-9:
        report_violation(f"estimated ${total:.2f}/month (nodes ${nodes:.2f}, fixed ${fixed:.2f}) exceeds the "
                         f"monthly budget ${limit:.2f}", None)


ESTATE = "gpu-estate:index:Estate"


def estate_plan_budget(args: ResourceValidationArgs, report_violation) -> None:
    """The estimate the program stamps on the estate, checked when the estate registers: before any of its
    nodes, so a plan over budget is refused before anything is rented, preview or not."""
    if args.resource_type != ESTATE:
        return
    s = args.props.get("stamps") or {}
    total, limit = float(s.get("monthly_usd") or 0), _cfg(args, "monthly_usd")
    if total > limit + 1e-9:
        parts = [f"{int(s.get('nodes') or 0)} nodes"] + [
            f"{n} {what}" + "s" * (n > 1) for key, what in (("endpoints", "serverless endpoint"), ("services", "service"))
            if (n := int(s.get(key) or 0))]
        what = " and ".join([", ".join(parts[:-1]), parts[-1]]) if len(parts) > 1 else parts[0]
        report_violation(f"the estate plans ${total:.2f}/month for {what}, above the monthly budget ${limit:.2f}; "
                         "nothing was rented")


def node_hourly_cap(args: ResourceValidationArgs, report_violation) -> None:
    s = node_stamps(args.resource_type, args.props)
    if not s:
        return
    limit = _cfg(args, "max_hourly_per_node")
    if float(s["hourly_usd"]) > limit + 1e-9:
        report_violation(f"node {s['node']!r} costs ${float(s['hourly_usd']):.3f}/h, above the cap ${limit:.2f}/h")


def daily_cap(args: ResourceValidationArgs, report_violation) -> None:
    s = node_stamps(args.resource_type, args.props)
    if not s:
        return
    limit = _cfg(args, "daily_usd")
    if "always_on_daily_usd" in s:
        # A serverless endpoint: its active workers bill every day; its flex workers only when busy.
        daily = float(s["always_on_daily_usd"])
        if daily > limit + 1e-9 and s.get("market") == "service":
            # A hosted service: its kept instances (Fly.io's always-on Machine, Cloud Run's minimum) and volumes.
            report_violation(f"service {s['node']!r} ({s.get('provider')}) bills ${daily:.2f}/day whatever its "
                             f"traffic, above ${limit:.2f}/day")
        elif daily > limit + 1e-9:
            report_violation(f"serverless endpoint {s['node']!r} keeps {int(s.get('min_workers') or 0)} active "
                             f"workers at ${daily:.2f}/day, above ${limit:.2f}/day")
        return
    if float(s["hours_per_month"]) < 720:
        return
    daily = float(s["hourly_usd"]) * 24
    if daily > limit + 1e-9:
        report_violation(f"node {s['node']!r} runs around the clock at ${daily:.2f}/day, above ${limit:.2f}/day")


def idle_shutdown_required(args: ResourceValidationArgs, report_violation) -> None:
    s = node_stamps(args.resource_type, args.props)
    if not s or not s.get("pay_per_use") or float(s["hours_per_month"]) >= 720:
        return
    if not float(s.get("idle_shutdown_minutes") or 0):
        report_violation(f"pay-per-use node {s['node']!r} plans {float(s['hours_per_month']):.0f} h/month "
                         "but has no idle_shutdown_minutes: it would bill while idle")


POLICIES = [
    ResourceValidationPolicy(name="estate-plan-budget", description="The planned estate within the monthly budget, "
                             "checked before any node is rented.", validate=estate_plan_budget,
                             enforcement_level=EnforcementLevel.MANDATORY, config_schema=schema(DEFAULTS, "monthly_usd")),
    StackValidationPolicy(name="estate-monthly-budget", description="Monthly estimate within the budget.",
                          validate=monthly_budget, enforcement_level=EnforcementLevel.MANDATORY,
                          config_schema=schema(DEFAULTS, "monthly_usd")),
    ResourceValidationPolicy(name="node-hourly-cap", description="Each node's $/h within its cap.",
                             validate=node_hourly_cap, enforcement_level=EnforcementLevel.MANDATORY,
                             config_schema=schema(DEFAULTS, "max_hourly_per_node")),
    ResourceValidationPolicy(name="node-daily-cap", description="Nodes running 24h within the daily cap.",
                             validate=daily_cap, enforcement_level=EnforcementLevel.MANDATORY,
                             config_schema=schema(DEFAULTS, "daily_usd")),
    ResourceValidationPolicy(name="idle-shutdown-required",
                             description="Pay-per-use nodes that do not run all month stop when idle.",
                             validate=idle_shutdown_required, enforcement_level=EnforcementLevel.MANDATORY),
]
