"""The operator's own models: an Ollama model made from a GGUF in the estate's bucket, or from the version an
MLflow registry alias names, with its Modelfile's template, system prompt and parameters.

    gguf_models:
      myai:prod:
        source: gs://acme-models/models/acme/myai/3/model.gguf    # s3://..., or models:/myai@production
        sha256: 9f2c...                                           # the GGUF's; an alias's version carries it
        parameters: {temperature: 0.2, num_ctx: 8192}

The stack names the version: promoting is naming a newer one, rolling back naming the older one. An alias
is resolved when the program runs (so at preview) against the tracking server's REST API, to the version's
``source`` and its ``sha256`` tag (``providers/mlflow_registry.py``).
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple, Union

from pydantic import Field, model_validator

from core import buckets
from core.fields import StackModel

MLFLOW_PATTERN = r"^models:/([A-Za-z0-9][A-Za-z0-9._-]{0,255})@([A-Za-z][A-Za-z0-9_-]{0,254})$"
SHA256_TAG = "sha256"
"""The model version tag that carries its GGUF's sha256 in the MLflow registry."""
GGUF_FILE = "model.gguf"
"""The file a version's source directory holds (``models/{org}/{model}/{version}/model.gguf``)."""

ParameterValue = Union[bool, int, float, str, List[str]]


class GgufModel(StackModel):
    source: str = Field(max_length=1024)
    """``gs://<bucket>/<path>.gguf`` or ``s3://<bucket>/<path>.gguf`` (a GGUF in the estate's bucket), or
    ``models:/<name>@<alias>`` (the version an MLflow registry alias names; give ``tracking_uri``)."""
    sha256: Optional[str] = Field(None, pattern=r"^[0-9a-f]{64}$")
    """The GGUF's sha256 (hex); required for a bucket source. Ollama refuses bytes of another digest."""
    tracking_uri: Optional[str] = Field(None, max_length=512, pattern=r"^https?://[A-Za-z0-9.\[\]:-]+(/[^\s]*)?$")
    """The MLflow tracking server a ``models:/`` source is resolved against (``http://mlflow.internal:5000``)."""
    template: Optional[str] = Field(None, max_length=20000)
    """The Modelfile's TEMPLATE (Go template of the prompt); default the GGUF's own chat template."""
    system: Optional[str] = Field(None, max_length=20000)
    """The Modelfile's SYSTEM prompt."""
    parameters: Dict[str, ParameterValue] = Field(default_factory=dict)
    """The Modelfile's PARAMETERs (``num_ctx``, ``temperature``, ``stop``, ...), passed to Ollama as data."""

    @model_validator(mode="after")
    def _source(self) -> "GgufModel":
        for name in self.parameters:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
                raise ValueError(f"parameters: {name!r} is not an Ollama parameter name (num_ctx, temperature, ...)")
        if re.fullmatch(MLFLOW_PATTERN, self.source) is None and "://" in self.source:
            try:
                where = buckets.parse(self.source, "gguf")
            except ValueError as err:
                raise ValueError(f"source: {err}") from None
            if not self.sha256:
                raise ValueError(f"sha256: a {where.scheme}:// source needs the GGUF's sha256 "
                                 f"(sha256sum of {self.source})")
            if self.tracking_uri:
                raise ValueError("tracking_uri: only a models:/<name>@<alias> source is read from MLflow")
        elif re.fullmatch(MLFLOW_PATTERN, self.source):
            if not self.tracking_uri:
                raise ValueError(f"tracking_uri: {self.source!r} is resolved against an MLflow tracking server: "
                                 "give its URL")
            if self.sha256:
                raise ValueError(f"sha256: the version {self.source!r} names carries its own digest "
                                 f"(its {SHA256_TAG!r} tag); drop it here")
        else:
            raise ValueError(f"source: gs://<bucket>/<path>.gguf, s3://<bucket>/<path>.gguf or "
                             f"models:/<name>@<alias> (got {self.source!r})")
        return self

    def alias(self) -> Optional[Tuple[str, str]]:
        """(registered model, alias) of a ``models:/`` source, else None."""
        m = re.fullmatch(MLFLOW_PATTERN, self.source)
        return (m.group(1), m.group(2)) if m else None


def gguf_location(url: str) -> Optional[buckets.BucketUrl]:
    """The store, bucket and key of a GGUF's URL in one of the estate's buckets, else None."""
    return buckets.location(url, "gguf")


def version_file(source: str) -> str:
    """The GGUF a registered version's ``source`` names: the file itself, or ``model.gguf`` in its folder."""
    return source if source.endswith(".gguf") else f"{source.rstrip('/')}/{GGUF_FILE}"
