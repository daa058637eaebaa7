"""The S3 bucket for model packages: versioned, SSE-KMS, private, TLS only."""

import pulumi
import pulumi_aws as aws

from infra.config import Environment
from infra.security.iam import policy_document
from infra.security.kms import EncryptionKeys


class ModelBucket(pulumi.ComponentResource):
    """Model packages live under `modelPrefix`, one folder per name and version."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    model_prefix: str

    def __init__(
        self, name: str, env: Environment, keys: EncryptionKeys, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlstack:storage:ModelBucket", name, None, opts)
        self._name = name
        settings = env.config.model_bucket
        protect = env.config.protect
        child = pulumi.ResourceOptions(parent=self)
        self._bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket_prefix=f"{env.prefix}-models-",
            force_destroy=not protect,
            opts=pulumi.ResourceOptions(parent=self, protect=protect, retain_on_delete=protect),
        )
        bucket_id = self._bucket.id
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket_id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket_id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket_id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket_id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms", kms_master_key_id=keys.models.arn
                    ),
                    # S3 Bucket Keys cut KMS requests (and their cost) by orders of magnitude.
                    bucket_key_enabled=True,
                )
            ],
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket_id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-noncurrent-versions",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=settings.noncurrent_version_expiry_days
                    ),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=7
                    ),
                )
            ],
            opts=child,
        )
        arn = self._bucket.arn
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket_id,
            policy=policy_document(
                [
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [arn, pulumi.Output.concat(arn, "/*")],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ]
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ownership]),
        )
        self.bucket_name = bucket_id
        self.bucket_arn = arn
        self.model_prefix = settings.model_prefix
        self.register_outputs({"bucketName": self.bucket_name, "bucketArn": self.bucket_arn})

    def model_uri(self, model_name: str, model_version: str) -> pulumi.Output[str]:
        return pulumi.Output.concat(
            "s3://", self.bucket_name, "/", self.model_prefix, model_name, "/", model_version, "/"
        )

    def read_models_statements(self, models_key_arn: pulumi.Output[str]) -> list[dict[str, object]]:
        """IAM statements that read model packages, and nothing else in the bucket."""
        return [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": pulumi.Output.concat(self.bucket_arn, "/", self.model_prefix, "*"),
            },
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": self.bucket_arn,
                "Condition": {"StringLike": {"s3:prefix": [f"{self.model_prefix}*"]}},
            },
            {"Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": models_key_arn},
        ]
