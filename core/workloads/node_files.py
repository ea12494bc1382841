"""Where a node keeps what the estate puts on it, and the secrets it is given.

Persistent data lives in bind mounts under ``/opt/estate/data/<workload>``, so replacing a container
keeps models, chats, runs and databases. Secrets arrive after boot over SSH as 0600 files under
``/opt/estate/secrets``: never in a vendor's env, start script or user-data.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional

ESTATE_DIR = "/opt/estate"
DATA_DIR = f"{ESTATE_DIR}/data"
SECRETS_DIR = f"{ESTATE_DIR}/secrets"
SECRETS_MANIFEST = f"{SECRETS_DIR}/.manifest"
COMPOSE_FILE = f"{ESTATE_DIR}/compose.yaml"
COMPOSE_PROJECT = "estate"
RUN_DIR = f"{ESTATE_DIR}/run"
WORKLOADS_SCRIPT = f"{ESTATE_DIR}/run-workloads.sh"
WORKLOADS_PID = f"{RUN_DIR}/workloads.pid"
"""Process group of a container node's workloads, restarted when its secrets change."""
IDLE_SCRIPT = "/usr/local/sbin/estate-idle"
CHECKPOINT_SCRIPT = f"{ESTATE_DIR}/fetch-checkpoints.sh"
"""Where machines launched before model files were resources of their own keep the script that fetched them
at boot (``providers.gpu_instance.without_boot_fetch``); removed with the node's workloads."""


@dataclasses.dataclass(frozen=True)
class BucketAccess:
    """Credentials a node holds for one model bucket (values are secrets)."""

    url: str
    """``gs://...`` or ``s3://...``."""
    gcs_key_json: Optional[str] = None
    aws_access_key_id: Optional[str] = None
    aws_secret_access_key: Optional[str] = None
    endpoint: Optional[str] = None
    """An S3-compatible API other than AWS's (``storage.<bucket>.endpoint``); None: AWS S3 or GCS."""


@dataclasses.dataclass(frozen=True)
class NodeSecrets:
    pg_password: Optional[str] = None
    """The generated password of the node's workload that needs one (``generated_password``)."""
    buckets: Dict[str, BucketAccess] = dataclasses.field(default_factory=dict)
    env: Dict[str, str] = dataclasses.field(default_factory=dict)
    """Values of the workloads' ``secret_env`` names."""
