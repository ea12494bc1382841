"""The Pulumi dynamic provider for GPU jobs: ``pulumi-python:dynamic/job:Job``.

- create rents the machine through the nodes' own placement (``providers.placement``: adopt by label,
  cheapest offer, next offer, next cloud; a spot bid as a node's), waits for it to run and answer SSH,
  delivers the runner, its job document and its secrets (one 0600 bundle on an SSH command's stdin, as a
  node's secrets arrive) and starts the runner detached; it returns without waiting for the job. A VM
  (TensorDock) boots the bootstrap cloud-init with the host key the program generated, which SSH then
  pins, and its runner drives Docker. A container machine (Vast.ai) is one container of the job's own
  image with no start script, no env and no cloud-init of ours (nothing for the vendor to read): its host
  key is its vendor's, trusted on first contact as a container node's is (``providers.host_key``), and the
  runner runs inside it (``assets/job/estate_start.py`` starts it with nothing but ``python3``; an image
  without ``python3`` fails the create, saying so). A create that fails after renting deletes what it
  rented (verified) before it raises: nothing bills behind the state's back.
- read (``refresh``) reports the job's state (starting, running, succeeded, failed, capped, preempted), its
  duration and cost, from the status object the runner (or the job agent, at a cap) wrote in the bucket and
  from the vendor. A finished job stays in state with its result, whether or not its machine still exists,
  so `up` never runs it again; only a new ``run`` id does (a replacement, which the preview names). A
  machine lost before the job finished is a preemption: with ``resume`` the job is reported gone, so the
  next `up` rents again and the runner starts from the outputs prefix; with ``report`` it stays
  ``preempted``. A machine its vendor stopped under the job (a Vast.ai bid outbid) is a preemption too,
  shown ``preempted`` while it is still listed; the job agent deletes it. So is a running machine whose
  runner is lost (its heartbeat too old: it died with the machine up, and nothing restarts it). A status
  object another machine of the same run wrote (the one lost before a resume) is not this machine's. A
  resume whose caps ran out meanwhile (counted from ``caps_from``, the run's watch entry's ``created_at``)
  is shown ``capped`` and kept; a create past them rents nothing and reports ``capped``
  (``core.jobs.caps_used``).
- update changes nothing on the machine: caps and the rest take effect through the job agent's document or
  at the next run.
- delete deletes the machine if it still exists and returns only once the vendor no longer lists it.

The machine is released when the command ends or a cap is reached by the spend watcher's job agent
(``agents/jobs.py``), not by this provider: nothing here waits for a job.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, UpdateResult

from core.jobs import JOB_DIR, JOB_VENDORS, JobState, caps_used, runner_lost
from core.pricing import NodeRequest
from core.text import install_secrets, secret_bundle
from core.vendors import Vendor
from providers.gpu_cloud import GpuCloud, Instance, LaunchSpec, Status, env_seconds
from providers.gpu_instance import GpuInstanceProvider, LaunchInputs, _poll, split_id, terminate_verified
from providers.host_key import install_in_cloud_init
from providers.http import CloudError
from providers.placement import Placed
from providers.resource import DynamicResource
from providers.s3 import S3, S3Error
from providers.ssh_forward import CONNECT_TIMEOUT_SECONDS, ForwardError, run_remote
from providers.wait import WaitTimeout, wait_for, within

PROVIDER_VERSION = "1"
ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "assets" / "job" / "estate_job.py"
CONTAINER_START = ROOT / "assets" / "job" / "estate_start.py"
NO_PYTHON = 3
"""The start's exit status on a container machine whose image has no ``python3``: the create fails at once."""
OLD_PYTHON = 4
"""The start's exit status on a machine whose ``python3`` is older than ``MIN_PYTHON``: the create fails at once."""
NOT_STARTED = 5
"""The start's exit status when the runner did not start (``assets/job/estate_start.py``): the create fails at
once, naming the end of the runner's log."""
MIN_PYTHON = (3, 7)
"""The oldest Python the runner runs on (``from __future__ import annotations``)."""
START_CONFIRM_SECONDS = 15.0
"""How long the start waits for a new runner's first status before it counts it as not started."""
S3_CLIENT = ROOT / "providers" / "s3.py"
REPLACE_KEYS = ("run",)
"""A new run id is a new run: a new machine, the job run again. Nothing else re-runs a job."""
INPUT_KEYS = ("label", "name", "run", "clouds", "request", "launch", "bid_per_hour", "document", "ssh", "stamps",
              "caps", "caps_from", "version")
QUIET_KEYS = ("caps", "caps_from", "stamps", "version")
"""Inputs whose change takes effect without a word: the caps (the job agent reads them from the watch entry)."""
NOT_RENTED = "unrented"
"""The id's cloud of a job whose caps were used up before a machine was rented: nothing of it exists anywhere."""
SECRET_INPUTS = ("secrets", "host_key")


def job_dir(label: str) -> str:
    return f"{JOB_DIR}/{label}"


def python_check() -> str:
    """Shell that refuses a ``python3`` older than ``MIN_PYTHON``, naming its version (checked with syntax any
    Python 3 reads, before the start's own code is compiled)."""
    need = ".".join(map(str, MIN_PYTHON))
    return (f"if ! python3 -c 'import sys; sys.exit(0 if sys.version_info >= {MIN_PYTHON!r} else 1)' 2>/dev/null; then "
            f"echo \"estate-job: the machine's python3 is $(python3 -V 2>&1), older than {need}: the job runner "
            f"needs {need} or newer\" >&2; exit {OLD_PYTHON}; fi; ")


def runner_start(label: str) -> str:
    """Shell that starts the runner with ``estate_start.py`` (its bundle, if any, on stdin) and waits for its first
    status (``START_CONFIRM_SECONDS``)."""
    d = shlex.quote(job_dir(label))
    return (python_check() +
            f"exec python3 -c {shlex.quote(CONTAINER_START.read_text(encoding='utf-8'))} {d} {START_CONFIRM_SECONDS:g}")


def start_script(label: str) -> str:
    """What runs on a VM once the bundle is written: wait for the bootstrap (Docker), then start the runner
    detached unless one runs or has finished there (a create retried after a lost answer), and confirm it
    wrote its first status (``estate_start.py``, with no bundle: the VM's files came through the manifest)."""
    d = shlex.quote(job_dir(label))
    return (f"set -eu; cd {d}; "
            "if [ -d /run/cloud-init ] && command -v cloud-init >/dev/null; then cloud-init status --wait >/dev/null || true; fi; "
            f"{runner_start(label)} < /dev/null")


def container_start_script(label: str) -> str:
    """What runs on a container machine (its image may hold only ``sh`` and ``python3``): refuse an image without
    ``python3``, naming it, else write the bundle and start the runner detached (``estate_start.py``)."""
    return ("if ! command -v python3 >/dev/null 2>&1; then echo 'estate-job: the job image has no python3; on a "
            "container machine (Vast.ai) the job runner runs inside the job image, which needs sh and python3' >&2; "
            f"exit {NO_PYTHON}; fi; " + runner_start(label))


def bundle(label: str, document: Dict[str, Any], secrets: Dict[str, Any]) -> str:
    """The runner, its S3 client, the job document and its secrets, as one bundle of 0600 files."""
    d = job_dir(label)
    return secret_bundle([
        (f"{d}/estate_job.py", RUNNER.read_text(encoding="utf-8")),
        (f"{d}/estate_s3.py", S3_CLIENT.read_text(encoding="utf-8")),
        (f"{d}/job.json", json.dumps(document, sort_keys=True)),
        (f"{d}/secrets.json", json.dumps({"env": secrets.get("env") or {}, "s3": secrets["s3"]}, sort_keys=True)),
    ])


def runner_document(props: Dict[str, Any], cloud: str = Vendor.TENSORDOCK.value,
                    instance: Optional[str] = None) -> Dict[str, Any]:
    """The job document as the runner gets it: with ``max_hours``, which the runner enforces itself too (a
    backstop for a job the spend watcher never learned of), whether the machine is one container (the runner
    runs the command itself) and the machine's ``<cloud>:<id>``, which its status objects carry. The state's
    document stays as the stack wrote it, so a cap change is not read as a document change."""
    return {**props["document"], "max_hours": (props.get("caps") or {}).get("max_hours"),
            "container": Vendor(cloud).is_container, "instance": instance}


def launch_spec(props: Dict[str, Any], cloud: str) -> LaunchSpec:
    """What the job's machine is launched with on ``cloud``. A VM boots the bootstrap cloud-init with the host
    key the program generated for it; a container machine is the job's image itself, with no env, start
    script or user-data: what it runs and every secret arrive over SSH."""
    launch = LaunchInputs.from_props(props["launch"])
    base = launch.spec(props["label"], props.get("bid_per_hour"))
    if Vendor(cloud).is_container:
        return base.model_copy(update={"image": props["document"]["image"], "cloud_init": None, "env": {},
                                       "onstart": "", "ports": ()})
    key = props.get("host_key") or {}
    if key.get("private") and base.cloud_init:
        base = base.model_copy(update={"cloud_init": install_in_cloud_init(base.cloud_init, key["private"], key["public"])})
    return base


def status_client(document: Dict[str, Any], secrets: Dict[str, Any]) -> S3:
    s3 = secrets["s3"]
    return S3(document["bucket"], s3["access_key"], s3["secret_key"], endpoint=document.get("endpoint"),
              region=document.get("region") or "us-east-1")


def read_status(document: Dict[str, Any], secrets: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The run's status object, or None when it has none yet."""
    data = status_client(document, secrets).get(f"{document['status_prefix']}/status.json")
    return json.loads(data) if data else None


def judge(status: Optional[Dict[str, Any]], inst: Optional[Instance], created_at: float, now: float,
          price: float, known_finished: Optional[float] = None, machine: Optional[str] = None,
          heartbeat: Optional[float] = None) -> Dict[str, Any]:
    """The job as refresh shows it: its state, duration and cost, from its status object and its machine.
    ``known_finished`` is the end the state already holds: a preempted job keeps the time its loss was first
    seen, so its duration and cost stop growing at every refresh after it. A status object that names another
    machine than ``machine`` (``<cloud>:<id>``) is the last machine's of the same run (lost before a resume):
    not this one's. A machine its vendor stopped (an outbid spot bid) is lost as a gone one is: a job's
    machine never stops but at its end. A running machine whose runner is lost (``core.jobs.runner_lost``,
    with the runner's ``heartbeat`` seconds: its heartbeat too old, or no status long after the create) is
    a preemption as the job agent counts it: nothing runs the job there any more."""
    lost = ""
    if machine and inst is not None and inst.status not in (Status.GONE, Status.STOPPED):
        lost = runner_lost(status, heartbeat, created_at, now, machine)
    if status and machine and status.get("instance") and status["instance"] != machine:
        status = None
    gone = inst is None or inst.status in (Status.GONE, Status.STOPPED)
    state = (status or {}).get("state") or "starting"
    started = float((status or {}).get("started_at") or created_at)
    finished = (status or {}).get("finished_at") or (status or {}).get("capped_at")
    reason = (status or {}).get("reason") or (status or {}).get("error")
    if state not in (s.value for s in JobState if s.finished) and (gone or lost):
        state, finished = JobState.PREEMPTED.value, finished or known_finished or now
        reason = lost or reason
    end = float(finished) if finished else now
    duration = max(0.0, end - float(created_at))
    return {"state": state, "exit_code": (status or {}).get("exit_code"),
            "duration_s": round(duration, 1), "cost_usd": round(duration / 3600 * price, 4),
            "started_at": started, "finished_at": finished, "reason": reason}


class JobProvider(GpuInstanceProvider):
    """A job's machine is a GPU instance: the placement, the vendor clients, the wait for a machine to run and
    the verified delete are ``GpuInstanceProvider``'s; what a job adds is its runner and its state."""

    # -- check / diff -------------------------------------------------------------------------------
    def check(self, _olds: Dict[str, Any], news: Dict[str, Any]) -> CheckResult:
        failures: List[CheckFailure] = []
        clouds = news.get("clouds") or []
        allowed = [v.value for v in JOB_VENDORS]
        if not clouds or any(c not in allowed for c in clouds):
            failures.append(CheckFailure("clouds", f"one or more of {', '.join(allowed)} (got {clouds!r})"))
        for key in ("label", "run", "document"):
            if not news.get(key):
                failures.append(CheckFailure(key, "required"))
        caps = news.get("caps") or {}
        for cap in ("max_hours", "max_usd"):
            if not isinstance(caps.get(cap), (int, float)) or caps.get(cap) <= 0:
                failures.append(CheckFailure(f"caps.{cap}", f"a job without a positive {cap} is refused (got {caps.get(cap)!r})"))
        return CheckResult({**news, "version": PROVIDER_VERSION}, failures)

    def diff(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> DiffResult:
        if olds.get("run") != news.get("run"):
            pulumi.log.warn(f"{news.get('name')}: run changed ({olds.get('run')!r} -> {news.get('run')!r}): the job "
                            "runs again on a new machine; the last run's machine, if it still exists, is deleted first")
            return DiffResult(changes=True, replaces=["run"], stables=[], delete_before_replace=True)
        changed = [k for k in INPUT_KEYS if olds.get(k) != news.get(k)]
        changed += [k for k in SECRET_INPUTS if olds.get(k) != news.get(k)]
        if changed and any(k not in QUIET_KEYS for k in changed):
            pulumi.log.warn(f"{news.get('name')}: {', '.join(changed)} changed; a job is not run again for that: the "
                            "change applies at its next run (change its run id)")
        return DiffResult(changes=bool(changed), replaces=[], stables=[], delete_before_replace=True)

    # -- create -------------------------------------------------------------------------------------
    def create(self, props: Dict[str, Any]) -> CreateResult:
        label = props["label"]
        request = NodeRequest.model_validate(props["request"])
        key = props.get("host_key") or {}
        created_at = time.time()
        caps = props.get("caps") or {}
        used = caps_used(props.get("caps_from"), created_at, float(caps.get("max_hours") or 0),
                         float(caps.get("max_usd") or 0), float((props.get("stamps") or {}).get("hourly_usd") or 0))
        if used:
            # A resumed run whose caps ran out meanwhile: renting would only bill until the agent's first look.
            pulumi.log.warn(f"{props['name']}: {used}: no machine is rented (change its run id to run it again)")
            outs = {**_inputs(props), "cloud": None, "instance_id": None, "machine_status": Status.GONE.value,
                    "price_per_hour": 0.0, "created_at": created_at, "state": JobState.CAPPED.value,
                    "exit_code": None, "duration_s": 0.0, "cost_usd": 0.0, "started_at": None,
                    "finished_at": created_at, "reason": used}
            return CreateResult(f"{NOT_RENTED}:{label}", outs)

        def settle(c: GpuCloud, placed: Placed) -> CreateResult:
            try:
                inst = placed.adopted or self._wait_running(c, placed.instance_id, label)
                # A VM's host key is the one its cloud-init installed; a container machine's is its vendor's,
                # trusted on first contact, and its SSH lets in the stack's key once it is attached.
                container = Vendor(c.name).is_container
                if container and (props.get("launch") or {}).get("ssh_public_key"):
                    c.attach_ssh_key(inst.id, props["launch"]["ssh_public_key"])
                pinned = None if container else key.get("public")
                self._deliver(inst, props, pinned, c.name)
            except BaseException as err:
                # Rented (or adopted from a create that died) and not running the job: delete it before failing,
                # or it bills outside the state. A job machine holds nothing the bucket does not.
                pulumi.log.warn(f"{label}: {err}; deleting the machine rented for it")
                terminate_verified(c, placed.instance_id)
                raise
            price = inst.price_per_hour or (placed.offer.price_per_hour if placed.offer else None) or 0.0
            outs = {**_inputs(props), "cloud": c.name, "instance_id": inst.id, "machine_status": inst.status.value,
                    "ssh_host": inst.ssh_host, "ssh_port": inst.ssh_port, "price_per_hour": price,
                    "region": placed.offer.region if placed.offer else "", "created_at": created_at,
                    **judge(None, inst, created_at, time.time(), price)}
            pulumi.log.info(f"{props['name']}: started on {c.name} instance {inst.id} at ${price}/h; `pulumi refresh` "
                            "shows its state")
            return CreateResult(f"{c.name}:{inst.id}", outs)

        return self.placement.place(label, props["clouds"], self._client, request,
                                    lambda cloud: launch_spec(props, cloud), settle)

    def _deliver(self, inst: Instance, props: Dict[str, Any], host_key: Optional[str], cloud: str) -> None:
        """The bundle over SSH, pinned to the host key the machine was launched with, then the runner started;
        SSH is tried until it answers or the ready timeout passes (a VM's sshd comes up after its state says
        running)."""
        ssh = props.get("ssh") or {}
        secrets = props.get("secrets") or {}
        private = secrets.get("ssh_private_key") or os.environ.get(ssh.get("key_env") or "ESTATE_SSH_PRIVATE_KEY")
        if not private:
            raise CloudError(f"{props['label']}: no SSH private key (config secret gpu-estate:sshPrivateKey or "
                             f"{ssh.get('key_env')}) to start the job with")
        host, port, user = inst.ssh_host or inst.address, int(inst.ssh_port or ssh.get("port") or 22), ssh.get("user") or "root"
        if Vendor(cloud).is_container:
            script = container_start_script(props["label"])
        else:
            script = f"{install_secrets(job_dir(props['label']) + '/.manifest')}; {start_script(props['label'])}"
        stdin = bundle(props["label"], runner_document(props, cloud, f"{cloud}:{inst.id}"), secrets)
        last: List[str] = []

        def attempt() -> bool:
            try:
                out = run_remote(host, port, user, private, script, stdin=stdin, host_key=host_key,
                                 timeout=CONNECT_TIMEOUT_SECONDS + START_CONFIRM_SECONDS)
            except ForwardError as err:
                last[:] = [str(err)]
                if "host key" in str(err).lower() or "REMOTE HOST IDENTIFICATION" in str(err):
                    raise
                if "has no python3" in str(err):
                    raise CloudError(f"{props['label']}: {props['document']['image']}: the job image has no "
                                     "python3; on Vast.ai the job runner runs inside the job image, which needs "
                                     "sh and python3") from None
                if "estate-job: the runner did not start" in str(err) or "older than" in str(err):
                    # Started again it would fail the same way: the create fails now (deleting the machine).
                    raise CloudError(f"{props['label']}: {str(err).split('failed: ', 1)[-1]}") from None
                return False
            pulumi.log.info(f"{props['name']}: {out.strip().splitlines()[-1] if out.strip() else 'started'}")
            return True

        try:
            wait_for(attempt, bool, within(env_seconds("ESTATE_READY_TIMEOUT_SECONDS", 900)), _poll(),
                     f"{props['label']}: SSH on {host}:{port}")
        except WaitTimeout:
            raise CloudError(f"{props['label']}: the job could not be started over SSH on {user}@{host}:{port}: "
                             f"{last[0] if last else 'no answer'}") from None

    # -- read / update / delete ---------------------------------------------------------------------
    def read(self, id_: str, props: Dict[str, Any]) -> ReadResult:
        inputs = {k: props.get(k) for k in (*INPUT_KEYS, *SECRET_INPUTS) if k in props}
        if id_.startswith(f"{NOT_RENTED}:"):
            return ReadResult(id_, props, inputs)  # capped before a machine was rented: nothing to ask
        cloud, iid = split_id(id_)
        with self._client(cloud) as c:
            inst = c.get(iid)
        try:
            status = read_status(props["document"], props.get("secrets") or {})
        except (S3Error, OSError, ValueError) as err:
            # A bucket that cannot be read: what the state knew stays (nothing it cannot see is dropped).
            pulumi.log.warn(f"{props.get('name')}: cannot read its status object ({err}); state kept as it was")
            return ReadResult(id_, props, {k: props.get(k) for k in (*INPUT_KEYS, *SECRET_INPUTS) if k in props})
        price = float(props.get("price_per_hour") or 0.0)
        seen = judge(status, inst, float(props.get("created_at") or time.time()), time.time(), price,
                     known_finished=props.get("finished_at"), machine=id_,
                     heartbeat=(props.get("document") or {}).get("heartbeat_seconds"))
        gone = inst is None or inst.status is Status.GONE
        # A stopped machine (outbid) still bills its disk: it stays in state, shown preempted, until the job
        # agent (or a destroy) has deleted it; only then does a resume rent again.
        if seen["state"] == JobState.PREEMPTED.value and gone and (props.get("document") or {}).get("resume"):
            caps = props.get("caps") or {}
            used = caps_used(props.get("caps_from"), time.time(), float(caps.get("max_hours") or 0),
                             float(caps.get("max_usd") or 0), float((props.get("stamps") or {}).get("hourly_usd") or 0))
            if used:
                pulumi.log.warn(f"{props.get('name')}: its machine is gone before the job finished, and {used}: "
                                "it is not rented again (change its run id to run it again)")
                outs = {**props, **seen, "state": JobState.CAPPED.value, "reason": used,
                        "machine_status": Status.GONE.value}
                return ReadResult(id_, outs, inputs)
            pulumi.log.warn(f"{props.get('name')}: its machine is gone before the job finished; the next `up` "
                            "rents again and resumes from the outputs prefix")
            return ReadResult("", {})
        outs = {**props, **seen, "machine_status": (inst.status.value if inst else Status.GONE.value)}
        return ReadResult(id_, outs, {k: props.get(k) for k in (*INPUT_KEYS, *SECRET_INPUTS) if k in props})

    def update(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> UpdateResult:
        return UpdateResult({**olds, **_inputs(news), **{k: news.get(k) for k in SECRET_INPUTS}})

    def delete(self, id_: str, props: Dict[str, Any]) -> None:
        if id_.startswith(f"{NOT_RENTED}:"):
            return  # capped before a machine was rented
        cloud, iid = split_id(id_)
        with self._client(cloud) as c:
            inst = c.get(iid)
        if inst is None or inst.status is Status.GONE:
            return  # released already (the job ended or was capped)
        GpuInstanceProvider.delete(self, id_, props)  # verified; a machine adopted by another resource stays
        pulumi.log.info(f"{props.get('name')}: {cloud} instance {iid} deleted; it bills no more")


def _inputs(props: Dict[str, Any]) -> Dict[str, Any]:
    return {k: props.get(k) for k in (*INPUT_KEYS, *SECRET_INPUTS)}


@dataclasses.dataclass(frozen=True)
class JobArgs:
    """The inputs of ``pulumi-python:dynamic/job:Job``."""

    name: str
    label: str
    run: str
    clouds: List[str]
    request: NodeRequest
    launch: LaunchInputs
    document: pulumi.Input[Dict[str, Any]]
    """What the runner reads (``core.jobs.job_document``); no secret in it."""
    caps: Dict[str, float]
    ssh: Dict[str, Any]
    secrets: pulumi.Input[Dict[str, Any]]
    """``env`` (the job's secret env), ``s3`` (its bucket access key) and ``ssh_private_key``: a secret."""
    host_key: Optional[pulumi.Input[Dict[str, str]]] = None
    caps_from: Optional[pulumi.Input[float]] = None
    """When the run's caps count from: its watch entry's ``created_at`` (``job:Watch``), across the machines a
    resume rents. A create past them rents nothing and reports the job ``capped``."""
    bid_per_hour: Optional[float] = None
    stamps: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_props(self) -> Dict[str, Any]:
        return {"name": self.name, "label": self.label, "run": self.run, "clouds": list(self.clouds),
                "request": json.loads(self.request.model_dump_json()), "launch": self.launch.to_props(),
                "document": self.document, "caps": self.caps, "ssh": self.ssh, "secrets": self.secrets,
                "host_key": self.host_key, "caps_from": self.caps_from, "bid_per_hour": self.bid_per_hour,
                "stamps": self.stamps}


OUTPUT_KEYS = ("cloud", "instance_id", "machine_status", "ssh_host", "ssh_port", "price_per_hour", "region",
               "created_at", "state", "exit_code", "duration_s", "cost_usd", "started_at", "finished_at", "reason")


class Job(DynamicResource, module="job", name="Job"):
    """A GPU job: ``pulumi-python:dynamic/job:Job``."""

    cloud: pulumi.Output[str]
    instance_id: pulumi.Output[str]
    state: pulumi.Output[str]
    duration_s: pulumi.Output[float]
    cost_usd: pulumi.Output[float]
    price_per_hour: pulumi.Output[float]
    created_at: pulumi.Output[float]
    SECRET_OUTPUTS = SECRET_INPUTS

    def __init__(self, name: str, args: JobArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(JobProvider(), name, {**{k: None for k in OUTPUT_KEYS}, "version": PROVIDER_VERSION,
                                               **args.to_props()}, opts)
