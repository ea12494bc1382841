"""A Cloud Run service with an L4 (pulumi-gcp's ``cloudrunv2.Service``): llama.cpp's CUDA server reading
its GGUF file from the estate's bucket mounted read-only, scaled between the stack's min and max
instances, run as a service account that may only read that bucket, and invocable only by the gateway's
own service account (``roles/run.invoker``; no ``allUsers``). That account's key (a Pulumi secret) reaches the
gateway host's identity proxy (``agents.identity``), which mints the ID tokens Cloud Run checks."""
from __future__ import annotations

import base64
import hashlib

import pulumi
import pulumi_gcp as gcp

from components.services.base import Service, ServiceRequest
from core.services.cloudrun import MODEL_PATH, PORT, CloudRunService
from core.stamps import to_tags

VOLUME = "models"


def account_id(label: str, role: str) -> str:
    """A service account id (6-30 lower-case letters, digits, ``-``) that stays the same for the same service."""
    return f"{role}-{hashlib.sha256(label.encode()).hexdigest()[:12]}"


def build(req: ServiceRequest) -> Service:
    s: CloudRunService = req.spec
    child = req.opts
    runtime = gcp.serviceaccount.Account(f"service-{req.name}-runtime", account_id=account_id(req.label, "run"),
                                         display_name=f"{req.label}: Cloud Run service (reads its model)", opts=child)
    invoker = gcp.serviceaccount.Account(f"service-{req.name}-gateway", account_id=account_id(req.label, "gw"),
                                         display_name=f"{req.label}: the gateway's identity (invokes it)", opts=child)
    bucket = req.buckets[s.bucket]
    read = gcp.storage.BucketIAMMember(f"service-{req.name}-model-read", bucket=bucket.bucket_name,
                                       role="roles/storage.objectViewer",
                                       member=runtime.email.apply(lambda e: f"serviceAccount:{e}"), opts=child)
    stamp = {k: v for k, v in req.stamp.items() if k != "regions"}
    service = gcp.cloudrunv2.Service(
        f"service-{req.name}", name=req.label, location=s.region, ingress="INGRESS_TRAFFIC_ALL",
        deletion_protection=False, invoker_iam_disabled=False, labels=to_tags({**stamp, "region": s.region}),
        template=gcp.cloudrunv2.ServiceTemplateArgs(
            service_account=runtime.email,
            max_instance_request_concurrency=s.concurrency,
            gpu_zonal_redundancy_disabled=True,
            scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(min_instance_count=s.min_instances,
                                                              max_instance_count=s.max_instances),
            node_selector=gcp.cloudrunv2.ServiceTemplateNodeSelectorArgs(accelerator=s.gpu),
            containers=[gcp.cloudrunv2.ServiceTemplateContainerArgs(
                image=s.image,
                envs=[gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(name=k, value=v)
                      for k, v in sorted(s.server_args().items())],
                ports=gcp.cloudrunv2.ServiceTemplateContainerPortsArgs(container_port=PORT),
                resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                    limits={"cpu": str(s.cpu), "memory": f"{s.memory_gib}Gi", "nvidia.com/gpu": "1"},
                    cpu_idle=False, startup_cpu_boost=True),
                volume_mounts=[gcp.cloudrunv2.ServiceTemplateContainerVolumeMountArgs(name=VOLUME,
                                                                                      mount_path=MODEL_PATH)],
                startup_probe=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeArgs(
                    http_get=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeHttpGetArgs(path="/health",
                                                                                           port=PORT),
                    initial_delay_seconds=5, period_seconds=5, failure_threshold=60, timeout_seconds=3),
            )],
            volumes=[gcp.cloudrunv2.ServiceTemplateVolumeArgs(
                name=VOLUME, gcs=gcp.cloudrunv2.ServiceTemplateVolumeGcsArgs(bucket=bucket.bucket_name,
                                                                              read_only=True))],
        ),
        opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[read])))
    gcp.cloudrunv2.ServiceIamMember(f"service-{req.name}-invoker", name=service.name, location=s.region,
                                    project=service.project, role="roles/run.invoker",
                                    member=invoker.email.apply(lambda e: f"serviceAccount:{e}"), opts=child)
    # The gateway's credentials off GCP: a key of its account, decoded to the key file's JSON inside the secret.
    key = gcp.serviceaccount.Key(f"service-{req.name}-gateway-key", service_account_id=invoker.name, opts=child)
    identity = pulumi.Output.secret(key.private_key).apply(lambda k: base64.b64decode(k).decode())
    return Service(resource=service, url=service.uri, identity=identity)
