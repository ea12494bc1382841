"""The job agent: each look of the spend watcher releases the machines of GPU jobs that ended or passed a cap.

The spend watcher (``agents/spend.py``) already runs on a timer beside the gateway with the marketplaces'
keys, whether or not anyone runs `pulumi up`: it is what releases a job's machine. Each job has a watch
entry of its own beside the watcher's document (``<document dir>/jobs/<file>.json``, 0600, written by the
job's ``job:Watch`` resource before its machine is rented, ``providers/job_watch.py``): its label, the clouds
it may be rented on, its $/h, when it was written, its caps, where its status object is and the job's own
bucket key. Each look, for every entry, this agent:

- asks each of the job's clouds for the machines carrying its label (``find``); none needs nothing (not
  rented yet, or released);
- reads the run's status object in the bucket (with the entry's bucket key); a final status
  (``succeeded``/``failed``) deletes the machine;
- a machine its vendor stopped under a running job (a Vast.ai bid outbid: the container and the command
  in it are stopped, its disk still bills) is a preemption: it writes the status ``preempted`` (naming the
  machine) and deletes it; the job's ``on_preemption`` then says whether the next `up` resumes it;
- a running machine whose runner is lost (``core.jobs.runner_lost``: a non-final status whose heartbeat is
  older than ``core.jobs.lost_after`` of the entry's ``heartbeat_seconds``, or no status object long after
  the entry was written) is a preemption too: the runner died with the machine up (a Vast.ai bid paused and
  resumed on its own, a host reboot) and nothing restarts it; it writes ``preempted`` naming the machine and
  the heartbeat's age, and deletes it;
- otherwise charges the time since the entry was written at the machine's $/h: at ``max_hours`` or
  ``max_usd`` it writes the status ``capped`` (with the reason), deletes the machine and writes ``capped``
  again once it is gone (the runner's last heartbeat may land in between), unless the status read again is
  final by then (the command's own end stands);
- at the month's stop threshold (``spend.stop_percent``, unless the month is resumed) caps every running job;
- verifies each delete: the vendor must stop listing the machine within ``ESTATE_JOB_DELETE_SECONDS``
  (default 120), else the next look deletes again and says so.

A vendor or bucket that cannot be asked is said and asked again next look; the time caps never depend on
the bucket answering. It also returns each job machine's look, so the month's ledger counts what jobs cost.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

from core.jobs import JobState, runner_lost
from core.spend import Seen
from providers import gpu_cloud
from providers.gpu_cloud import Status
from providers.http import CloudError
from providers.s3 import S3, S3Error
from providers.wait import WaitTimeout, wait_for, within

FINAL = (JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.CAPPED.value)


def delete_seconds() -> float:
    return float(os.environ.get("ESTATE_JOB_DELETE_SECONDS", "120"))


class JobAgent:
    def __init__(self, client: Callable[[str], gpu_cloud.GpuCloud] = gpu_cloud.client,
                 keys: Optional[Mapping[str, Mapping[str, str]]] = None, clock: Callable[[], float] = time.time,
                 say: Callable[[str], None] = print, poll: float = 1.0):
        self._client, self._clock, self._say, self._poll = client, clock, say, poll
        self.keys = dict(keys or {})
        """Job -> bucket key, for entries that carry none (an entry's own ``key`` comes first)."""

    def _bucket(self, job: Mapping[str, Any]) -> Optional[S3]:
        key = job.get("key") or self.keys.get(job["job"])
        if not key:
            return None
        return S3(job["bucket"], key["access_key"], key["secret_key"], endpoint=job.get("endpoint"),
                  region=job.get("region") or "us-east-1")

    def _status(self, job: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """The run's status object; ``{}`` when the bucket holds none, None when it cannot be read."""
        bucket = self._bucket(job)
        if bucket is None:
            self._say(f"jobs: {job['job']}: no bucket key in its watch entry; only its caps are watched")
            return None
        try:
            data = bucket.get(f"{job['status_prefix']}/status.json")
            status = json.loads(data) if data else {}
        except S3Error as err:
            self._say(f"jobs: {job['job']}: cannot read its status ({err}); only its caps are watched this look")
            return None
        except Exception as err:  # noqa: BLE001 - a torn read, bad JSON, a reset: this job is unread, the round goes on
            # Only the error's type: a transport error's text can carry the signed request.
            self._say(f"jobs: {job['job']}: cannot read its status ({type(err).__name__}); "
                      "only its caps are watched this look")
            return None
        if not isinstance(status, dict):
            self._say(f"jobs: {job['job']}: its status object is not a JSON object ({type(status).__name__}); "
                      "only its caps are watched this look")
            return None
        return status

    def _write_end(self, job: Mapping[str, Any], status: Optional[Mapping[str, Any]], reason: str,
                   instance: str, state: JobState = JobState.CAPPED) -> None:
        bucket = self._bucket(job)
        if bucket is None:
            return
        doc = {**(status or {}), "state": state.value, "reason": reason, "finished_at": self._clock(),
               "label": job.get("label"), "run": job.get("run"), "instance": instance,
               "started_at": (status or {}).get("started_at") or job.get("created_at")}
        if state is JobState.CAPPED:
            doc["capped_at"] = self._clock()
        try:
            bucket.put(f"{job['status_prefix']}/status.json", json.dumps(doc, sort_keys=True).encode(), "application/json")
        except (S3Error, OSError) as err:
            self._say(f"jobs: {job['job']}: could not write its capped status ({err})")

    def _delete(self, c: gpu_cloud.GpuCloud, job: Mapping[str, Any], iid: str) -> bool:
        try:
            c.terminate(iid)
            wait_for(lambda: c.get(iid), lambda i: i is None or i.status is Status.GONE, within(delete_seconds()),
                     self._poll, f"{c.name} instance {iid} gone")
            return True
        except (CloudError, WaitTimeout) as err:
            self._say(f"jobs: {job['job']}: delete of {c.name} instance {iid} not confirmed ({err}); "
                      "deleting again next look")
            return False

    def look(self, jobs: List[Mapping[str, Any]], over_budget: bool = False) -> Dict[str, Seen]:
        """One look at every job; each job machine's ``Seen`` for the month's ledger, by ``job:<name>``. With
        ``over_budget`` (the month reached the spend watcher's stop threshold) every running job is capped."""
        seen: Dict[str, Seen] = {}
        for job in jobs:
            name, rate = job["job"], float(job.get("hourly_usd") or 0.0)
            for cloud in job.get("clouds") or []:
                try:
                    with self._client(cloud) as c:
                        machines = c.find(job["label"])
                        for inst in machines:
                            seen[f"job:{name}"] = self._look_at(c, job, inst, over_budget)
                except CloudError as err:
                    self._say(f"jobs: {name}: cannot ask {cloud}: {err}; counted as running at ${rate:.3f}/h")
                    seen.setdefault(f"job:{name}", Seen(True, rate, seen=False))
                except Exception as err:  # noqa: BLE001 - one job's surprise must not cost the others their look
                    self._say(f"jobs: {name}: look failed ({type(err).__name__}); counted as running at ${rate:.3f}/h")
                    seen.setdefault(f"job:{name}", Seen(True, rate, seen=False))
            seen.setdefault(f"job:{name}", Seen(False, rate))  # not rented (yet), or released
        return seen

    def _look_at(self, c: gpu_cloud.GpuCloud, job: Mapping[str, Any], inst: gpu_cloud.Instance,
                 over_budget: bool) -> Seen:
        """One machine carrying the job's label: released when the command ended or a cap is reached."""
        name, iid, instance = job["job"], inst.id, f"{c.name}:{inst.id}"
        rate = float(inst.price_per_hour or job.get("hourly_usd") or 0.0)
        now = self._clock()
        status = self._status(job)
        state = (status or {}).get("state")
        hours = max(0.0, now - float(job.get("created_at") or now)) / 3600.0
        reason, ending = "", JobState.CAPPED
        # An unread bucket (None) judges no runner: only the caps hold this look.
        lost = "" if status is None else runner_lost(status, job.get("heartbeat_seconds"),
                                                      float(job.get("created_at") or now), now, instance)
        if state in FINAL:
            reason = f"the command ended ({state}, exit {status.get('exit_code')})"
        elif inst.status is Status.STOPPED:
            reason = f"its machine was stopped by {c.name} ({inst.detail or 'stopped'}): preempted"
            ending = JobState.PREEMPTED
        elif lost:
            reason, ending = lost, JobState.PREEMPTED
        elif hours >= float(job["max_hours"]):
            reason = f"max_hours {job['max_hours']} reached ({hours:.4f} h)"
        elif hours * rate >= float(job["max_usd"]):
            reason = f"max_usd {job['max_usd']} reached (${hours * rate:.4f} at ${rate}/h)"
        elif over_budget:
            reason = "the month's spend reached the spend watcher's stop threshold"
        if not reason:
            self._say(f"jobs: {name}: {state or 'starting'}, {hours:.3f} h, ${hours * rate:.3f} of "
                      f"${float(job['max_usd']):.2f}")
            return Seen(True, rate, instance=instance)
        capped = state not in FINAL
        if capped:
            self._write_end(job, status, reason, instance, ending)
        self._say(f"jobs: {name}: {reason}: deleting {c.name} instance {iid}")
        gone = self._delete(c, job, iid)
        if gone:
            if capped:
                # The runner's last write may have landed in between: a final one (the command's own end) stands.
                again = self._status(job)
                if (again or {}).get("state") in FINAL:
                    if again["state"] != ending.value:
                        self._say(f"jobs: {name}: its runner wrote {again['state']} meanwhile; that stands")
                else:
                    self._write_end(job, again or status, reason, instance, ending)
            self._say(f"jobs: {name}: {c.name} instance {iid} deleted; it bills no more")
        return Seen(not gone, rate, instance=instance)
