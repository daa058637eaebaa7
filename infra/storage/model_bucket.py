"""The S3 bucket for model packages: versioned, SSE-KMS under the models key only, private, TLS only, write-once.

Who may write a model package (the bucket policy denies everyone else, account administrators included):
- the publish role: the bootstrap's retrain role (infra/bootstrap/names.py RETRAIN_ROLE_NAME), which retrain.yml
  assumes to publish a new version under `modelPrefix`, with conditional writes (If-None-Match), so an existing
  version is never overwritten;
- the deploy role (DEPLOY_ROLE_NAME), only for the bundled package's own folder (infra/storage/bundled_model.py):
  the stack seeds that one package before the pods start, and nothing else under `modelPrefix`.
Every object must be encrypted with the models key; a write naming another key (or SSE-S3) is refused.

Object Lock (GOVERNANCE, `modelBucket.retentionDays`) keeps every version of every object for the retention: a
published package can't be deleted or overwritten in place within it, even by the publish role (only a principal
allowed s3:BypassGovernanceRetention could, and the policy allows that to no one but the deploy role of a stack
that is not protected, whose `pulumi destroy` empties the bucket). Object Lock is switched on by its configuration
resource (S3 allows it on an existing versioned bucket), not the bucket's `objectLockEnabled`, which would replace
existing buckets.
"""

import json

import pulumi
import pulumi_aws as aws

from infra.bootstrap.names import DEPLOY_ROLE_NAME, RETRAIN_ROLE_NAME, role_arn
from infra.config import Environment
from infra.security.iam import POLICY_VERSION, Statement
from infra.security.kms import EncryptionKeys
from infra.storage.label_prefixes import lifecycle_rules

OBJECT_LOCK_MODE = "GOVERNANCE"
MODEL_WRITE_ACTIONS = ("s3:PutObject", "s3:PutObjectRetention", "s3:PutObjectLegalHold")
BYPASS_RETENTION = "s3:BypassGovernanceRetention"


def model_bucket_policy(
    *,
    bucket_arn: str,
    model_prefix: str,
    models_key_arn: str,
    publisher_arn: str,
    seeder_arn: str,
    seed_folder: str | None,
    protect: bool,
) -> list[Statement]:
    """The bucket policy's statements: TLS only, the models key only, model writes by the publisher (and the seeder
    in the bundled package's folder) only. `seed_folder` is the bundled package's folder, when the stack seeds it."""
    objects = f"{bucket_arn}/*"
    models = f"{bucket_arn}/{model_prefix}*"
    # Unprotected stacks empty the bucket on destroy, through the deploy role, past the retention; in protected
    # stacks no one may shorten it.
    bypass: Statement = {
        "Sid": "NoOneBypassesTheRetention" if protect else "OnlyTheDeployRoleBypassesTheRetention",
        "Effect": "Deny",
        "Principal": "*",
        "Action": BYPASS_RETENTION,
        "Resource": objects,
        **({} if protect else {"Condition": {"ArnNotEquals": {"aws:PrincipalArn": seeder_arn}}}),
    }
    statements: list[Statement] = [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, objects],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        {
            "Sid": "OnlyPublishersWriteModels",
            "Effect": "Deny",
            "Principal": "*",
            "Action": list(MODEL_WRITE_ACTIONS),
            "Resource": models,
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": [publisher_arn, seeder_arn]}},
        },
        {
            "Sid": "DeployRoleSeedsOnlyTheBundledPackage",
            "Effect": "Deny",
            "Principal": "*",
            "Action": list(MODEL_WRITE_ACTIONS),
            # No bundled package to seed: the deploy role writes no model at all.
            **({"NotResource": f"{bucket_arn}/{seed_folder}*"} if seed_folder else {"Resource": models}),
            "Condition": {"ArnEquals": {"aws:PrincipalArn": seeder_arn}},
        },
        bypass,
        {
            "Sid": "DenyOtherEncryption",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": objects,
            # Only when the header is there: without it, the bucket's default (the models key) applies.
            "Condition": {
                "StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
                "Null": {"s3:x-amz-server-side-encryption": "false"},
            },
        },
        {
            "Sid": "DenyOtherKmsKeys",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": objects,
            "Condition": {
                "StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": models_key_arn},
                "Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "false"},
            },
        },
        {
            # aws:kms without a key id means the AWS managed aws/s3 key, not the bucket's default.
            "Sid": "DenyKmsWithoutTheModelsKey",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": objects,
            "Condition": {
                "StringEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
                "Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "true"},
            },
        },
    ]
    return statements


class ModelBucket(pulumi.ComponentResource):
    """Model packages live under `modelPrefix`, one folder per name and version."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    model_prefix: str
    policy: aws.s3.BucketPolicy

    def __init__(
        self,
        name: str,
        env: Environment,
        keys: EncryptionKeys,
        *,
        seed_folder: str | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`seed_folder`: the folder (under the bucket) of the package the stack itself publishes, if any."""
        super().__init__("mlstack:storage:ModelBucket", name, None, opts)
        self._name = name
        settings = env.config.model_bucket
        prediction_log = env.config.monitoring.prediction_log
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
        versioning = aws.s3.BucketVersioning(
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
                ),
                # The prediction log and the labels expire after the retentions the stack sets (label_prefixes.py).
                *(lifecycle_rules(prediction_log) if prediction_log.enabled else []),
            ],
            opts=child,
        )
        # Object Lock needs versioning on first.
        aws.s3.BucketObjectLockConfiguration(
            f"{name}-object-lock",
            bucket=bucket_id,
            object_lock_enabled="Enabled",
            rule=aws.s3.BucketObjectLockConfigurationRuleArgs(
                default_retention=aws.s3.BucketObjectLockConfigurationRuleDefaultRetentionArgs(
                    mode=OBJECT_LOCK_MODE, days=settings.retention_days
                )
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        arn = self._bucket.arn
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self))
        policy = pulumi.Output.all(arn, keys.models.arn, account.account_id, partition.partition).apply(
            lambda values: model_bucket_policy(
                bucket_arn=values[0],
                model_prefix=settings.model_prefix,
                models_key_arn=values[1],
                publisher_arn=role_arn(values[2], RETRAIN_ROLE_NAME, values[3]),
                seeder_arn=role_arn(values[2], DEPLOY_ROLE_NAME, values[3]),
                seed_folder=seed_folder,
                protect=protect,
            )
        )
        # The resource keeps its first name (it was TLS-only), so existing stacks update the policy in place.
        self.policy = aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket_id,
            policy=policy.apply(lambda statements: json.dumps({"Version": POLICY_VERSION, "Statement": statements})),
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
