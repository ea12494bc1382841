"""A Cloud Run service with a GPU (seed 003's "GCP llama.cpp (Cloud Run)"): llama.cpp's CUDA server on an
L4, its GGUF file read from the estate's GCS bucket mounted as a Cloud Storage volume, scaled to zero
between requests, invoked only by the gateway's own service account (IAM, no public access).

Priced per second of instance time: a GPU service uses Cloud Run's instance-based billing, so an instance
bills GPU, vCPUs and memory from start until it is scaled in; ``min_instances`` bill all month and
``busy_hours_per_month`` is the stack's word for the rest, as for a RunPod serverless endpoint.
"""
from __future__ import annotations

import re
from typing import ClassVar, Dict, Literal

from pydantic import Field, field_validator, model_validator

from core.catalog import HOURS_IN_MONTH, cloudrun_prices as prices
from core.fields import BucketName, GgufFile, ImageRef
from core.identity import BEARER_ENV
from core.services.base import BaseService, ServiceEstimate

MODEL_PATH = "/models"
"""Where the bucket is mounted in the container (read-only)."""
PORT = 8080
IDLE_MINUTES = 15.0
"""Cloud Run keeps an idle instance about 15 minutes before scaling it in (it bills meanwhile)."""
IMAGE_HOSTS = r"^([a-z0-9-]+-docker\.pkg\.dev|([a-z]+\.)?gcr\.io|docker\.io)/"
"""Cloud Run pulls from Artifact Registry, Container Registry or Docker Hub only."""


class CloudRunService(BaseService):
    """``services.<name>`` with ``provider: cloudrun``: a ``cloudrunv2.Service`` with one GPU per instance."""

    TITLE: ClassVar[str] = "Cloud Run"
    gpu_name: ClassVar[str] = "l4"
    idle_minutes: ClassVar[float] = IDLE_MINUTES

    provider: Literal["cloudrun"]
    """``cloudrun``: a Cloud Run service with a GPU, scaled to zero between requests."""
    region: str = Field(pattern=r"^[a-z]+-[a-z]+[0-9]$")
    """The GCP region (one Cloud Run offers the GPU in)."""
    gpu: Literal["nvidia-l4"] = "nvidia-l4"
    """The GPU of each instance (Cloud Run's ``nvidia.com/gpu`` accelerator)."""
    cpu: int = Field(4, ge=1, le=8)
    """vCPUs of each instance (an L4 needs at least 4)."""
    memory_gib: int = Field(16, ge=1, le=32)
    """Memory of each instance in GiB (an L4 needs at least 16)."""
    min_instances: int = Field(0, ge=0, le=10)
    """Instances kept running (billed all month); 0 scales to zero."""
    max_instances: int = Field(1, ge=1, le=10)
    """The most instances Cloud Run starts (each needs GPU quota in the region)."""
    concurrency: int = Field(4, ge=1, le=1000)
    """Requests one instance takes at once (llama.cpp's parallel slots)."""
    busy_hours_per_month: float = Field(0.0, ge=0, le=744 * 10)
    """Expected instance-hours a month beyond ``min_instances`` (cold starts, requests, idle until scaled in)."""
    bucket: BucketName
    """The estate's GCS bucket (``storage.<bucket>``, provider gcs) the model is read from."""
    gguf: GgufFile
    """The GGUF file's object name in the bucket."""
    image: ImageRef
    """llama.cpp's CUDA server image (``server-cuda-b6870``), pinned, in a registry Cloud Run pulls from."""

    @field_validator("image")
    @classmethod
    def _pullable(cls, v: str) -> str:
        if not re.match(IMAGE_HOSTS, v):
            raise ValueError("Cloud Run pulls from Artifact Registry (<region>-docker.pkg.dev), gcr.io or docker.io "
                             "only: mirror the image there")
        return v

    @model_validator(mode="after")
    def _shape(self) -> "CloudRunService":
        row = prices()["gpus"][self.gpu]
        if self.cpu < row["min_cpu"] or self.memory_gib < row["min_memory_gib"]:
            raise ValueError(f"an {self.gpu} instance needs at least {row['min_cpu']} cpu and {row['min_memory_gib']} "
                             f"memory_gib (got {self.cpu} and {self.memory_gib})")
        if self.region not in row["regions"]:
            raise ValueError(f"Cloud Run offers {self.gpu} in {', '.join(row['regions'])} (got {self.region!r})")
        if self.min_instances > self.max_instances:
            raise ValueError(f"min_instances {self.min_instances} is above max_instances {self.max_instances}")
        return self

    id_token: ClassVar[bool] = True
    """Cloud Run checks a Google ID token of the gateway's service account (its run.invoker binding), whose
    audience is the service's URL: the gateway host's identity proxy signs its requests."""

    def gateway_key_env(self, name: str) -> str:
        """What the route sends the identity proxy (which replaces it with the service account's ID token)."""
        return BEARER_ENV

    def server_args(self) -> Dict[str, str]:
        """llama.cpp's options, as its env: the model from the mounted bucket, every layer on the GPU."""
        return {"LLAMA_ARG_MODEL": f"{MODEL_PATH}/{self.gguf}", "LLAMA_ARG_ALIAS": self.served_name,
                "LLAMA_ARG_HOST": "0.0.0.0", "LLAMA_ARG_PORT": str(PORT), "LLAMA_ARG_N_GPU_LAYERS": "999",
                "LLAMA_ARG_N_PARALLEL": str(self.concurrency)}

    def estimate(self, name: str) -> ServiceEstimate:
        p = prices()
        per_second = p["gpus"][self.gpu]["per_second"] + self.cpu * p["vcpu_per_second"] \
            + self.memory_gib * p["memory_gib_per_second"]
        hourly = round(per_second * 3600, 4)
        return ServiceEstimate(
            service=name, provider=self.provider, size=f"{self.gpu} {self.cpu} vCPU {self.memory_gib} GiB",
            instance_hourly_usd=hourly, always_on_monthly_usd=round(self.min_instances * hourly * HOURS_IN_MONTH, 2),
            busy_monthly_usd=round(self.busy_hours_per_month * hourly, 2), max_instances=self.max_instances,
            basis=f"cloud run {self.min_instances}-{self.max_instances} instances, {self.busy_hours_per_month:g} busy h, "
                  f"reference {p['as_of']}")

    def describe(self) -> str:
        return (f"{self.gpu} · {self.region} · {self.min_instances}-{self.max_instances} instances, "
                f"{self.concurrency} at once")
