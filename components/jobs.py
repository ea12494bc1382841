"""A GPU job as the estate builds it: its machine's host key, its watch entry and its ``job:Job`` resource.

The job's machine is placed like a node's (its ``NodeSpec`` from ``core.jobs``: the same request, price
cap and bootstrap cloud-init, never a secret in it); what runs there arrives over SSH (``providers/job.py``).
Its watch entry (``job:Watch``, ``providers/job_watch.py``) gives the spend watcher's job agent what it reads
(label, clouds, $/h, caps, where the status object is, the job's bucket key as a secret), written beside
the watcher before the machine is rented. The machine is rented only after the entry and after the spend
watcher itself runs (``watcher``: the local watcher's process, or the gateway host's deploy that enables its
timer): nothing on the machine can stop its own billing (a vendor bills until its API deletes the machine),
so a job is never launched with nothing to release it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

import pulumi

from components import workloads
from core import jobs as core_jobs
from core import pricing
from core.jobs import JobSpec
from core.spec import BucketSpec
from providers.gpu_instance import LaunchInputs
from providers.job import Job, JobArgs
from providers.job_watch import JobWatch, JobWatchArgs
from providers.ssh_key import SshKey

TYPE = "gpu-estate:index:GpuJob"


def _key(access: Any) -> Dict[str, str]:
    """The job's bucket key as the runner and the job agent read it."""
    return {"access_key": access.aws_access_key_id, "secret_key": access.aws_secret_access_key}


@dataclasses.dataclass(frozen=True)
class GpuJobArgs:
    spec: JobSpec
    project: str
    stack: str
    bucket: BucketSpec
    """The job's bucket as the stack gives it (its endpoint and region)."""
    bucket_name: pulumi.Input[str]
    """The bucket's name at its store (``ModelBucket.bucket_name``)."""
    bucket_access: pulumi.Output
    """The job's own key for the bucket (``workloads.BucketAccess``, a secret)."""
    secret_env: Dict[str, Any] = dataclasses.field(default_factory=dict)
    """Values (secret outputs) of the job's ``secret_env`` names."""
    ssh_private_key: Optional[Any] = None
    watch_dir: Optional[str] = None
    """The directory the spend watcher reads the job's watch entry from (on the gateway host)."""
    watch_host: Optional[Any] = None
    """``gateway.deploy: ssh``: the gateway host's ``GpuNode``, reached over SSH; None: this machine."""
    watcher: Optional[pulumi.Resource] = None
    """What runs the spend watcher (``Gateway.watcher``): the job's machine is rented only after it."""


class GpuJob(pulumi.ComponentResource):
    def __init__(self, name: str, args: GpuJobArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        job, machine = args.spec, args.spec.machine
        label = core_jobs.label(args.project, args.stack, name, job.run)
        self.estimate = pricing.estimate_job(name, job)
        host_key = SshKey(f"job-{name}-ssh-host-key", comment=f"job {name} host key", opts=child)
        endpoint, region = args.bucket.endpoint, args.bucket.location
        document = pulumi.Output.from_input(args.bucket_name).apply(
            lambda bucket: core_jobs.job_document(job, label, f"s3://{bucket}", endpoint, region))
        secrets = pulumi.Output.secret(pulumi.Output.all(
            access=args.bucket_access, key=args.ssh_private_key, **{f"env:{k}": v for k, v in args.secret_env.items()},
        )).apply(lambda a: {"s3": _key(a["access"]),
                            "env": {k.removeprefix("env:"): v for k, v in a.items() if k.startswith("env:")},
                            "ssh_private_key": a.get("key")})
        self.watch = self._watch(name, args, label, child)
        self.resource = Job(f"job-{name}", JobArgs(
            name=name, label=label, run=job.run, clouds=[job.provider.value, *(f.value for f in job.failover)],
            request=pricing.node_request(machine),
            launch=LaunchInputs(image=machine.image, disk_gb=machine.disk_gb, ports=[], env={}, onstart="",
                                ssh_public_key=job.ssh.public_key, vcpu=machine.vcpu, ram_gb=machine.ram_gb,
                                cloud_init=workloads.render_cloud_init(machine, (), workloads=False)),
            document=document, caps={"max_hours": job.max_hours, "max_usd": job.max_usd},
            ssh={"user": job.ssh.user, "port": job.ssh.port, "key_env": job.ssh.private_key_env},
            secrets=secrets, host_key=pulumi.Output.secret(pulumi.Output.all(
                private=host_key.private_key, public=host_key.public_key)),
            bid_per_hour=job.bid_per_hour, stamps=core_jobs.stamp(name, job, self.estimate),
            caps_from=self.watch.created_at if self.watch is not None else None,
        ), pulumi.ResourceOptions(parent=self, depends_on=[r for r in (self.watch, args.watcher) if r is not None] or None))

    def _watch(self, name: str, args: GpuJobArgs, label: str, child: pulumi.ResourceOptions) -> Optional[JobWatch]:
        """The job's watch entry on the gateway host, written before its machine is rented; None without a
        spend watcher to read it (the stack rules refuse jobs then)."""
        if args.watch_dir is None:
            return None
        job = args.spec
        entry = pulumi.Output.secret(pulumi.Output.all(pulumi.Output.from_input(args.bucket_name),
                                                       args.bucket_access).apply(
            lambda a: {**core_jobs.watch_entry(name, job, label, a[0], args.bucket.endpoint, args.bucket.location,
                                               self.estimate.hourly_usd), "key": _key(a[1])}))
        ssh = None
        if args.watch_host is not None:
            host = args.watch_host
            ssh = pulumi.Output.all(host.ssh_host, host.ssh_port, host.host_key()).apply(lambda a: {
                "host": a[0], "port": int(a[1] or host.spec.ssh.port), "user": host.spec.ssh.user, "host_key": a[2],
                "key_env": host.spec.ssh.private_key_env})
        # Written once the watcher runs, just before the rent: the caps count from the entry's created_at, so an
        # entry written by an `up` that failed before the watcher would have spent them before the job ran.
        opts = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[args.watcher])) \
            if args.watcher is not None else child
        return JobWatch(f"job-{name}-watch", JobWatchArgs(
            name=name, file=core_jobs.watch_file(name), entry=entry, directory=args.watch_dir, ssh=ssh), opts)

    def outputs(self) -> pulumi.Output:
        """What the stack exports for the job (``jobs``): state, duration, cost, machine."""
        r = self.resource
        return pulumi.Output.all(state=r.state, duration_s=r.duration_s, cost_usd=r.cost_usd, instance=r.id,
                                 price_per_hour=r.price_per_hour)
