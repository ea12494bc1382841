"""Model storage: a private, versioned, encrypted GCS or S3 bucket for weights and checkpoints."""
from __future__ import annotations

import dataclasses
from typing import Optional

import pulumi

from components.spec import BucketSpec

TYPE = "gpu-estate:index:ModelBucket"


@dataclasses.dataclass(frozen=True)
class ModelBucketArgs:
    spec: BucketSpec
    project: str
    stack: str


class ModelBucket(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    url: pulumi.Output[str]
    """``gs://...`` or ``s3://...``: the artifact root MLflow and the nodes use."""

    def __init__(self, name: str, args: ModelBucketArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket_name = f"{args.project}-{args.stack}-{name}"
        if args.spec.provider == "gcs":
            self._create_gcs(name, bucket_name, args.spec, child)
        else:
            self._create_s3(name, bucket_name, args.spec, child)
        self.register_outputs({"bucket_name": self.bucket_name, "url": self.url})

    def _create_gcs(self, name: str, bucket_name: str, spec: BucketSpec, opts: pulumi.ResourceOptions) -> None:
        import pulumi_gcp as gcp

        self.bucket = gcp.storage.Bucket(
            f"{name}-bucket", name=bucket_name, location=spec.location,
            uniform_bucket_level_access=True, public_access_prevention="enforced",
            versioning=gcp.storage.BucketVersioningArgs(enabled=spec.versioning),
            lifecycle_rules=[gcp.storage.BucketLifecycleRuleArgs(
                action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                    days_since_noncurrent_time=spec.noncurrent_days, with_state="ARCHIVED"))],
            labels={"estate-role": "model-storage"}, opts=opts)
        self.bucket_name = self.bucket.name
        self.url = self.bucket.name.apply(lambda n: f"gs://{n}")

    def _create_s3(self, name: str, bucket_name: str, spec: BucketSpec, opts: pulumi.ResourceOptions) -> None:
        import pulumi_aws as aws

        self.bucket = aws.s3.Bucket(f"{name}-bucket", bucket=bucket_name, tags={"estate-role": "model-storage"},
                                    opts=opts)
        aws.s3.BucketPublicAccessBlock(f"{name}-private", bucket=self.bucket.id, block_public_acls=True,
                                       block_public_policy=True, ignore_public_acls=True,
                                       restrict_public_buckets=True, opts=opts)
        aws.s3.BucketVersioning(f"{name}-versioning", bucket=self.bucket.id,
                                versioning_configuration={"status": "Enabled" if spec.versioning else "Suspended"},
                                opts=opts)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-sse", bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"}, "bucket_key_enabled": True}],
            opts=opts)
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=self.bucket.id,
            rules=[{"id": "expire-noncurrent", "status": "Enabled", "filter": {},
                    "noncurrent_version_expiration": {"noncurrent_days": spec.noncurrent_days}}],
            opts=opts)
        self.bucket_name = self.bucket.bucket
        self.url = self.bucket.bucket.apply(lambda n: f"s3://{n}")
