"""MLflow: the tracking server, its artifacts in a storage bucket when the stack names one."""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Literal, Optional, Tuple

from core.kinds import WorkloadKind
from core.fields import NAMESPACE
from core.workloads.base import BaseWorkload, vm_only
from core.workloads.node_files import SECRETS_DIR, NodeSecrets

if TYPE_CHECKING:
    from core.spec import NodeSpec

ARTIFACTS_ENV = f"{SECRETS_DIR}/mlflow-artifacts.env"
"""MLflow's artifact store and its credentials (apart from ``mlflow.env``, its ``secret_env`` values)."""
BACKEND_STORE = "sqlite:////mlflow/mlflow.db"


class Mlflow(BaseWorkload):
    kind: Literal[WorkloadKind.MLFLOW] = WorkloadKind.MLFLOW
    artifact_bucket: Optional[str] = None
    """Name of a storage bucket (from ``storage``) holding the artifact root."""

    def own_env(self, node: "NodeSpec", name: str) -> Dict[str, str]:
        return {"MLFLOW_BACKEND_STORE_URI": BACKEND_STORE}

    def buckets_used(self) -> List[str]:
        return [self.artifact_bucket] if self.artifact_bucket else []

    def compose_service(self, node, name, service, secrets: Optional[NodeSecrets]):
        service = {**service, "command": ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]}
        top: Dict[str, object] = {}
        if self.artifact_bucket:
            service["command"] = [*service["command"], "--serve-artifacts"]
            service["env_file"] = [*service.get("env_file", []), ARTIFACTS_ENV]
            access = (secrets or NodeSecrets()).buckets.get(self.artifact_bucket)
            if access is not None and access.gcs_key_json:
                service["secrets"] = [{"source": "bucket_key", "target": "bucket.json"}]
                top["bucket_key"] = {"file": f"{SECRETS_DIR}/{self.artifact_bucket}-gcs.json"}
        return service, top

    def bucket_files(self, node, name, secrets: NodeSecrets) -> List[Tuple[str, str]]:
        if not self.artifact_bucket:
            return []
        access = secrets.buckets.get(self.artifact_bucket)
        if access is None:
            raise ValueError(f"mlflow's artifact bucket {self.artifact_bucket!r} has no credentials for this node")
        lines = [f"MLFLOW_ARTIFACTS_DESTINATION={access.url}/mlflow"]
        if access.gcs_key_json:
            lines.append("GOOGLE_APPLICATION_CREDENTIALS=/run/secrets/bucket.json")
        else:
            lines += [f"AWS_ACCESS_KEY_ID={access.aws_access_key_id}",
                      f"AWS_SECRET_ACCESS_KEY={access.aws_secret_access_key}"]
            if access.endpoint:
                lines.append(f"MLFLOW_S3_ENDPOINT_URL={access.endpoint}")  # an S3-compatible store of the stack's
        return [(ARTIFACTS_ENV, "\n".join(lines) + "\n")]

    def problems(self, spec, node_name: str, name: str, path: str):
        if not self.artifact_bucket:
            return []
        node = spec.nodes[node_name]
        out = vm_only(self, node, path)
        if self.artifact_bucket not in spec.storage:
            out.append((f"{path}.artifact_bucket", f"no bucket {self.artifact_bucket!r} in {NAMESPACE}:storage"))
        return out
