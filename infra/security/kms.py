"""KMS keys, one per purpose, rotated yearly.

The registry and models keys have key policies that separate administrators from users:
- administrators (the bootstrap's deploy role, which creates and updates the keys, and `compute.eks.adminPrincipalArns`)
  manage the key (describe, policy, rotation, tags, deletion) and can't use it for data;
- users are this account's IAM principals allowed by their own policies, and only through the service the key is
  for (`kms:ViaService`: S3 for the models key, ECR for the registry key), so no principal can decrypt a model
  package or an image layer with a direct KMS call.
The cluster key (EKS secrets envelope encryption, EBS volumes through EC2 and Auto Scaling's service-linked role)
keeps the default policy that delegates to IAM: its users are AWS services acting through grants, and a wrong
condition there stops nodes from booting.
"""

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.bootstrap.names import DEPLOY_ROLE_NAME, role_arn
from infra.config import Environment

KEY_DELETION_WINDOW_DAYS = 30
ADMIN_ACTIONS = (
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:RotateKeyOnDemand",
)
USE_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey")
# ECR creates a grant on the key for each repository (its pulls decrypt through it).
GRANT_ACTIONS = ("kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant")


def key_policy(*, account_id: str, partition: str, administrators: list[str], via_service: str) -> dict[str, Any]:
    """A key policy: `administrators` manage the key; the account's principals use it only through `via_service`."""
    account = f"arn:{partition}:iam::{account_id}:root"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "KeyAdministrators",
                "Effect": "Allow",
                "Principal": {"AWS": administrators},
                "Action": list(ADMIN_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": "KeyUseThroughItsServiceOnly",
                "Effect": "Allow",
                "Principal": {"AWS": account},
                "Action": [*USE_ACTIONS, *GRANT_ACTIONS],
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:ViaService": via_service, "kms:CallerAccount": account_id}},
            },
        ],
    }


class EncryptionKeys(pulumi.ComponentResource):
    """Customer-managed keys for the registry, the model bucket and (with EKS) the cluster's secrets and volumes."""

    registry: aws.kms.Key
    models: aws.kms.Key
    cluster: aws.kms.Key | None

    def __init__(self, name: str, env: Environment, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlstack:security:EncryptionKeys", name, None, opts)
        self._name = name
        self._env = env
        self.registry = self._create_key("registry", "container images in ECR", via_service="ecr")
        self.models = self._create_key("models", "model packages in S3", via_service="s3")
        self.cluster = (
            self._create_key("cluster", "Kubernetes secrets (envelope encryption) and EBS volumes")
            if env.config.compute.mode == "eks"
            else None
        )
        self.register_outputs({"registryKeyArn": self.registry.arn, "modelsKeyArn": self.models.arn})

    def _policy(self, via_service: str) -> pulumi.Output[str]:
        eks = self._env.config.compute.eks
        extra_admins = list(eks.admin_principal_arns) if eks and self._env.config.compute.mode == "eks" else []
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self))
        return pulumi.Output.all(account.account_id, partition.partition).apply(
            lambda values: json.dumps(
                key_policy(
                    account_id=values[0],
                    partition=values[1],
                    administrators=[role_arn(values[0], DEPLOY_ROLE_NAME, values[1]), *extra_admins],
                    via_service=f"{via_service}.{self._env.region}.amazonaws.com",
                )
            )
        )

    def _create_key(self, purpose: str, description: str, via_service: str | None = None) -> aws.kms.Key:
        """A symmetric key with rotation on; stateful, so retained on delete where the stack is protected.
        With `via_service`, the key policy above; without, AWS's default (the account's IAM decides)."""
        protect = self._env.config.protect
        key = aws.kms.Key(
            f"{self._name}-{purpose}",
            description=f"{self._env.prefix}: {description}",
            enable_key_rotation=True,
            deletion_window_in_days=KEY_DELETION_WINDOW_DAYS,
            policy=self._policy(via_service) if via_service else None,
            tags={"Name": f"{self._env.prefix}-{purpose}"},
            opts=pulumi.ResourceOptions(parent=self, protect=protect, retain_on_delete=protect),
        )
        aws.kms.Alias(
            f"{self._name}-{purpose}-alias",
            name=f"alias/{self._env.prefix}-{purpose}",
            target_key_id=key.key_id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return key
