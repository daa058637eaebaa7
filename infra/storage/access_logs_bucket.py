"""The bucket the model API's ALB writes its access logs to (prod by default: `ingress.accessLogs`).

ALB access logs support only SSE-S3 (Elastic Load Balancing User Guide, "Enable access logs for your Application
Load Balancer", enable-access-logging.html: "The only server-side encryption option that's supported is Amazon
S3-managed keys (SSE-S3)"), so this bucket is not under a KMS key. Who may write: Elastic Load Balancing's log
delivery, under `<prefix>/AWSLogs/<account>/`. AWS documents two principals: the service principal
`logdelivery.elasticloadbalancing.amazonaws.com` for Regions available since August 2022, and the Region's Elastic
Load Balancing account for the older ones (us-east-1, us-west-2: this stack's); the policy names both, the account
from the provider's aws.elb.getServiceAccount. Logs expire after `retentionDays`; nothing else writes here.
"""

import pulumi
import pulumi_aws as aws

from infra.config import Environment
from infra.security.iam import policy_document
from infra.workloads.alb_ingress import ACCESS_LOGS_PREFIX

LOG_DELIVERY_SERVICE = "logdelivery.elasticloadbalancing.amazonaws.com"
RETENTION_DAYS = 90


class AccessLogsBucket(pulumi.ComponentResource):
    """Private, SSE-S3, TLS-only; ELB log delivery may put objects under the ALB's prefix and nothing else."""

    bucket_name: pulumi.Output[str]

    def __init__(self, name: str, env: Environment, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlstack:storage:AccessLogsBucket", name, None, opts)
        protect = env.config.protect
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket_prefix=f"{env.prefix}-alb-logs-",
            force_destroy=not protect,
            opts=pulumi.ResourceOptions(parent=self, protect=protect, retain_on_delete=protect),
        )
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    )
                )
            ],
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-access-logs",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=RETENTION_DAYS),
                )
            ],
            opts=child,
        )
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        elb_account = aws.elb.get_service_account_output(opts=pulumi.InvokeOutputOptions(parent=self))
        logs = pulumi.Output.concat(bucket.arn, f"/{ACCESS_LOGS_PREFIX}/AWSLogs/", account.account_id, "/*")
        aws.s3.BucketPolicy(
            f"{name}-policy",
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
                    },
                    {
                        "Sid": "ElbLogDelivery",
                        "Effect": "Allow",
                        "Principal": {"Service": LOG_DELIVERY_SERVICE},
                        "Action": "s3:PutObject",
                        "Resource": logs,
                    },
                    {
                        "Sid": "ElbAccountOfTheRegion",
                        "Effect": "Allow",
                        "Principal": {"AWS": elb_account.arn},
                        "Action": "s3:PutObject",
                        "Resource": logs,
                    },
                ]
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ownership]),
        )
        self.bucket_name = bucket.id
        self.register_outputs({"bucketName": self.bucket_name})
