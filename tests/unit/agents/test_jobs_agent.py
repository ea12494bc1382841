"""The job agent the spend watcher runs: against the loopback TensorDock (its instances, their deletes) and
moto's real S3 server (the status objects), with the clock driven by the test. A job whose command ended is
released; one past max_hours or max_usd is marked capped and released; each delete is verified; one within
its caps, or whose vendor cannot be asked, is left running."""
import json

import pytest

from agents.jobs import JobAgent
from agents.spend import Watcher
from core.pricing import NodeRequest
from providers import gpu_cloud
from providers.gpu_cloud import LaunchSpec, Status

T0 = 1_800_000_000.0
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFXdBfpWUE7y0nZ8rsibV0rc/1JxweHTokQjkgvrZxWD"


def rent(label):
    with gpu_cloud.client("tensordock") as c:
        offer = c.offers(NodeRequest(gpu_model="rtx4090"))[0]
        return "tensordock:" + c.launch(offer, LaunchSpec(label=label, image="ubuntu2404", disk_gb=50,
                                                           ssh_public_key=KEY)), offer.price_per_hour


def entry(name, instance, price, s3, **more):
    """The job's watch entry (core.jobs.watch_entry as providers/job_watch.py writes it): the agent finds the
    machine by its label on the job's clouds (``instance`` is the machine the test rented with that label)."""
    return {"job": name, "clouds": [instance.partition(":")[0]], "hourly_usd": price, "created_at": T0, "max_hours": 2.0,
            "max_usd": 100.0, "label": f"l-{name}", "run": "1", "bucket": "models", "endpoint": s3.endpoint,
            "region": "us-east-1", "status_prefix": f"estate-jobs/{name}", **more}


def put_status(s3, name, state, **more):
    s3.client().put_object(Bucket="models", Key=f"estate-jobs/{name}/status.json",
                           Body=json.dumps({"state": state, "started_at": T0, **more}).encode())


def read_status(s3, name):
    return json.loads(s3.client().get_object(Bucket="models", Key=f"estate-jobs/{name}/status.json")["Body"].read())


def agent(s3, names, now, said):
    keys = {n: {"access_key": s3.access_key, "secret_key": s3.secret_key} for n in names}
    return JobAgent(keys=keys, clock=lambda: now, say=said.append, poll=0.05)


def listed(instance):
    with gpu_cloud.client("tensordock") as c:
        inst = c.get(instance.split(":", 1)[1])
    return inst is not None and inst.status is not Status.GONE


def test_finished_and_capped_jobs_are_released_and_the_rest_left(clouds, s3):
    done, done_price = rent("l-done")
    slow, slow_price = rent("l-slow")
    dear, dear_price = rent("l-dear")
    fine, fine_price = rent("l-fine")
    put_status(s3, "done", "succeeded", exit_code=0)
    put_status(s3, "slow", "running")
    put_status(s3, "fine", "running")
    said = []
    jobs = [entry("done", done, done_price, s3), entry("slow", slow, slow_price, s3),
            entry("dear", dear, dear_price, s3, max_hours=100.0, max_usd=dear_price * 0.5),
            entry("fine", fine, fine_price, s3, max_hours=10.0)]
    seen = agent(s3, ["done", "slow", "dear", "fine"], T0 + 2.5 * 3600, said).look(jobs)
    # 2.5 h in: 'done' ended, 'slow' passed max_hours 2, 'dear' passed max_usd (half an hour's price).
    assert [listed(i) for i in (done, slow, dear, fine)] == [False, False, False, True]
    assert {k: v.running for k, v in seen.items()} == {"job:done": False, "job:slow": False, "job:dear": False,
                                                       "job:fine": True}
    assert read_status(s3, "done")["state"] == "succeeded"  # a finished job's own status is kept
    slow_status, dear_status = read_status(s3, "slow"), read_status(s3, "dear")
    assert slow_status["state"] == "capped" and "max_hours 2.0 reached" in slow_status["reason"]
    assert dear_status["state"] == "capped" and "max_usd" in dear_status["reason"]
    assert any("deleted; it bills no more" in line for line in said)


def test_a_delete_the_vendor_does_not_confirm_is_said_and_tried_again(clouds, s3, monkeypatch):
    monkeypatch.setenv("ESTATE_JOB_DELETE_SECONDS", "0.3")
    job, price = rent("l-stuck")
    put_status(s3, "stuck", "failed", exit_code=2)
    td = clouds["tensordock"]
    td.inject("status", count=50, method="DELETE", status=500)
    said = []
    seen = agent(s3, ["stuck"], T0 + 60, said).look([entry("stuck", job, price, s3)])
    assert listed(job) and seen["job:stuck"].running
    assert any("cannot ask tensordock" in line or "not confirmed" in line for line in said)
    td.faults.clear()
    agent(s3, ["stuck"], T0 + 120, said).look([entry("stuck", job, price, s3)])
    assert not listed(job)


def test_the_caps_hold_without_the_bucket(clouds, s3):
    job, price = rent("l-blind")
    said = []
    JobAgent(keys={}, clock=lambda: T0 + 3 * 3600, say=said.append, poll=0.05).look([entry("blind", job, price, s3)])
    assert not listed(job)
    assert any("only its caps are watched" in line for line in said)


def watching(s3, tmp_path, name, budget, **caps):
    """A running job's machine, its watch entry (with its bucket key) in the watcher's jobs directory, and the
    watch document."""
    job, price = rent(f"l-{name}")
    put_status(s3, name, "running")
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir(exist_ok=True)
    (jobs_dir / f"{name}.json").write_text(json.dumps({**entry(name, job, price, s3, **caps), "key": {
        "access_key": s3.access_key, "secret_key": s3.secret_key}}))
    return job, {"version": 1, "stack": "t", "budget_usd": budget, "alerts_percent": [], "stop_percent": 100,
                 "nodes": []}


def test_the_spend_watcher_runs_the_agent_and_charges_the_job(clouds, s3, tmp_path, monkeypatch):
    job, doc = watching(s3, tmp_path, "ledger", 1000.0)
    now = [T0 + 600]
    watcher = Watcher(doc, tmp_path / "ledger.json", clock=lambda: now[0], say=lambda _l: None,
                      jobs_dir=tmp_path / "jobs")
    watcher.run_once()
    now[0] = T0 + 1800
    ledger = watcher.run_once()
    assert listed(job)
    with gpu_cloud.client("tensordock") as c:
        billed = c.get(job.split(":", 1)[1]).price_per_hour  # the vendor's billed rate, as for nodes
    assert ledger["nodes"]["job:ledger"]["usd"] == pytest.approx(billed * (1800 - 600) / 3600, rel=1e-3)
    now[0] = T0 + 3 * 3600
    watcher.run_once()
    assert not listed(job)


def test_a_month_over_budget_caps_a_running_job(clouds, s3, tmp_path, monkeypatch):
    job, doc = watching(s3, tmp_path, "over", 10.0, max_hours=100.0, max_usd=1000.0)
    spent = {"gone": {"usd": 11.0, "at": T0, "running": False, "rate": 1.0, "instance": "tensordock:td-0"}}
    ledger = {"version": 1, "month": "2027-01", "spent_usd": 11.0, "nodes": spent, "days": {}, "alerted": [],
              "daily_alerted": [], "stopped": [], "updated": None}
    (tmp_path / "ledger.json").write_text(json.dumps(ledger))
    Watcher(doc, tmp_path / "ledger.json", clock=lambda: T0 + 600, say=lambda _l: None,
            jobs_dir=tmp_path / "jobs").run_once()
    assert not listed(job)
    assert "stop threshold" in read_status(s3, "over")["reason"]


def test_an_unreadable_status_object_keeps_its_job_and_the_round_goes_on(clouds, s3):
    torn, torn_price = rent("l-torn")
    listy, listy_price = rent("l-listy")
    slow, slow_price = rent("l-slow2")
    s3.client().put_object(Bucket="models", Key="estate-jobs/torn/status.json", Body=b'{"state": "runn')
    s3.client().put_object(Bucket="models", Key="estate-jobs/listy/status.json", Body=b'["succeeded"]')
    put_status(s3, "slow2", "running")
    said = []
    jobs = [entry("torn", torn, torn_price, s3, max_hours=10.0), entry("listy", listy, listy_price, s3, max_hours=10.0),
            entry("slow2", slow, slow_price, s3)]
    seen = agent(s3, ["torn", "listy", "slow2"], T0 + 2.5 * 3600, said).look(jobs)
    # The two unreadable statuses are said and their jobs kept (only their caps watched); the job after
    # them still reaches its max_hours cap in the same round.
    assert [listed(i) for i in (torn, listy, slow)] == [True, True, False]
    assert seen["job:torn"].running and seen["job:listy"].running and not seen["job:slow2"].running
    assert any("torn: cannot read its status (JSONDecodeError)" in line for line in said)
    assert any("listy: its status object is not a JSON object (list)" in line for line in said)
    assert not any(s3.secret_key in line for line in said)


def test_an_over_budget_round_asks_again_only_about_jobs_still_running(clouds, s3, tmp_path, monkeypatch):
    job, doc = watching(s3, tmp_path, "over2", 10.0, max_hours=100.0, max_usd=1000.0)
    done, done_price = rent("l-done2")
    put_status(s3, "done2", "succeeded", exit_code=0)
    (tmp_path / "jobs" / "done2.json").write_text(json.dumps({**entry("done2", done, done_price, s3), "key": {
        "access_key": s3.access_key, "secret_key": s3.secret_key}}))
    ledger = {"version": 1, "month": "2027-01", "spent_usd": 11.0, "days": {}, "alerted": [], "daily_alerted": [],
              "nodes": {"gone": {"usd": 11.0, "at": T0, "running": False, "rate": 1.0, "instance": "tensordock:td-0"}},
              "stopped": [], "updated": None}
    (tmp_path / "ledger.json").write_text(json.dumps(ledger))
    looked = []
    look = JobAgent.look
    monkeypatch.setattr(JobAgent, "look", lambda self, jobs, over_budget=False: (
        looked.append((sorted(j["job"] for j in jobs), over_budget)), look(self, jobs, over_budget))[1])
    Watcher(doc, tmp_path / "ledger.json", clock=lambda: T0 + 600, say=lambda _l: None,
            jobs_dir=tmp_path / "jobs").run_once()
    assert not listed(job) and not listed(done)
    # The job that ended is released by the round's first look; the over-budget look asks only about the
    # one still running, and caps it.
    assert looked == [(["done2", "over2"], False), (["over2"], True)]
    assert "stop threshold" in read_status(s3, "over2")["reason"]
    assert read_status(s3, "done2")["state"] == "succeeded"


def test_an_entry_written_before_its_machine_is_rented_watches_the_machine_once_it_is(clouds, s3, tmp_path):
    """The entry comes first (the job's resource depends on it): the agent finds the machine by its label."""
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    early = {**entry("early", "tensordock:-", 0.4, s3), "key": {"access_key": s3.access_key,
                                                                "secret_key": s3.secret_key}}
    (jobs_dir / "early.json").write_text(json.dumps(early))
    (jobs_dir / "torn.json").write_text('{"job": "torn", "lab')  # a torn entry is said and skipped
    doc = {"version": 1, "stack": "t", "budget_usd": 1000.0, "alerts_percent": [], "stop_percent": 100, "nodes": []}
    said = []
    ledger = Watcher(doc, tmp_path / "ledger.json", clock=lambda: T0 + 60, say=said.append,
                     jobs_dir=jobs_dir).run_once()
    assert ledger["nodes"]["job:early"]["running"] is False  # nothing rented yet: nothing to release
    assert any("torn.json: cannot read this watch entry" in line for line in said)
    job, _ = rent("l-early")
    put_status(s3, "early", "running")
    Watcher(doc, tmp_path / "ledger.json", clock=lambda: T0 + 600, say=said.append, jobs_dir=jobs_dir).run_once()
    assert listed(job)  # within its caps
    Watcher(doc, tmp_path / "ledger.json", clock=lambda: T0 + 2.5 * 3600, say=said.append,
            jobs_dir=jobs_dir).run_once()
    assert not listed(job)  # max_hours 2, counted from the entry's created_at
    assert read_status(s3, "early")["state"] == "capped"


def test_a_vastai_job_machine_stopped_under_its_job_is_preempted_and_deleted(clouds, s3):
    """An interruptible bid outbid: the loopback Vast.ai stops the instance (it stays listed, billing its disk).
    The command in it is gone: the agent writes ``preempted`` naming the machine and deletes it at once,
    long before any cap."""
    with gpu_cloud.client("vastai") as c:
        offer = c.offers(NodeRequest(gpu_model="rtx4090", spot=True))[0]
        iid = c.launch(offer, LaunchSpec(label="l-spot", image="x/y:1", disk_gb=20, bid_per_hour=offer.price_per_hour))
    instance = f"vastai:{iid}"
    put_status(s3, "spot", "running", instance=instance)
    clouds["vastai"].outbid(int(iid), 0.9)
    said = []
    seen = agent(s3, ["spot"], T0 + 60, said).look([entry("spot", instance, offer.price_per_hour, s3)])
    assert not clouds["vastai"].alive() and seen["job:spot"].running is False
    final = read_status(s3, "spot")
    assert (final["state"], final["instance"]) == ("preempted", instance) and "outbid" in final["reason"]
    assert "capped_at" not in final


def test_a_runner_lost_on_a_running_machine_is_preempted_and_its_machine_deleted(clouds, s3):
    """A Vast.ai bid paused and resumed between two looks, or a host reboot: the machine runs, its runner is
    dead (nothing restarts it) and its last heartbeat is hours old. The agent writes ``preempted`` naming the
    machine and the heartbeat's age and deletes the machine, long before max_hours; a runner whose heartbeat
    is late by less than ``lost_after`` (a slow but live one) and a job from before heartbeats are left."""
    from core.jobs import lost_after
    dead, price = rent("l-dead")
    slow, _ = rent("l-slowbeat")
    old, _ = rent("l-oldrunner")
    now = T0 + 5 * 3600
    put_status(s3, "dead", "running", instance=dead, updated_at=T0 + 3600)  # 4 h old
    put_status(s3, "slowbeat", "running", instance=slow, updated_at=now - lost_after(60.0) + 30)
    put_status(s3, "oldrunner", "running", instance=old, updated_at=T0 + 3600)
    said = []
    jobs = [entry("dead", dead, price, s3, max_hours=24.0, heartbeat_seconds=60.0),
            entry("slowbeat", slow, price, s3, max_hours=24.0, heartbeat_seconds=60.0),
            entry("oldrunner", old, price, s3, max_hours=24.0)]  # no heartbeat_seconds: written before heartbeats
    seen = agent(s3, ["dead", "slowbeat", "oldrunner"], now, said).look(jobs)
    assert [listed(i) for i in (dead, slow, old)] == [False, True, True]
    assert not seen["job:dead"].running and seen["job:slowbeat"].running
    final = read_status(s3, "dead")
    assert (final["state"], final["instance"]) == ("preempted", dead)
    assert "stopped answering" in final["reason"] and "240 min old" in final["reason"] and dead in final["reason"]


def test_a_machine_with_no_status_long_after_its_entry_is_counted_lost(clouds, s3):
    from core.jobs import NO_STATUS_SECONDS
    mute, price = rent("l-mute")
    said = []
    early = agent(s3, ["mute"], T0 + NO_STATUS_SECONDS - 60, said).look(
        [entry("mute", mute, price, s3, max_hours=24.0, heartbeat_seconds=60.0)])
    assert listed(mute) and early["job:mute"].running  # still within the create's own wait
    agent(s3, ["mute"], T0 + NO_STATUS_SECONDS + 60, said).look(
        [entry("mute", mute, price, s3, max_hours=24.0, heartbeat_seconds=60.0)])
    assert not listed(mute)
    final = read_status(s3, "mute")
    assert final["state"] == "preempted" and "never answered" in final["reason"]


def test_an_unreadable_bucket_never_counts_a_runner_lost(clouds, s3):
    job, price = rent("l-blind2")
    said = []
    JobAgent(keys={}, clock=lambda: T0 + 5 * 3600, say=said.append, poll=0.05).look(
        [entry("blind2", job, price, s3, max_hours=24.0, heartbeat_seconds=60.0)])
    assert listed(job)


def test_a_final_status_written_during_the_delete_is_not_overwritten(clouds, s3, monkeypatch):
    """The runner's own end (``succeeded``) lands between the agent's first ``capped`` write and the machine's
    delete: the agent reads the status again and keeps it (a job-made model resolves from it)."""
    job, price = rent("l-race")
    put_status(s3, "race", "running", instance=job)
    said = []
    a = agent(s3, ["race"], T0 + 2.5 * 3600, said)
    delete = a._delete

    def delete_while_the_runner_ends(c, j, iid):
        put_status(s3, "race", "succeeded", instance=job, exit_code=0)
        return delete(c, j, iid)

    monkeypatch.setattr(a, "_delete", delete_while_the_runner_ends)
    a.look([entry("race", job, price, s3)])
    assert not listed(job)
    assert read_status(s3, "race")["state"] == "succeeded"
    assert any("wrote succeeded meanwhile" in line for line in said)
