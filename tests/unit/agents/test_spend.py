"""The spend watcher: its arithmetic, one look after another against the loopback marketplaces whose billed
rates the tests drive (alerts posted to a webhook on 127.0.0.1, nodes stopped at the budget), the watcher
as shipped to a gateway host run by the gateway's own Python, its units under systemd-analyze, the wake hook
that wakes nothing over the budget, and the program that refuses to start nodes in a month over it."""
import datetime as dt
import json
import os
import shutil
import socket
import subprocess

import pytest

from components import gateway
from core import spend
from core.config import parse_spec
from core.errors import ConfigError
from core.pricing import NodeRequest
from core.topology import plan_estate
from loopback.webhook import FakeWebhook
from providers import gpu_cloud
from providers.gpu_cloud import LaunchSpec, Status
from providers.local_gateway import litellm_binary
from agents.spend import Watcher, read_ledger, write_ledger
from agents.wake import Asleep, Waker
from tests.mocks import run_program, stack_config, stack_estate, unpack_library

T0 = dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.timezone.utc).timestamp()
HOUR = 3600.0
NODE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFXdBfpWUE7y0nZ8rsibV0rc/1JxweHTokQjkgvrZxWD"


def document(nodes, budget=100.0, daily=None, resume=None):
    return {"version": 1, "stack": "gpu-estate-test", "budget_usd": budget, "daily_usd": daily,
            "alerts_percent": [50, 80], "stop_percent": 100, "resume_month": resume, "nodes": nodes}


# --- arithmetic -------------------------------------------------------------------------------------------


def test_a_node_is_charged_its_rate_for_the_time_it_was_seen_running():
    ledger = spend.accrue(None, {"a": spend.Seen(True, 2.0), "b": spend.Seen(False, 1.0)}, T0)
    assert ledger["spent_usd"] == 0.0 and ledger["month"] == "2026-12"
    ledger = spend.accrue(ledger, {"a": spend.Seen(True, 2.0), "b": spend.Seen(False, 1.0)}, T0 + 1.5 * HOUR)
    assert ledger["nodes"]["a"]["usd"] == pytest.approx(3.0) and ledger["nodes"]["b"]["usd"] == 0.0
    # Stopped since the last look: the gap is charged at the rate it ran at (the higher sum, never the lower).
    ledger = spend.accrue(ledger, {"a": spend.Seen(False, 0.1), "b": spend.Seen(True, 1.0)}, T0 + 2.5 * HOUR)
    assert ledger["nodes"]["a"]["usd"] == pytest.approx(5.0) and ledger["nodes"]["b"]["usd"] == pytest.approx(1.0)
    assert ledger["spent_usd"] == pytest.approx(6.0) and ledger["days"] == {"2026-12-02": pytest.approx(6.0)}


def test_a_new_month_starts_a_new_ledger_charged_from_the_last_look():
    end = dt.datetime(2026, 12, 31, 23, 0, tzinfo=dt.timezone.utc).timestamp()
    ledger = spend.accrue(None, {"a": spend.Seen(True, 1.0)}, end)
    ledger = spend.accrue(ledger, {"a": spend.Seen(True, 1.0)}, end + 0.5 * HOUR)
    ledger["alerted"], ledger["stopped"] = ["50"], ["a"]
    january = spend.accrue(ledger, {"a": spend.Seen(True, 1.0)}, end + 2 * HOUR)
    assert january["month"] == "2027-01" and january["alerted"] == [] and january["stopped"] == []
    assert january["spent_usd"] == pytest.approx(1.5)  # the look before midnight to the one after


def test_a_node_on_a_new_machine_is_not_charged_the_gap_before_it():
    ledger = spend.accrue(None, {"a": spend.Seen(True, 1.0, instance="vastai:1")}, T0)
    ledger = spend.accrue(ledger, {"a": spend.Seen(True, 1.0, instance="vastai:1")}, T0 + HOUR)
    # Destroyed, then rented again a day later by another `up`: the day between is not this node's.
    ledger = spend.accrue(ledger, {"a": spend.Seen(True, 1.0, instance="vastai:2")}, T0 + 25 * HOUR)
    assert ledger["spent_usd"] == pytest.approx(1.0) and ledger["nodes"]["a"]["instance"] == "vastai:2"
    ledger = spend.accrue(ledger, {"a": spend.Seen(True, 1.0, instance="vastai:2")}, T0 + 26 * HOUR)
    assert ledger["spent_usd"] == pytest.approx(2.0)


def test_aws_and_gcp_nodes_are_counted_at_their_share_of_the_month_and_never_block_up_by_running(tmp_path):
    spec = parse_spec(stack_estate("prod"))
    doc = spend.watch_document(spec, "gpu-estate-prod", {"burst": "i-0abc", "qwen": "vastai:7"}, {"burst": 0.73, "qwen": 0.3})
    nodes = {n["node"]: n for n in doc["nodes"]}
    assert "vps" not in nodes and nodes["burst"]["share"] == pytest.approx(80 / 730, abs=1e-4) and "share" not in nodes["qwen"]
    assert nodes["gcp-dev"]["instance"] == "unknown:gcp-dev"
    now = [T0]
    w = Watcher(doc, tmp_path / "ledger.json", client=None, clock=lambda: now[0], say=lambda _: None)
    look = w._look(nodes["burst"])
    assert (look.running, look.seen, look.instance) == (True, False, "i-0abc")
    assert look.rate == pytest.approx(0.73 * 80 / 730, abs=1e-4)  # $0.08/h: 80 of 730 hours at $0.73
    over = {**spend.new_ledger("2026-12"), "spent_usd": 600.0, "nodes": {n: {} for n in nodes}}
    raw = stack_estate("prod")
    for name, node in raw["nodes"].items():
        if node["provider"] in ("tensordock", "vastai", "runpod"):
            node.update(power="idle", idle_shutdown_minutes=node.get("idle_shutdown_minutes") or 30)
    assert spend.refusal(parse_spec(raw), over, T0) is None  # burst and gcp-dev run on: the watcher never stops them


def test_what_bills_without_a_machine_is_counted_at_its_estimate_and_never_stopped(tmp_path):
    """Prod's hosted services (Fly.io, Cloud Run), its serverless endpoint and its buckets: the budget counts
    them, so the watcher's month does too, each at its estimate spread over the month."""
    from core import pricing

    spec = parse_spec(stack_estate("prod"))
    doc = spend.watch_document(spec, "gpu-estate-prod", {}, {})
    est = pricing.estimate_estate(spec)
    entries = {n["node"]: n for n in doc["nodes"] if n["instance"].startswith(spend.ESTIMATED)}
    expected = {**{f"service:{s.service}": s.monthly_usd for s in est.services},
                **{f"serverless:{e.endpoint}": e.monthly_usd for e in est.endpoints},
                **{f"storage:{n}": b.monthly_usd for n, b in spec.storage.items()}}
    assert set(entries) == {k for k, v in expected.items() if v > 0} and "service:chat-fallback" in entries
    total = sum(e["hourly_usd"] for e in entries.values()) * 730
    assert total == pytest.approx(sum(expected.values()), abs=0.05)
    stops = []
    w = Watcher(doc, tmp_path / "ledger.json", client=None, clock=lambda: T0, say=lambda _: None)
    w._stop = lambda node: stops.append(node) or True
    fly = w._look(entries["service:chat-fallback"])
    assert (fly.running, fly.seen) == (True, False) and fly.rate == entries["service:chat-fallback"]["hourly_usd"]
    # A month over budget: the watcher stops what it can see, never what it only estimates.
    w.document = {**doc, "nodes": list(entries.values()), "budget_usd": 0.01}
    write_ledger(tmp_path / "ledger.json", {**spend.new_ledger(spend.month_of(T0)), "spent_usd": 1.0})
    w.run_once()
    assert stops == []


def test_each_threshold_is_posted_once_and_only_the_highest_of_several_passed_at_once():
    doc = document([], budget=100.0, daily=10.0)
    ledger = {**spend.new_ledger("2026-12"), "spent_usd": 85.0, "days": {"2026-12-02": 12.0}}
    alerts = spend.due_alerts(ledger, doc, T0)
    assert [(a.kind, a.key) for a in alerts] == [("threshold", "80"), ("daily", "2026-12-02")]
    assert "85% of the $100.00 monthly budget" in alerts[0].text and "$12.00 spent on 2026-12-02" in alerts[1].text
    ledger.update(alerted=["50", "80"], daily_alerted=["2026-12-02"])
    assert spend.due_alerts(ledger, doc, T0) == []


def test_over_budget_until_the_operator_resumes_the_month():
    ledger = {**spend.new_ledger("2026-12"), "spent_usd": 100.0}
    assert spend.over_budget(ledger, document([]), T0)
    assert not spend.over_budget(ledger, document([], resume="2026-12"), T0)
    assert spend.over_budget(ledger, document([], resume="2026-11"), T0)
    assert not spend.over_budget({**ledger, "spent_usd": 99.99}, document([]), T0)
    assert not spend.over_budget({**ledger, "month": "2026-11"}, document([]), T0)  # last month's ledger


def spend_raw(**spend_keys):
    node = {"provider": "runpod", "gpu": {"model": "rtx4090"}, "max_price_per_hour": 0.5, "hours_per_month": 40,
            "access": "direct", "workloads": {"ollama": {"models": ["tinyllama:1.1b"]}}}
    return {"nodes": {"pod": node, "lazy": {**node, "power": "idle", "idle_shutdown_minutes": 20},
                      "gw": {"provider": "host", "address": "127.0.0.1", "workloads": {"litellm": {}}}},
            "gateway": {"node": "gw", "deploy": "local", "port": 0, "aliases": {"fast": "tinyllama:1.1b"}},
            "budget": {"monthly_usd": 100}, "spend": {"alerts_percent": [50, 80], **spend_keys}}


def test_up_is_refused_over_the_budget_only_while_it_would_start_a_node():
    spec = parse_spec(spend_raw())
    over = {**spend.new_ledger("2026-12"), "spent_usd": 120.0, "nodes": {"pod": {}, "lazy": {}}}
    why = spend.refusal(spec, over, T0)
    assert why.startswith("$120.00 spent in 2026-12 has reached 100% of gpu-estate:budget.monthly_usd $100.00")
    assert "would start pod." in why and "gpu-estate:spend.resume_month to '2026-12'" in why
    assert spend.refusal(parse_spec(spend_raw(resume_month="2026-12")), over, T0) is None
    assert spend.refusal(spec, {**over, "spent_usd": 60.0}, T0) is None
    raw = spend_raw()
    raw["nodes"]["pod"]["power"] = "stopped"
    assert spend.refusal(parse_spec(raw), over, T0) is None  # idle and stopped nodes stay as they are
    # A node not watched yet is one `up` would rent, idle or not.
    assert "would start lazy" in spend.refusal(parse_spec(raw), {**over, "nodes": {"pod": {}}}, T0)


def test_the_spend_keys_are_checked_before_anything_with_their_key_paths():
    with pytest.raises(ConfigError, match=r"gpu-estate:spend.resume_month.*2026-13"):
        parse_spec(spend_raw(resume_month="2026-13"))
    with pytest.raises(ConfigError, match=r"gpu-estate:spend.alerts_percent\[1\].*never comes first \(got 120\)"):
        parse_spec(spend_raw(alerts_percent=[50, 120]))
    raw = spend_raw()
    del raw["gateway"]
    raw["nodes"]["gw"]["workloads"] = {}
    with pytest.raises(ConfigError, match=r"gpu-estate:spend: the spend watcher runs beside the gateway"):
        parse_spec(raw)


# --- the watcher against the loopback marketplaces --------------------------------------------------------


@pytest.fixture
def hook():
    h = FakeWebhook()
    yield h
    h.close()


def rent(cloud, label, **request):
    c = gpu_cloud.client(cloud)
    try:
        offer = c.offers(NodeRequest(gpu_model="rtx4090", **request))[0]
        return c.launch(offer, LaunchSpec(label=label, image="ollama/ollama:0.12.6", disk_gb=50, ports=(11434,),
                                          ssh_public_key=NODE_KEY))
    finally:
        c.close()


def status(cloud, iid):
    c = gpu_cloud.client(cloud)
    try:
        for _ in range(20):  # past the loopback's boot polls
            inst = c.get(iid)
            if inst.status is not Status.PENDING:
                return inst.status
        return inst.status
    finally:
        c.close()


@pytest.fixture
def estate(clouds):
    """A node on each marketplace, running, and the watch document naming them (plus one not rented yet)."""
    ids = {"td": rent("tensordock", "td"), "vast": rent("vastai", "vast"), "pod": rent("runpod", "pod")}
    for cloud, name in (("tensordock", "td"), ("vastai", "vast"), ("runpod", "pod")):
        assert status(cloud, ids[name]) is Status.RUNNING
    nodes = [{"node": "td", "instance": f"tensordock:{ids['td']}", "hourly_usd": 0.35},
             {"node": "vast", "instance": f"vastai:{ids['vast']}", "hourly_usd": 0.3},
             {"node": "pod", "instance": f"runpod:{ids['pod']}", "hourly_usd": 0.44},
             {"node": "later", "instance": "unknown:later", "hourly_usd": 0.5}]
    return clouds, ids, nodes


def test_the_watcher_alerts_at_each_threshold_and_stops_every_node_at_the_budget(estate, hook, tmp_path):
    clouds, ids, nodes = estate
    now = [T0]
    lines = []
    ledger_path = tmp_path / "ledger.json"
    w = Watcher(document(nodes, budget=100.0, daily=40.0), ledger_path, webhook=hook.url, clock=lambda: now[0],
                say=lines.append)
    first = w.run_once()
    assert first["spent_usd"] == 0.0 and hook.posts == []
    # The vendors now bill $10, $5 and $15 an hour: 2 h of it is $60, past 50% and the day's $40.
    clouds["tensordock"].bill(ids["td"], 10.0)
    clouds["vastai"].bill(ids["vast"], 5.0)
    clouds["runpod"].bill(ids["pod"], 15.0)
    now[0] += 2 * HOUR
    ledger = w.run_once()
    assert ledger["spent_usd"] == pytest.approx(60.0)
    assert ledger["nodes"]["vast"]["usd"] == pytest.approx(10.0) and ledger["nodes"]["later"]["usd"] == 0.0
    assert [p["estate"]["kind"] for p in hook.posts] == ["threshold", "daily"]
    assert hook.posts[0]["text"] == ("gpu-estate-test: $60.00 spent in 2026-12, 60% of the $100.00 monthly budget "
                                     "(alert at 50%)")
    assert hook.posts[0]["estate"]["spent_usd"] == 60.0 and read_ledger(ledger_path)["alerted"] == ["50"]
    # A refused post is posted again at the next look; nothing is posted twice.
    hook.failing = True
    now[0] += 0.75 * HOUR  # $82.50: past 80%
    assert w.run_once()["alerted"] == ["50"] and len(hook.posts) == 2
    hook.failing = False
    now[0] += 60
    assert w.run_once()["alerted"] == ["50", "80"] and hook.posts[-1]["estate"]["key"] == "80"
    assert len(hook.posts) == 3
    # Past 100%: every node found running is stopped at its vendor, and the stop is posted.
    now[0] += 0.75 * HOUR
    ledger = w.run_once()
    assert ledger["spent_usd"] > 100 and ledger["stopped"] == ["pod", "td", "vast"]
    assert hook.posts[-1]["estate"]["kind"] == "stop" and "stopped td, vast, pod" in hook.posts[-1]["text"]
    for cloud, name in (("tensordock", "td"), ("vastai", "vast"), ("runpod", "pod")):
        assert status(cloud, ids[name]) is Status.STOPPED
    # Stopped nodes cost nothing more; a node started behind the watcher's back is stopped again.
    spent, posts = ledger["spent_usd"], len(hook.posts)
    now[0] += HOUR
    assert w.run_once()["spent_usd"] == pytest.approx(spent) and len(hook.posts) == posts
    gpu_cloud.client("vastai").start(str(ids["vast"]))
    now[0] += 60
    w.run_once()
    assert status("vastai", ids["vast"]) is Status.STOPPED and "stopped vast" in hook.posts[-1]["text"]
    assert any(line.startswith("spend: vast: running at $5.000/h") for line in lines)


def test_a_resumed_month_is_watched_and_alerted_but_nothing_is_stopped(estate, hook, tmp_path):
    clouds, ids, nodes = estate
    now = [T0]
    w = Watcher(document(nodes, budget=10.0, resume="2026-12"), tmp_path / "ledger.json", webhook=hook.url,
                clock=lambda: now[0], say=lambda _: None)
    w.run_once()
    now[0] += 24 * HOUR
    ledger = w.run_once()
    assert ledger["spent_usd"] > 10 and ledger["stopped"] == [] and ledger["alerted"] == ["50", "80"]
    assert status("vastai", ids["vast"]) is Status.RUNNING


def test_the_month_up_resumed_stops_the_watcher_stopping_before_the_document_says_so(estate, tmp_path):
    """`up` writes the resumed month beside the ledger before any node starts; the watch document, which
    names it too, only arrives after the nodes. The watcher takes either."""
    clouds, ids, nodes = estate
    now = [T0]
    w = Watcher(document(nodes, budget=10.0), tmp_path / "ledger.json", webhook="", clock=lambda: now[0],
                say=lambda _: None)
    w.run_once()
    (tmp_path / spend.RESUME_FILE).write_text("2026-12\n")
    now[0] += 24 * HOUR
    assert w.run_once()["stopped"] == [] and status("vastai", ids["vast"]) is Status.RUNNING
    (tmp_path / spend.RESUME_FILE).write_text("\n")  # the operator took resume_month out again
    now[0] += 60
    assert w.run_once()["stopped"] == ["pod", "td", "vast"]


def test_a_vendor_that_cannot_be_asked_is_counted_at_its_launch_price_and_its_node_kept(estate, tmp_path, monkeypatch):
    clouds, ids, nodes = estate
    now = [T0]
    monkeypatch.setenv("VASTAI_API_URL", "http://127.0.0.1:9/api/v0")  # nothing listens there
    w = Watcher(document(nodes, budget=1.0), tmp_path / "ledger.json", webhook="", clock=lambda: now[0],
                say=lambda _: None)
    w.run_once()
    now[0] += 10 * HOUR
    ledger = w.run_once()
    assert ledger["nodes"]["vast"]["usd"] == pytest.approx(3.0) and ledger["nodes"]["vast"]["seen"] is False
    assert "vast" not in ledger["stopped"] and {"td", "pod"} <= set(ledger["stopped"])
    assert clouds["vastai"].instances[int(ids["vast"])]["intended_status"] == "running"


def test_the_watcher_as_shipped_runs_on_the_gateway_python_alone(estate, hook, tmp_path):
    """The modules a gateway host gets under lib/, run in isolated mode by the gateway's Python (LiteLLM's
    packages, no project on the path), with the webhook and keys from the environment as its unit gives."""
    clouds, ids, nodes = estate
    plan = plan_estate(parse_spec(stack_estate("prod")))
    files = gateway.gateway_files(plan, "model_list: []\n", {}, library=True,
                                  watch=document(nodes, budget=0.01))
    (tmp_path / gateway.SPEND_DOCUMENT).parent.mkdir(parents=True)
    (tmp_path / gateway.SPEND_DOCUMENT).write_text(files[gateway.SPEND_DOCUMENT])
    unpack_library(tmp_path / "lib")
    env = {k: os.environ[k] for k in ("TENSORDOCK_API_URL", "TENSORDOCK_API_TOKEN", "VASTAI_API_URL", "VASTAI_API_KEY",
                                      "RUNPOD_API_URL", "RUNPOD_API_KEY", "PATH")}
    ledger = tmp_path / "state" / spend.LEDGER_FILE
    write_ledger(ledger, spend.accrue(None, {n["node"]: spend.Seen(True, 1.0, instance=n["instance"]) for n in nodes[:3]},
                                      dt.datetime.now(dt.timezone.utc).timestamp() - HOUR))
    run = subprocess.run(
        [str(litellm_binary().parent / "python"), "-I", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); from agents.spend import main; sys.exit(main(sys.argv[2:]))",
         str(tmp_path / "lib"), "--document", str(tmp_path / gateway.SPEND_DOCUMENT), "--ledger", str(ledger)],
        capture_output=True, text=True, timeout=120, env={**env, "ESTATE_SPEND_WEBHOOK": hook.url})
    assert run.returncode == 0, run.stderr[-3000:]
    assert read_ledger(ledger)["stopped"] == ["pod", "td", "vast"]
    assert [p["estate"]["kind"] for p in hook.posts] == ["stop", "threshold"]
    assert "spend: $" in run.stdout and "(over: nodes are kept stopped)" in run.stdout


# --- the wake hook and the program ------------------------------------------------------------------------


def test_the_wake_hook_wakes_nothing_while_the_month_is_over_the_budget(clouds, tmp_path):
    pod = rent("runpod", "pod")
    c = gpu_cloud.client("runpod")
    c.stop(pod)
    c.close()
    doc = document([], budget=10.0)
    (tmp_path / spend.LOCAL_DOCUMENT_FILE).write_text(json.dumps(doc))
    write_ledger(tmp_path / spend.LEDGER_FILE, {**spend.new_ledger(spend.month_of(dt.datetime.now().timestamp())),
                                                "spent_usd": 11.0})
    wake = {"aliases": {"fast": {"timeout": 1, "fallbacks": False, "retry_after": 30,
                                 "nodes": [{"node": "pod", "instance": f"runpod:{pod}", "url": "http://127.0.0.1:9"}]}},
            "spend": {"document": spend.LOCAL_DOCUMENT_FILE, "ledger": spend.LEDGER_FILE}}
    (tmp_path / "wake.json").write_text(json.dumps(wake))
    with pytest.raises(Asleep, match="stays stopped: this month's spend has reached the budget"):
        Waker.from_file(tmp_path / "wake.json").ensure("fast")
    assert clouds["runpod"].pods[pod]["desiredStatus"] == "EXITED"
    doc["resume_month"] = read_ledger(tmp_path / spend.LEDGER_FILE)["month"]
    (tmp_path / spend.LOCAL_DOCUMENT_FILE).write_text(json.dumps(doc))
    with pytest.raises(Asleep, match="did not answer within"):  # started; its server never answers here
        Waker.from_file(tmp_path / "wake.json").ensure("fast")
    assert clouds["runpod"].pods[pod]["desiredStatus"] == "RUNNING"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_the_watcher_units_pass_systemd_analyze_and_only_the_timer_is_started(tmp_path):
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\n")
    docker.chmod(0o755)
    plan = plan_estate(parse_spec(stack_estate("prod")))
    units = gateway.gateway_units(plan, {}, docker=str(docker))
    service, timer = units[gateway.SPEND_UNIT], units[gateway.SPEND_TIMER]
    assert "--entrypoint python" in service and "-m agents.spend" in service
    assert "--env-file /etc/estate/gateway/gateway.env" in service and "OnUnitActiveSec=10min" in timer
    for name in (gateway.SPEND_UNIT, gateway.SPEND_TIMER):
        (tmp_path / name).write_text(units[name])
    run = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in (gateway.SPEND_UNIT,
                                                                                        gateway.SPEND_TIMER))],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def prod_config(**extra):
    return {**stack_config("prod"), "gpu-estate:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nk\n-----END "
            "OPENSSH PRIVATE KEY-----", "gpu-estate:spendWebhook": "https://hooks.example.com/services/T0/B0/xyz",
            "gpu-estate:vastaiApiKey": "v" * 64, "gpu-estate:tensordockToken": "t" * 40,
            "gpu-estate:runpodApiKey": "rpa_" + "R" * 40, **extra}


def test_prod_deploys_the_watcher_with_its_webhook_and_keys_in_the_secret_env_file_only():
    import base64

    mocks = run_program(prod_config(), stack="prod")
    deploy = mocks.named("gateway-deploy").inputs["stdin"]
    assert "/etc/systemd/system/estate-spend.timer" in deploy and " agents/spend.py " in deploy
    # The timer is enabled and started; its one-shot service is left to it (never started inside `up`).
    enabled = [line for line in deploy.splitlines() if line.startswith("systemctl enable")]
    assert "systemctl enable estate-spend.timer" in enabled
    assert not [line for line in deploy.splitlines() if line.startswith("systemctl") and "estate-spend.service" in line]
    body = deploy.split("cat > /etc/estate/gateway/spend/watch.json.tmp <<'")[1]
    marker, body = body.split("'\n", 1)
    watch = json.loads(body.split(f"\n{marker}\n", 1)[0])
    assert watch["budget_usd"] == 500 and watch["alerts_percent"] == [50, 80] and watch["daily_usd"] == 25
    assert {n["node"] for n in watch["nodes"]} == {"inference", "training", "qwen", "batch", "burst", "gcp-dev",
                                                   "service:llama-l4", "service:chat-fallback",
                                                   "serverless:goblin-inference", "storage:models"}
    stdin = dict(line.split(" ", 1) for line in mocks.named("gateway-secrets").inputs["stdin"].splitlines())
    env = base64.b64decode(stdin["/etc/estate/gateway/gateway.env"]).decode()
    assert "ESTATE_SPEND_WEBHOOK=https://hooks.example.com/services/T0/B0/xyz\n" in env and "VASTAI_API_KEY=" in env
    assert "hooks.example.com" not in deploy and "v" * 64 not in deploy


def test_a_webhook_that_is_not_a_url_is_refused_without_showing_it():
    with pytest.raises(Exception) as err:
        run_program(prod_config(**{"gpu-estate:spendWebhook": "https://x.example/a\nLITELLM_MASTER_KEY=own"}),
                    stack="prod")
    assert "gpu-estate:spendWebhook: not an http(s) URL" in str(err.value) and "own" not in str(err.value)


def test_the_program_refuses_up_in_a_month_over_the_budget_before_any_resource(tmp_path, monkeypatch):
    monkeypatch.delenv("ESTATE_SPEND_EVERY_SECONDS", raising=False)  # an engine test's, in this process
    state = tmp_path / ".estate" / "sandbox" / "gateway"
    month = spend.month_of(dt.datetime.now().timestamp())
    write_ledger(state / spend.LEDGER_FILE, {**spend.new_ledger(month), "spent_usd": 250.0,
                                             "nodes": {n: {} for n in ("inference", "qwen", "batch", "vm")}})
    config = stack_config("sandbox")
    with pytest.raises(Exception) as err:
        run_program(config, stack="sandbox", workdir=tmp_path)
    assert f"gpu-estate:spend.resume_month: $250.00 spent in {month} has reached 100%" in str(err.value)
    assert "would start inference, qwen, vm" in str(err.value)
    resumed = {**config, "gpu-estate:spend": {**config["gpu-estate:spend"], "resume_month": month}}
    mocks = run_program(resumed, stack="sandbox", workdir=tmp_path)
    assert (state / spend.RESUME_FILE).read_text() == f"{month}\n"  # for the watcher, before any node starts
    watcher = mocks.named("gateway-spend")
    assert json.loads(watcher.inputs["document"])["resume_month"] == month
    assert watcher.inputs["every_seconds"] == 60.0


def test_the_ledger_is_read_over_ssh_with_the_pinned_host_key_only(sshd, tmp_path):
    """What `up` reads from a gateway host: the file's text, None when the watcher has written none, and
    nothing from a server whose host key is not the pinned one; and the resumed month it writes there."""
    from providers.ssh_forward import ForwardError, read_file, write_file

    ledger = tmp_path / spend.LEDGER_FILE
    where = ("127.0.0.1", sshd.port, sshd.user, sshd.private_key)
    known = str(tmp_path / "known_hosts")
    assert read_file(*where, str(ledger), known, host_key=sshd.host_public_key) is None
    write_ledger(ledger, {**spend.new_ledger("2026-12"), "spent_usd": 512.5})
    assert json.loads(read_file(*where, str(ledger), known, host_key=sshd.host_public_key))["spent_usd"] == 512.5
    # Trusted on first use without a pin, then held to that key.
    assert json.loads(read_file(*where, str(ledger), known))["spent_usd"] == 512.5
    assert sshd.host_public_key.split()[1] in (tmp_path / "known_hosts").read_text()
    write_file(*where, str(tmp_path / "spend" / spend.RESUME_FILE), "2026-12\n", known, host_key=sshd.host_public_key)
    assert read_file(*where, str(tmp_path / "spend" / spend.RESUME_FILE), known) == "2026-12\n"
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXNhbmRib3hrZXk="
    with pytest.raises(ForwardError, match="failed"):
        read_file(*where, str(ledger), known, host_key=other)


def test_the_local_watcher_survives_a_failed_look_and_never_resets_a_ledger_it_cannot_read(tmp_path):
    """A ledger it cannot parse is not taken for an empty month (that would forget the spend): the look fails,
    is reported, and the next one succeeds once the ledger is readable again."""
    import sys
    import time

    doc = tmp_path / "watch.json"
    doc.write_text(json.dumps(document([], budget=10.0)))
    ledger = tmp_path / spend.LEDGER_FILE
    ledger.write_text("{not json")
    log = tmp_path / "spend.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "agents.spend", "--document", str(doc), "--ledger", str(ledger),
                                 "--every", "0.2"], stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if "this look failed (JSONDecodeError" in log.read_text():
                break
            time.sleep(0.1)
        assert "this look failed (JSONDecodeError" in log.read_text()
        assert ledger.read_text() == "{not json" and proc.poll() is None
        write_ledger(ledger, {**spend.new_ledger(spend.month_of(time.time())), "spent_usd": 4.0,
                              "nodes": {"gone": {"usd": 4.0, "at": time.time(), "running": False}}})
        for _ in range(100):
            if "spend: $4.00 of $10.00" in log.read_text():
                break
            time.sleep(0.1)
        assert "spend: $4.00 of $10.00" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_failed_webhook_post_is_logged_without_the_webhook_path(estate, tmp_path):
    """A Slack/Discord/ntfy webhook's path is its secret; a connection error's text names the whole URL."""
    clouds, ids, nodes = estate
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    secret = "/services/T0PLANTED/B0PLANTED/planted-webhook-path-secret"
    now, lines = [T0], []
    w = Watcher(document(nodes, budget=10.0), tmp_path / "ledger.json", webhook=f"http://127.0.0.1:{port}{secret}",
                clock=lambda: now[0], say=lines.append)
    w.run_once()
    now[0] += 24 * HOUR
    assert w.run_once()["alerted"] == []  # not posted: kept for the next look
    failed = [line for line in lines if "webhook post failed" in line]
    assert failed and all("ConnectionError posting to 127.0.0.1" in line for line in failed)
    assert not any("planted" in line for line in lines)
