"""The value types every stack key is made of, and the base of the stack's models.

Every stack value that reaches a script, unit, Caddyfile, compose file, cloud-init document, DNS record or
vendor payload is one of these: a precise pattern, refused with its key path before any resource.
"""
from __future__ import annotations

import enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NAMESPACE = "gpu-estate"
"""The config namespace of every stack key (declared in Pulumi.yaml)."""


class Access(str, enum.Enum):
    SSH = "ssh"
    """Services listen on the node's loopback and nothing but SSH is open: the gateway's autossh units
    and the model library reach them through SSH port forwards."""
    DIRECT = "direct"
    """Services are published on the provider's mapped ports: only for private networks and the sandbox,
    since Ollama and ComfyUI have no auth of their own."""


# or vendor payload is one of these: a precise pattern, refused with its key path before any resource.
# None admits a quote, a '$', a backtick, whitespace where none belongs, a newline or a NUL, or a leading
# '-' where a value could be read as a flag.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
Hostname = Annotated[str, StringConstraints(max_length=253, pattern=rf"^{_LABEL}(\.{_LABEL})*$")]
"""A DNS name or an IPv4 address."""
Address = Annotated[str, StringConstraints(max_length=253, pattern=rf"^({_LABEL}(\.{_LABEL})*|[0-9A-Fa-f:]{{2,39}})$")]
"""A host name, an IPv4 or an IPv6 address."""
UnixUser = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]
ImageRef = Annotated[str, StringConstraints(
    max_length=255,
    pattern=r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$")]
"""A container image reference: registry/repository[:tag][@digest]."""
VmImage = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
"""An environment variable name (never ``-p ...``, which Vast.ai would read as a port mapping)."""
EnvValue = Annotated[str, StringConstraints(max_length=4096, pattern=r"^[^\x00\r\n]*$")]
DownloadUrl = Annotated[str, StringConstraints(
    max_length=2048, pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/+=&?:@,-]*)?$")]
UrlPath = Annotated[str, StringConstraints(max_length=200, pattern=r"^/[A-Za-z0-9._~/-]*$")]
Email = Annotated[str, StringConstraints(max_length=254, pattern=r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")]
Region = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")]
RegistryHost = Annotated[str, StringConstraints(
    max_length=261, pattern=rf"^({_LABEL}(\.{_LABEL})*|\[[0-9A-Fa-f:]{{2,39}}\])(:[0-9]{{1,5}})?$")]
"""A model registry as Ollama names it: a host or ``[IPv6]``, and its port (``127.0.0.1:5000``)."""
ModelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")]
"""An alias, an Ollama tag or an external model name."""
WorkloadName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,30}$")]
"""A workload's name on its node: its compose service, data directory and route (``<node>/<name>``)."""
Arg = Annotated[str, StringConstraints(max_length=1024, pattern=r"^[^\x00\r\n]*$")]
"""One argument of a container's command: passed as a list element, never through a shell."""
ContainerPath = Annotated[str, StringConstraints(max_length=200, pattern=r"^/[A-Za-z0-9._/-]*$")]
HfRepo = Annotated[str, StringConstraints(max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")]
"""A Hugging Face repository id, ``<owner>/<name>``."""
GgufFile = Annotated[str, StringConstraints(max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*\.gguf$")]
"""A GGUF file inside a Hugging Face repository (``qwen2.5-7b-instruct-q4_k_m.gguf``)."""
BucketName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
HF_TOKEN = "HF_TOKEN"
"""The ``secret_env`` name of a Hugging Face token: gated repositories and checkpoint downloads read it."""
HF_HOSTS = ("huggingface.co", "hf.co")
CHECKPOINT_KINDS = ("checkpoints", "vae", "loras", "unet", "clip", "controlnet", "upscale_models", "embeddings",
                    "diffusion_models", "text_encoders")


class StackModel(BaseModel):
    """The base of every model of the stack: unknown keys refused, values frozen once parsed, and each
    field's docstring its description (what the key reference, ``docs/keys.md``, prints)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True)



class Checkpoint(StackModel):
    """A file ComfyUI loads, downloaded onto its node and checked by its sha256 (``providers/model_files.py``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+\.(safetensors|ckpt|gguf)$")
    """The file's name in its models/ subfolder (``.safetensors``, ``.ckpt`` or ``.gguf``)."""
    url: DownloadUrl
    """Where it is downloaded from (http or https)."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Its sha256: a download that differs is removed and the fetch fails."""
    size_gb: float = Field(gt=0)
    """Its size, counted on the node's disk."""
    kind: str = Field("checkpoints", pattern=rf"^({'|'.join(CHECKPOINT_KINDS)})$")
    """Subfolder of ComfyUI's models/ directory: checkpoints, vae, loras, unet, clip, ..."""
    gated: bool = False
    """A Hugging Face file behind a licence to accept (FLUX.1-dev, SD 3.5): it is downloaded with the
    workload's ``HF_TOKEN`` (its ``secret_env``), and refused at preview without one."""

    @property
    def on_hugging_face(self) -> bool:
        """Whether the file is served by Hugging Face, the one host its token is sent to."""
        host = self.url.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0].lower()
        return host in HF_HOSTS
