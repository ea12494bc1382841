"""The estate drawn as Mermaid: checked against the spec (every node, workload, tunnel, alias and route,
and nothing else), and parsed by mermaid's own parser (scripts/mermaid, mermaid 12 under jsdom)."""
import tests
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from core import catalog, diagram
from core.config import parse_spec
from core.kinds import WorkloadKind
from core.topology import plan_estate
from scripts import diagram as diagram_command
import sandbox
from tests.mocks import stack_estate

ROOT = tests.ROOT
CHECKER = ROOT / "scripts" / "mermaid"
DEFINITION = re.compile(r'^\s*(?:subgraph )?([A-Za-z0-9_]+)(\[|\(\[|\{\{|\[/|>)"(.*?)"')
EDGE = re.compile(r"^\s*([A-Za-z0-9_]+) (?:--|-\.).*?(?:-->|\.->) ([A-Za-z0-9_]+)$")


def unescape(text: str) -> str:
    return text.replace("#quot;", '"').replace("#lt;", "<").replace("#gt;", ">").replace("#35;", "#")


def drawn(text: str):
    """``{id: label}`` of every box the flowchart defines, and its edges as ``(from, to)``."""
    boxes, edges = {}, []
    for line in text.splitlines()[1:]:
        match = DEFINITION.match(line)
        if match:
            boxes[match.group(1)] = [unescape(part) for part in match.group(3).split("<br/>")]
        edge = EDGE.match(line)
        if edge:
            edges.append(edge.groups())
    return boxes, edges


def parse_with_mermaid(tmp_path: Path, *documents: str):
    if not (CHECKER / "node_modules" / "mermaid").exists() or not shutil.which("node"):
        why = "mermaid's parser is not installed (make setup runs npm ci in scripts/mermaid)"
        if sandbox.vm_required():
            pytest.fail(why)
        pytest.skip(why)
    files = []
    for i, text in enumerate(documents):
        files.append(tmp_path / f"d{i}.mmd")
        files[-1].write_text(text)
    run = subprocess.run(["node", str(CHECKER / "check.mjs"), *map(str, files)], capture_output=True, text=True,
                         timeout=120)
    return [json.loads(line) for line in run.stdout.splitlines()], run.returncode


@pytest.fixture(params=["prod", "dev", "sandbox"])
def plan(request):
    return request.param, plan_estate(parse_spec(stack_estate(request.param)))


def test_the_drawing_holds_every_node_workload_tunnel_alias_and_route_and_nothing_else(plan):
    stack, plan = plan
    spec = plan.spec
    boxes, edges = drawn(diagram.flowchart(plan))
    kinds = {box_id.rstrip("0123456789_x").split("_")[0] for box_id in boxes}
    assert kinds <= {"provider", "node", "wl", "empty", "gateway", "alias", "ext", "route", "serverless", "sls", "hosted", "svc"}
    services = {labels[0]: labels[1:] for box_id, labels in boxes.items() if box_id.startswith("svc_")}
    assert set(services) == set(spec.services)
    for name, s in spec.services.items():
        est = plan.service_estimates[name]
        assert services[name] == [s.describe(), f"${est.instance_hourly_usd:.3f}/h an instance · ${est.monthly_usd:,.2f}/mo"]
    endpoints = {labels[0]: (box_id, labels[1:]) for box_id, labels in boxes.items() if box_id.startswith("sls_")}
    assert set(endpoints) == set(spec.serverless)
    for name, e in spec.serverless.items():
        est = plan.endpoint_estimates[name]
        assert endpoints[name][1] == [
            f"{e.gpu_count}x {'/'.join(e.gpu_pools)} · {e.workers.min}-{e.workers.max} workers, idle {e.idle_timeout_seconds} s",
            f"${est.worker_hourly_usd:.2f}/h a worker · ${est.monthly_usd:,.0f}/mo"]
    nodes = {labels[0]: box_id for box_id, labels in boxes.items() if box_id.startswith("node_")}
    assert set(nodes) == set(spec.nodes)
    for name, node in spec.nodes.items():
        gpu, _, price = boxes[nodes[name]][1].partition(" · ")
        assert gpu == (f"{node.gpu.count}x {catalog.gpu_display(node.gpu.model)}" if node.gpu else "no GPU")
        estimate = plan.estimates[name]
        assert price == ("owned" if estimate.basis == "owned" else
                         f"${estimate.hourly_usd:.2f}/h · ${estimate.monthly_usd:,.0f}/mo")
        own = {boxes[b][0] for b in boxes if b.startswith(f"wl_{nodes[name].split('_')[1]}_")}
        expected = {(n if n == w.kind.value else f"{n} ({w.kind.value})") + f" :{node.port(n)}"
                    for n, w in node.workloads.items()
                    if not (spec.gateway and name == spec.gateway.node and w.kind is WorkloadKind.LITELLM)}
        assert own == expected
    routes = {labels[0]: labels[1] for box_id, labels in boxes.items() if box_id.startswith("route_")}
    assert routes == {host + (r.path if r.path != "/" else ""): f"auth: {r.auth.value}" for host, r in spec.routes.items()}
    aliases = {labels[0] for box_id, labels in boxes.items() if box_id.startswith("alias_")}
    tunnels = [e for e in edges if e[0] == "gateway" and not e[1].startswith("alias_")]
    if spec.gateway is None:
        assert not aliases and "gateway" not in boxes
        return
    external = {a for ext in spec.gateway.external.values() for a in ext.models}
    assert aliases == set(spec.gateway.aliases) | external
    assert len(tunnels) == sum(len(f) for f in plan.tunnels.values())
    # Every alias leads to each node serving its tag, and each fallback is drawn.
    alias_ids = {boxes[b][0]: b for b in boxes if b.startswith("alias_")}
    for alias, tag in spec.gateway.aliases.items():
        targets = {t for f, t in edges if f == alias_ids[alias]}
        served = {nodes[s.node] for s in plan.serving[tag]}
        assert {t.split("_")[1] for t in targets if t.startswith("wl_")} >= {s.split("_")[1] for s in served}
        assert {t for t in targets if t.startswith("sls_")} == {endpoints[n][0] for n in plan.endpoints[tag]}
        drawn_services = {boxes[t][0] for t in targets if t.startswith("svc_")}
        assert drawn_services == set(plan.services[tag])
    fallbacks = [(f, t) for f, t in edges if f.startswith("alias_") and t.startswith("alias_")]
    assert len(fallbacks) == sum(len(c) for c in spec.gateway.fallbacks.values())


def test_mermaids_own_parser_accepts_every_stacks_drawing_and_refuses_a_broken_one(tmp_path):
    documents = []
    for stack in ("prod", "dev", "sandbox"):
        plan = plan_estate(parse_spec(stack_estate(stack)))
        documents += [diagram.flowchart(plan), diagram.cost_chart(plan, stack)]
    broken = diagram.flowchart(plan_estate(parse_spec(stack_estate("dev")))).replace('"]', "]", 1)
    results, code = parse_with_mermaid(tmp_path, *documents, broken)
    assert [r["ok"] for r in results] == [True] * len(documents) + [False]
    assert {r["type"] for r in results[:-1]} == {"flowchart-v2", "xychart"}
    assert code == 1


def test_a_label_cannot_close_itself_or_start_a_statement(tmp_path):
    hostile = 'x"] --> evil["pwned\nclick x call alert(1) <b>#35;'
    text = f'flowchart LR\n  a["{diagram.label(hostile)}"]\n'
    boxes, edges = drawn(text)
    assert boxes == {"a": [" ".join(hostile.split())]} and edges == []
    results, code = parse_with_mermaid(tmp_path, text)
    assert results[0]["ok"] and code == 0


def test_the_cost_chart_has_a_bar_per_node_and_endpoint_at_its_monthly_price():
    plan = plan_estate(parse_spec(stack_estate("prod")))
    assert plan.estimate.endpoints, "prod runs a serverless endpoint"
    chart = diagram.cost_chart(plan, "prod")
    names = json.loads("[" + re.search(r"x-axis \[(.*)\]", chart).group(1) + "]")
    bars = [float(v) for v in re.search(r"bar \[(.*)\]", chart).group(1).split(",")]
    assert dict(zip(names, bars)) == {**{e.node: e.monthly_usd for e in plan.estimate.nodes},
                                      **{e.endpoint: e.monthly_usd for e in plan.estimate.endpoints},
                                      **{s.service: s.monthly_usd for s in plan.estimate.services}}
    assert f"{plan.estimate.monthly_usd:,.2f} in all" in chart


def test_the_stacks_page_shows_the_prod_estate_as_the_command_draws_it(tmp_path, capsys):
    out = tmp_path / "d.md"
    assert diagram_command.main(["prod", "--output", str(out)]) == 0
    assert capsys.readouterr().out == out.read_text()
    assert out.read_text() in (ROOT / "docs" / "stacks.md").read_text()
