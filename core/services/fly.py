"""An always-on CPU model server on a Fly Machine (seed 003's ``goblin-chat``): llama.cpp's server with a
GGUF file it downloads once into the Machine's volume, behind Fly's proxy at ``https://<app>.fly.dev``.

llama.cpp rather than Ollama: its server takes a bearer (``--api-key``, read from ``LLAMA_API_KEY``), so
the public address answers only the gateway, where Ollama has no authentication of its own; it serves a
GGUF file as it is, with no model store beside it; and its CPU image is a few hundred MB, which matters on
a 2 GB Machine whose volume holds the model.
"""
from __future__ import annotations

from typing import Any, ClassVar, Dict, Literal

from pydantic import Field, field_validator, model_validator

from core.fields import EnvName, GgufFile, HfRepo, ImageRef
from core.services.base import HOURS_IN_MONTH, BaseService, ServiceEstimate
from core.catalog import fly_prices as prices

LLAMA_CPP_CPU_IMAGE = "ghcr.io/ggml-org/llama.cpp:server-b6870"
"""llama.cpp's CPU server, the same build as the CUDA image the node workload pins (assets/images)."""
MODEL_PATH = "/models"
"""Where the volume is mounted, and where llama.cpp keeps the GGUF file it downloads (``LLAMA_CACHE``)."""
PORT = 8080
API_KEY_SECRET = "LLAMA_API_KEY"
"""The Fly app secret llama.cpp's server reads its bearer from."""



class FlyService(BaseService):
    """A Fly.io app with one Machine, its volume and its app secret (``services.<name>`` with ``provider: fly``)."""

    TITLE: ClassVar[str] = "Fly.io"

    provider: Literal["fly"]
    """``fly``: a Fly.io app with one always-on Machine."""
    app: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
    """The Fly app (its public address is ``https://<app>.fly.dev``); the Machine and volume are named after it."""
    org: str = Field("personal", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    """The Fly organization (slug) the app is created in."""
    region: str = Field(pattern=r"^[a-z]{3}$")
    """Fly region code (``iad``)."""
    size: str = "shared-cpu-2x"
    """Fly's Machine preset (assets/prices/fly.json)."""
    memory_mb: int = Field(2048, ge=256, le=65536)
    """The Machine's RAM, a multiple of 256 MB, at least its preset's."""
    volume_gb: int = Field(1, ge=1, le=500)
    """The volume the model is kept on (``/models``), billed whether the Machine runs or not."""
    model: HfRepo
    """The Hugging Face repository of the GGUF file."""
    gguf: GgufFile
    """The file in ``model``'s repository (TinyLlama 1.1B in int4 is about 0.7 GB)."""
    image: ImageRef = LLAMA_CPP_CPU_IMAGE
    """llama.cpp's server image (CPU build), pinned."""
    api_key_secret: EnvName
    """The config secret (``gpu-estate:<name>``) holding the bearer llama.cpp requires and the gateway sends:
    set as a Fly app secret, never in the Machine's config."""

    @field_validator("size")
    @classmethod
    def _known_size(cls, v: str) -> str:
        sizes = prices()["sizes"]
        if v not in sizes:
            raise ValueError(f"unknown Fly size {v!r}; known: {', '.join(sizes)}")
        return v

    @model_validator(mode="after")
    def _memory(self) -> "FlyService":
        base = prices()["sizes"][self.size]["base_memory_mb"]
        if self.memory_mb % 256 or self.memory_mb < base:
            raise ValueError(f"memory_mb is a multiple of 256 and at least {self.size}'s {base} "
                             f"(got {self.memory_mb})")
        return self

    @property
    def cpu_kind(self) -> str:
        return prices()["sizes"][self.size]["cpu_kind"]

    @property
    def cpus(self) -> int:
        return int(prices()["sizes"][self.size]["cpus"])

    @property
    def url(self) -> str:
        return f"https://{self.app}.fly.dev"

    def gateway_key_env(self, name: str) -> str:
        return self.api_key_secret

    def server_env(self) -> Dict[str, str]:
        """The Machine's plain env: llama.cpp's options, never its key (an app secret)."""
        return {"LLAMA_ARG_HF_REPO": self.model, "LLAMA_ARG_HF_FILE": self.gguf, "LLAMA_ARG_ALIAS": self.served_name,
                "LLAMA_ARG_HOST": "0.0.0.0", "LLAMA_ARG_PORT": str(PORT), "LLAMA_CACHE": MODEL_PATH,
                "LLAMA_ARG_THREADS": str(self.cpus)}

    def estimate(self, name: str) -> ServiceEstimate:
        p = prices()
        row = p["sizes"][self.size]
        extra_gb = (self.memory_mb - row["base_memory_mb"]) / 1024
        hourly = (row["monthly_usd"] + extra_gb * p["extra_memory_gb_monthly_usd"]) / p["hours_in_price_month"]
        volume = self.volume_gb * p["volume_gb_monthly_usd"]
        return ServiceEstimate(
            service=name, provider=self.provider, size=f"{self.size} {self.memory_mb} MB",
            instance_hourly_usd=round(hourly, 6), always_on_monthly_usd=round(hourly * HOURS_IN_MONTH + volume, 2),
            busy_monthly_usd=0.0, max_instances=1,
            basis=f"always on, {self.size} {self.memory_mb} MB + {self.volume_gb} GB volume, reference {p['as_of']}")

    def describe(self) -> str:
        return f"{self.app} · {self.region} · {self.size} {self.memory_mb / 1024:g} GB · always on"
