"""The estate a stack describes, drawn as Mermaid: a flowchart of its nodes (by provider, with GPU and
price), their workloads, its serverless endpoints (pools, workers, price), the gateway's tunnels and
aliases, and the public hostnames with their auth; and a bar chart of what each node and endpoint costs
a month.

Everything drawn comes from the spec and its plan, nothing else; every label is escaped the Mermaid
way (entity codes), so no stack value can close a label or start a statement.
"""
from __future__ import annotations

from typing import Dict, List

from core import catalog
from core.topology import EstatePlan

PROVIDERS = {"tensordock": "TensorDock", "vastai": "Vast.ai", "runpod": "RunPod", "aws": "AWS", "gcp": "GCP",
             "host": "Owned hosts"}


def label(text: str) -> str:
    """``text`` as the inside of a quoted Mermaid label: entity codes for what would end or mark it up."""
    out = str(text).replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    return " ".join(out.split())


def _gpu(plan: EstatePlan, name: str) -> str:
    node = plan.spec.nodes[name]
    if node.gpu is None:
        return "no GPU"
    return f"{node.gpu.count}x {catalog.gpu_display(node.gpu.model)}"


def _price(plan: EstatePlan, name: str) -> str:
    estimate = plan.estimates[name]
    if estimate.basis == "owned":
        return "owned"
    return f"${estimate.hourly_usd:.2f}/h · ${estimate.monthly_usd:,.0f}/mo"


def flowchart(plan: EstatePlan) -> str:
    """The estate as a Mermaid flowchart. Ids are positional (``node_1``, ``wl_1_2``, ``alias_3``...), so
    a name never becomes syntax; the names are in the labels."""
    spec = plan.spec
    lines = ["flowchart LR"]
    node_ids = {name: f"node_{i}" for i, name in enumerate(spec.nodes)}
    workload_ids: Dict[tuple, str] = {}
    by_provider: Dict[str, List[str]] = {}
    for name, node in spec.nodes.items():
        by_provider.setdefault(node.provider.value, []).append(name)
    gateway_node = spec.gateway.node if spec.gateway else None
    for p_index, (provider, names) in enumerate(by_provider.items()):
        lines.append(f'  subgraph provider_{p_index}["{label(PROVIDERS.get(provider, provider))}"]')
        for name in names:
            node = spec.nodes[name]
            nid = node_ids[name]
            title = f"{label(name)}<br/>{label(_gpu(plan, name))} · {label(_price(plan, name))}"
            lines.append(f'    subgraph {nid}["{title}"]')
            for w_index, (wname, w) in enumerate(node.workloads.items()):
                if name == gateway_node and w.on_gateway_host:
                    continue  # the gateway itself, drawn below on the port it listens on
                wid = f"wl_{nid.split('_')[1]}_{w_index}"
                workload_ids[(name, wname)] = wid
                what = wname if wname == w.kind.value else f"{wname} ({w.kind.value})"
                lines.append(f'      {wid}["{label(what)} :{node.port(wname)}"]')
            if name == gateway_node:
                lines.append(f'      gateway{{{{"{label("LiteLLM gateway")} :{spec.gateway.port}"}}}}')
            if not node.workloads and name != gateway_node:  # an empty subgraph would not be drawn
                lines.append(f'      empty_{nid.split("_")[1]}["{label("no workloads")}"]')
            lines.append("    end")
        lines.append("  end")
    endpoint_ids = {name: f"sls_{i}" for i, name in enumerate(spec.serverless)}
    if spec.serverless:
        lines.append(f'  subgraph serverless["{label("RunPod serverless")}"]')
        for name, e in spec.serverless.items():
            est = plan.endpoint_estimates[name]
            scale = f"{e.gpu_count}x {'/'.join(e.gpu_pools)} · {e.workers.min}-{e.workers.max} workers, idle {e.idle_timeout_seconds} s"
            price = f"${est.worker_hourly_usd:.2f}/h a worker · ${est.monthly_usd:,.0f}/mo"
            lines.append(f'    {endpoint_ids[name]}["{label(name)}<br/>{label(scale)}<br/>{label(price)}"]')
        lines.append("  end")
    service_ids = {name: f"svc_{i}" for i, name in enumerate(spec.services)}
    for t_index, title in enumerate(dict.fromkeys(svc.TITLE for svc in spec.services.values())):
        lines.append(f'  subgraph hosted_{t_index}["{label(title)}"]')
        for name, svc in spec.services.items():
            if svc.TITLE == title:
                est = plan.service_estimates[name]
                price = f"${est.instance_hourly_usd:.3f}/h an instance · ${est.monthly_usd:,.2f}/mo"
                lines.append(f'    {service_ids[name]}["{label(name)}<br/>{label(svc.describe())}<br/>{label(price)}"]')
        lines.append("  end")
    if spec.gateway is not None:
        for forward in (f for forwards in plan.tunnels.values() for f in forwards):
            target = next((wid for (n, wname), wid in workload_ids.items()
                           if n == forward.node and forward.remote in (spec.nodes[n].port(wname),
                                                                       spec.nodes[n].serving_port(wname))),
                          node_ids[forward.node])
            lines.append(f'  gateway -. "{label(f"autossh :{forward.local} → :{forward.remote}")}" .-> {target}')
        alias_ids = {alias: f"alias_{i}" for i, alias in enumerate(spec.gateway.aliases)}
        externals = {alias: (provider, model) for provider, ext in spec.gateway.external.items()
                     for alias, model in ext.models.items()}
        for x_index, alias in enumerate(a for a in externals if a not in alias_ids):
            alias_ids[alias] = f"alias_x{x_index}"
        for alias, aid in alias_ids.items():
            lines.append(f'  {aid}(["{label(alias)}"])')
            lines.append(f"  gateway --> {aid}")
        for alias, tag in spec.gateway.aliases.items():
            for server in plan.serving.get(tag, ()):
                target = workload_ids.get((server.node, server.workload), node_ids[server.node])
                lines.append(f'  {alias_ids[alias]} -- "{label(tag)}" --> {target}')
            for name in plan.endpoints.get(tag, ()):
                lines.append(f'  {alias_ids[alias]} -- "{label(tag)}" --> {endpoint_ids[name]}')
            for name in plan.services.get(tag, ()):
                lines.append(f'  {alias_ids[alias]} -- "{label(tag)}" --> {service_ids[name]}')
        for e_index, provider in enumerate(spec.gateway.external):
            lines.append(f'  ext_{e_index}[/"{label(provider)}"/]')
            for alias, (owner, model) in externals.items():
                if owner == provider:
                    lines.append(f'  {alias_ids[alias]} -- "{label(model)}" --> ext_{e_index}')
        for alias, chain in spec.gateway.fallbacks.items():
            for fallback in chain:
                if alias in alias_ids and fallback in alias_ids:
                    lines.append(f'  {alias_ids[alias]} -. "fallback" .-> {alias_ids[fallback]}')
    for r_index, (host, route) in enumerate(spec.routes.items()):
        rid = f"route_{r_index}"
        where = host + (route.path if route.path != "/" else "")
        lines.append(f'  {rid}>"{label(where)}<br/>{label("auth: " + route.auth.value)}"]')
        if (spec.gateway and route.node == spec.gateway.node
                and spec.nodes[route.node].workloads[route.workload].on_gateway_host):
            target = "gateway"
        else:
            target = workload_ids.get((route.node, route.workload), node_ids[route.node])
        lines.append(f"  {rid} --> {target}")
    return "\n".join(lines) + "\n"


def monthly_by_name(plan: EstatePlan) -> Dict[str, float]:
    """What each node and each serverless endpoint is planned to cost a month, in spec order."""
    return {**{e.node: e.monthly_usd for e in plan.estimate.nodes},
            **{e.endpoint: e.monthly_usd for e in plan.estimate.endpoints},
            **{s.service: s.monthly_usd for s in plan.estimate.services}}


def cost_chart(plan: EstatePlan, stack: str) -> str:
    """What each node and serverless endpoint costs a month, as a Mermaid bar chart."""
    monthly = monthly_by_name(plan)
    names = ", ".join(f'"{label(name)}"' for name in monthly)
    values = ", ".join(f"{usd:.2f}" for usd in monthly.values())
    top = max([*monthly.values(), 1.0])
    return (f'xychart-beta\n  title "{label(f"{stack}: USD a month per node, {plan.estimate.monthly_usd:,.2f} in all")}"\n'
            f"  x-axis [{names}]\n  y-axis \"USD / month\" 0 --> {top * 1.1:.0f}\n  bar [{values}]\n")


def markdown(plan: EstatePlan, stack: str) -> str:
    """Both drawings as Markdown, for the pull request's comment and the README."""
    return (f"#### The `{stack}` estate\n\n```mermaid\n{flowchart(plan)}```\n\n"
            f"```mermaid\n{cost_chart(plan, stack)}```\n")
