"""Model storage: a private, versioned, encrypted GCS or S3 bucket for weights and checkpoints."""
from __future__ import annotations

import base64
import dataclasses
import json
from typing import Dict, Optional, Tuple

import pulumi

from components.workloads import BucketAccess
from core.spec import BucketSpec
from core.stamps import to_tags
from core.text import digest

TYPE = "gpu-estate:index:ModelBucket"


@dataclasses.dataclass(frozen=True)
class ModelBucketArgs:
    spec: BucketSpec
    project: str
    stack: str
    readers: Tuple[str, ...] = ()
    """Nodes that get read/write credentials scoped to this bucket and nothing else."""
    credentials: Optional[Tuple[pulumi.Input[str], pulumi.Input[str]]] = None
    """An existing bucket's (``spec.endpoint``) access key id and secret (secret outputs): every reader's."""


class ModelBucket(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    url: pulumi.Output[str]
    """``gs://...`` or ``s3://...``: the artifact root MLflow and the nodes use."""
    access: Dict[str, pulumi.Output[BucketAccess]]
    """Reader node -> its credentials (secret outputs)."""

    def __init__(self, name: str, args: ModelBucketArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket_name = args.spec.store_name(args.project, args.stack, name)
        if args.spec.endpoint is not None:
            self._existing(name, args)
            return
        if args.spec.provider == "gcs":
            self._create_gcs(name, bucket_name, args.spec, child)
        else:
            self._create_s3(name, bucket_name, args.spec, child)
        self.access = {}
        for reader in args.readers:
            if args.spec.provider == "gcs":
                self.access[reader] = self._gcs_reader(name, bucket_name, reader, args.stack, child)
            else:
                self.access[reader] = self._s3_reader(name, bucket_name, reader, child)
        self.register_outputs({"bucket_name": self.bucket_name, "url": self.url})

    def _existing(self, name: str, args: ModelBucketArgs) -> None:
        """A bucket that exists at an S3-compatible endpoint: nothing is created; its readers share the access
        key the stack holds as config secrets (a store such as MinIO or R2 scopes keys in its own console)."""
        self.bucket_name = pulumi.Output.from_input(name)
        self.url = pulumi.Output.from_input(f"s3://{name}")
        key_id, secret = args.credentials or (None, None)
        endpoint = args.spec.endpoint
        self.access = {reader: pulumi.Output.secret(pulumi.Output.all(key_id, secret)).apply(
            lambda a: BucketAccess(url=f"s3://{name}", aws_access_key_id=a[0], aws_secret_access_key=a[1],
                                   endpoint=endpoint)) for reader in args.readers}
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
            labels={"estate-role": "model-storage", **to_tags({"monthly_usd": spec.monthly_usd})}, opts=opts)
        self.bucket_name = self.bucket.name
        self.url = self.bucket.name.apply(lambda n: f"gs://{n}")

    def _create_s3(self, name: str, bucket_name: str, spec: BucketSpec, opts: pulumi.ResourceOptions) -> None:
        import pulumi_aws as aws

        self.bucket = aws.s3.Bucket(f"{name}-bucket", bucket=bucket_name, opts=opts,
                                    tags={"estate-role": "model-storage", **to_tags({"monthly_usd": spec.monthly_usd})})
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

    def _gcs_reader(self, name: str, bucket_name: str, reader: str, stack: str,
                    opts: pulumi.ResourceOptions) -> pulumi.Output[BucketAccess]:
        """A service account per node with object admin on this bucket only, and its key."""
        import pulumi_gcp as gcp

        account_id = f"estate-{reader}"[:23].rstrip("-") + f"-{digest(f'{bucket_name}/{reader}')[:6]}"
        sa = gcp.serviceaccount.Account(f"{name}-{reader}-sa", account_id=account_id,
                                        display_name=f"{bucket_name}: node {reader} ({stack})", opts=opts)
        gcp.storage.BucketIAMMember(f"{name}-{reader}-access", bucket=self.bucket.name, role="roles/storage.objectAdmin",
                                    member=sa.email.apply(lambda e: f"serviceAccount:{e}"), opts=opts)
        key = gcp.serviceaccount.Key(f"{name}-{reader}-key", service_account_id=sa.name, opts=opts)
        url = f"gs://{bucket_name}"
        return pulumi.Output.secret(key.private_key).apply(
            lambda k: BucketAccess(url=url, gcs_key_json=base64.b64decode(k).decode()))

    def _s3_reader(self, name: str, bucket_name: str, reader: str,
                   opts: pulumi.ResourceOptions) -> pulumi.Output[BucketAccess]:
        """An IAM user per node whose only policy is read/write on this bucket, and its access key."""
        import pulumi_aws as aws

        user = aws.iam.User(f"{name}-{reader}-user", name=f"{bucket_name}-{reader}"[:64],
                            tags={"estate-role": "model-storage", "estate-node": reader}, opts=opts)
        policy = self.bucket.arn.apply(lambda arn: json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": arn},
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                                           "s3:AbortMultipartUpload"], "Resource": f"{arn}/*"}]}))
        aws.iam.UserPolicy(f"{name}-{reader}-policy", user=user.name, policy=policy, opts=opts)
        key = aws.iam.AccessKey(f"{name}-{reader}-key", user=user.name, opts=opts)
        url = f"s3://{bucket_name}"
        return pulumi.Output.secret(pulumi.Output.all(key.id, key.secret)).apply(
            lambda a: BucketAccess(url=url, aws_access_key_id=a[0], aws_secret_access_key=a[1]))
