"""GPU jobs (``gpu-estate:jobs``): a command run once in an image on a rented machine, with hour and dollar caps.

A job is declared like a node (its machine's keys are the node's own fields, checked by the node's own
rules: ``NodeSpec``) plus what it runs: an image, a command (a list of words, never shell text), env and
secret env, the bucket prefixes it reads and writes, its caps and its run id. What the machine does with
it is ``assets/job/estate_job.py``; the resource that rents it is ``providers/job.py``; what releases it
when it ends or passes a cap is ``agents/jobs.py``.

Money: a job costs at most its cap, ``min(max_usd, max_hours x its $/h)``, and that cap is its line in the
month's estimate (``estimate``), the budget rules and the policy pack's stamps (``stamp``).
"""
from __future__ import annotations

import enum
import hashlib
import re
from typing import Annotated, Any, Dict, List, Optional

from pydantic import Field, StringConstraints, ValidationError, create_model, field_validator, model_validator

from core.fields import Arg, BucketName, EnvName, EnvValue, ImageRef, StackModel
from core import spec as _spec
from core.spec import NodeSpec
from core.vendors import Vendor

MACHINE_KEYS = ("provider", "failover", "gpu", "regions", "vcpu", "ram_gb", "disk_gb", "market", "bid_per_hour",
                "max_price_per_hour", "min_reliability", "ssh")
"""The node's keys a job's machine is declared with: the same fields (types, bounds, docs) and rules."""

JOB_VENDORS = (Vendor.TENSORDOCK, Vendor.VASTAI)
"""Where a job's machine may be rented: a VM the runner drives Docker on (TensorDock), or one container of
the job's image that the runner runs inside (Vast.ai, on-demand or an interruptible bid)."""
JOB_DIR = "/opt/estate/jobs"
"""Where a job machine keeps the runner, its job document and secret env, logs and the outputs directory."""
WATCH_DIR = "jobs"
"""Beside the spend watcher's document: each job's watch entry (``watch_file``), 0600, holding the job's bucket
key; written by the job's ``job:Watch`` resource before its machine is rented (``providers/job_watch.py``)."""
STATUS_ROOT = "estate-jobs"
"""Where in the bucket each run's status object and log land: ``estate-jobs/<label>/<run>/``."""

BucketPrefix = Annotated[str, StringConstraints(
    max_length=512, pattern=r"^[A-Za-z0-9][A-Za-z0-9._=-]*(/[A-Za-z0-9][A-Za-z0-9._=-]*)*/?$")]
"""A key prefix in the job's bucket (``datasets/chat/``, ``models/myorg/tiny/3``): no ``..``, no leading ``/``."""
RunId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]

HEARTBEAT_SECONDS = 60.0
"""The longest the runner goes between two writes of its status object (its heartbeat), whatever else it is
doing (downloading inputs, uploading a checkpoint): its own thread writes it (``assets/job/estate_job.py``)."""
LOST_MARGIN_SECONDS = 300.0
"""Beyond two heartbeats, what a heartbeat may be late by before its runner is counted lost: a write retried,
the machine's clock against the gateway host's."""
NO_STATUS_SECONDS = 1800.0
"""How long after the job's watch entry was written a machine may carry no status object at all: the create
waits for the machine and its SSH (``ESTATE_READY_TIMEOUT_SECONDS``, 900 by default) and then for the
runner's first status; past this its runner is counted lost."""


class Preemption(str, enum.Enum):
    RESUME = "resume"
    """The next `up` rents a machine again and the job starts over with its outputs prefix downloaded first
    (its last checkpoints), ``ESTATE_JOB_RESUMED=1`` in its env."""
    REPORT = "report"
    """The job is shown ``preempted`` and not run again until its ``run`` changes."""


class JobState(str, enum.Enum):
    """What `refresh` shows for a job."""

    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CAPPED = "capped"
    PREEMPTED = "preempted"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CAPPED, JobState.PREEMPTED)


_JobMachine = create_model(  # type: ignore[call-overload]
    "_JobMachine", __base__=StackModel,
    **{k: (NodeSpec.model_fields[k].annotation, NodeSpec.model_fields[k]) for k in MACHINE_KEYS})


class JobSpec(_JobMachine):  # type: ignore[misc,valid-type]
    """One GPU job: rented, run once, released when its command ends or a cap is reached."""

    image: ImageRef
    """The image the command runs in: with Docker on a VM (TensorDock); on Vast.ai the machine is one container
    of this image, and the runner runs inside it, so the image must have ``sh`` and ``python3`` (the runner
    says so and the create fails, deleting the machine, when it has not). Pin it by digest for a run you can
    repeat."""
    command: List[Arg] = Field(min_length=1)
    """The command and its arguments, each word an element: passed as data, never through a shell."""
    env: Dict[EnvName, EnvValue] = Field(default_factory=dict)
    """Environment of the command (not secret: the values are in the job document on the machine)."""
    secret_env: List[EnvName] = Field(default_factory=list)
    """Names of config secrets (``gpu-estate:<NAME>``) given to the command as env: delivered over SSH as a
    0600 file, as a node's secrets are; never in the vendor's user-data."""
    bucket: BucketName
    """The bucket (a key of ``storage``) the inputs come from and the outputs, logs and status go to."""
    inputs: List[BucketPrefix] = Field(default_factory=list)
    """Prefixes downloaded into ``/job/inputs/<prefix>`` before the command starts."""
    outputs: BucketPrefix
    """Prefix ``/job/outputs`` is uploaded to when the command ends (and every ``sync_minutes`` while it runs)."""
    max_hours: float = Field(gt=0, le=744)
    """The most hours the machine runs: at that age it is deleted, whatever the command is doing (state ``capped``)."""
    max_usd: float = Field(gt=0)
    """The most the job may cost: at elapsed hours x its $/h reaching this, the machine is deleted (``capped``)."""
    run: RunId = "1"
    """The run id: a finished job is not run again until this changes; a new value replaces the job (a new machine)."""
    on_preemption: Preemption = Preemption.REPORT
    """A machine lost before the job finished (a spot preemption): `resume` from the outputs prefix on the next `up`, or `report` it."""
    gpus: bool = True
    """Give the command the machine's GPUs (``docker run --gpus all``); false for a CPU-only command. A
    container machine (Vast.ai) gives its one container every GPU it rents, whatever this says."""
    sync_minutes: float = Field(10, gt=0, le=1440)
    """How often the outputs directory is uploaded while the command runs (the checkpoints a resume starts from)."""

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, v: str) -> str:
        return v.rstrip("/")

    @field_validator("provider", "failover")
    @classmethod
    def _rented_by_the_hour(cls, v: Any) -> Any:
        for vendor in (v if isinstance(v, list) else [v]):
            if vendor not in JOB_VENDORS:
                raise ValueError(
                    f"{vendor.value} cannot run a job: a job runs on a machine the estate rents by the hour and "
                    "reaches over SSH: "
                    f"{' or '.join(x.value for x in JOB_VENDORS)} (a RunPod pod runs its image's own command and "
                    "takes no runner; an AWS/GCP VM is not rented through a marketplace client)")
        return v

    @model_validator(mode="after")
    def _machine_rules(self) -> "JobSpec":
        self.machine  # the node's own rules, on the same keys
        return self

    @property
    def machine(self) -> NodeSpec:
        """The job's machine as a node: what placement, pricing and the bootstrap cloud-init read."""
        fields = {k: getattr(self, k) for k in MACHINE_KEYS if k in self.model_fields_set}
        try:
            return NodeSpec(**fields, hours_per_month=0)
        except ValidationError as err:
            raise ValueError("; ".join(e["msg"].removeprefix("Value error, ") for e in err.errors())) from None

    def cap_usd(self, hourly_usd: float) -> float:
        """What the job may cost at ``hourly_usd``: the lower of its two caps."""
        return round(min(self.max_usd, self.max_hours * hourly_usd), 4)


def heartbeat_seconds(sync_seconds: float) -> float:
    """How often the runner writes its heartbeat: at most ``HEARTBEAT_SECONDS`` apart, more often when the job
    syncs more often."""
    return min(HEARTBEAT_SECONDS, float(sync_seconds))


def lost_after(heartbeat: float) -> float:
    """How old a non-final status's heartbeat (its ``updated_at``) may be before its runner is counted lost."""
    return 2 * float(heartbeat) + LOST_MARGIN_SECONDS


def runner_lost(status: Optional[Dict[str, Any]], heartbeat: Optional[float], created_at: float, now: float,
                machine: str) -> str:
    """Why the runner on ``machine`` (``<cloud>:<id>``, still running) is lost, or ``''``: its non-final status's
    heartbeat is older than ``lost_after`` (the runner died with the machine still up: a Vast.ai bid paused and
    resumed, a host reboot; nothing restarts it), or there is no status object at all ``NO_STATUS_SECONDS``
    after ``created_at``. ``heartbeat`` None (a job started before heartbeats) judges nothing; nor does a
    status another machine of the same run wrote (the one lost before a resume: this machine's runner writes
    its own once it starts)."""
    if not heartbeat:
        return ""
    if not status:
        age = now - float(created_at)
        if age > NO_STATUS_SECONDS:
            return (f"the runner on {machine} never answered: no status object {age / 60:.0f} min after the job "
                    "was started")
        return ""
    if status.get("instance") and status["instance"] != machine:
        return ""
    if status.get("state") in (s.value for s in JobState if s.finished):
        return ""
    beat = status.get("updated_at") or status.get("started_at")
    if not isinstance(beat, (int, float)):
        return ""
    age = now - float(beat)
    if age > lost_after(heartbeat):
        return (f"the runner on {machine} stopped answering: its last heartbeat is {age / 60:.0f} min old "
                f"(it writes one every {heartbeat:g} s)")
    return ""


def caps_used(since: Optional[float], now: float, max_hours: float, max_usd: float, hourly_usd: float) -> str:
    """Why the run's caps are used up already, counted from ``since`` (its watch entry's ``created_at``, the
    time the caps count from across the machines a resume rents), or ``''``: a resumed run whose caps ran out
    while it waited for the next `up` is not rented again only to be capped at the agent's first look."""
    if since is None:
        return ""
    hours = max(0.0, now - float(since)) / 3600.0
    if hours >= max_hours:
        return f"max_hours {max_hours:g} reached ({hours:.2f} h since the run began) before a machine was rented"
    if hours * hourly_usd >= max_usd:
        return (f"max_usd {max_usd:g} reached (${hours * hourly_usd:.2f} at ${hourly_usd}/h since the run began) "
                "before a machine was rented")
    return ""


def label(project: str, stack: str, name: str, run: str) -> str:
    """The job machine's name at its vendor: one per run, so a new run never adopts the last run's machine."""
    return f"{project}-{stack}-job-{name}-{run}".lower().replace(".", "-").replace("_", "-")


def status_prefix(job_label: str) -> str:
    """Where the run's status object and log land in the bucket."""
    return f"{STATUS_ROOT}/{job_label}"


def watch_file(name: str) -> str:
    """The file name of a job's watch entry: the job's name made safe for a path (no ``/``, no ``..``, no
    shell meaning), with a digest of the name so two names never share a file."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64]
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}.json"


def watch_entry(name: str, job: JobSpec, job_label: str, bucket: str, endpoint: Optional[str], region: str,
                hourly_usd: float) -> Dict[str, Any]:
    """What the job agent reads of a job (``agents/jobs.py``), but its bucket key and the time it is written:
    the label its machine carries and the clouds it may be on (the agent finds it there), its caps and $/h, and
    where its status object is."""
    return {"job": name, "label": job_label, "run": job.run, "clouds": [job.provider.value, *(f.value for f in job.failover)],
            "hourly_usd": hourly_usd, "max_hours": job.max_hours, "max_usd": job.max_usd, "bucket": bucket,
            "heartbeat_seconds": heartbeat_seconds(job.sync_minutes * 60),
            "endpoint": endpoint, "region": region, "status_prefix": status_prefix(job_label)}


def stamp(name: str, job: JobSpec, est: Any) -> Dict[str, Any]:
    """What the job's billing resource carries for the policy pack and the cost diff: node-shaped figures
    (its $/h and the hours its cap buys), so the budget policies count its cap like a node's month."""
    return {
        "node": f"job:{name}", "provider": job.provider.value, "gpu": job.gpu.model if job.gpu else "",
        "hourly_usd": est.hourly_usd, "hours_per_month": est.hours_per_month,
        "monthly_usd": est.monthly_usd,
        # The machine is deleted at its cap, busy or not: it stops itself as an idle watcher would.
        "idle_shutdown_minutes": round(job.max_hours * 60, 2), "pay_per_use": True, "market": job.market.value,
        "vram_gb": job.gpu.vram_gb if job.gpu else 0, "region": job.regions[0] if job.regions else "",
        "access": "ssh", "model_ports": "", "ssh_port": job.ssh.port, "max_usd": job.max_usd,
        "max_hours": job.max_hours,
    }


def job_document(job: JobSpec, job_label: str, bucket_url: str, endpoint: Optional[str], region: str) -> Dict[str, Any]:
    """What the runner on the machine reads (``assets/job/estate_job.py``), as data: no secret in it."""
    return {
        "label": job_label, "run": job.run, "image": job.image, "command": list(job.command),
        "env": dict(job.env), "bucket": bucket_url.split("://", 1)[1].split("/", 1)[0],
        "endpoint": endpoint, "region": region, "inputs": list(job.inputs), "outputs": job.outputs,
        "status_prefix": status_prefix(job_label), "resume": job.on_preemption is Preemption.RESUME,
        "sync_seconds": job.sync_minutes * 60, "heartbeat_seconds": heartbeat_seconds(job.sync_minutes * 60),
        "gpus": job.gpus,
    }


_spec.EstateSpec.model_rebuild(_types_namespace={"JobSpec": JobSpec})
