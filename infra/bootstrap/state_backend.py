"""The state backend CI logs in to: a versioned, KMS-encrypted, TLS-only, private bucket and the secrets key."""

import pulumi
import pulumi_aws as aws

from infra.bootstrap.names import SECRETS_KEY_ALIAS
from infra.security.iam import policy_document

# A DIY backend writes `.pulumi/meta.yaml` on its first login to an empty bucket (pulumi/pulumi
# pkg/backend/diy/meta.go, ensurePulumiMeta: version 1, project-scoped stacks). Writing it here means the read-only
# preview role never has to, even when a pull request's preview runs before the first deploy.
BACKEND_META_KEY = ".pulumi/meta.yaml"
BACKEND_META = "version: 1\n"


class StateBackend(pulumi.ComponentResource):
    """`pulumi login s3://<bucket>` and `--secrets-provider awskms://alias/mlstack-pulumi?region=<region>`."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    key_arn: pulumi.Output[str]

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlstack:bootstrap:StateBackend", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Losing either loses every stack's state: both are protected and kept if the bootstrap is destroyed.
        kept = pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True)
        key = aws.kms.Key(
            f"{name}-key",
            description="mlstack: Pulumi state bucket and stack secrets",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=kept,
        )
        aws.kms.Alias(f"{name}-key-alias", name=SECRETS_KEY_ALIAS, target_key_id=key.key_id, opts=child)
        bucket = aws.s3.Bucket(f"{name}-bucket", bucket_prefix="mlstack-pulumi-state-", opts=kept)
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        # Every checkpoint is a new object version: a bad `pulumi up` can be undone from the previous one.
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child,
        )
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms", kms_master_key_id=key.arn
                    ),
                    bucket_key_enabled=True,
                )
            ],
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=policy_document(
                [
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [bucket.arn, pulumi.Output.concat(bucket.arn, "/*")],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ]
            ),
            # S3 refuses a bucket policy while the public access block is still being applied.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]),
        )
        aws.s3.BucketObjectv2(
            f"{name}-backend-meta",
            bucket=bucket.id,
            key=BACKEND_META_KEY,
            content=BACKEND_META,
            content_type="application/yaml",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[encryption]),
        )
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.key_arn = key.arn
        self.register_outputs({"bucketName": self.bucket_name, "keyArn": self.key_arn})
