"""KMS keys, one per purpose, rotated yearly; their policies leave access to IAM in this account."""

import pulumi
import pulumi_aws as aws

from infra.config import Environment

KEY_DELETION_WINDOW_DAYS = 30


class EncryptionKeys(pulumi.ComponentResource):
    """Customer-managed keys for the registry, the model bucket and (with EKS) the cluster's secrets and volumes."""

    registry: aws.kms.Key
    models: aws.kms.Key
    cluster: aws.kms.Key | None

    def __init__(self, name: str, env: Environment, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlstack:security:EncryptionKeys", name, None, opts)
        self._name = name
        self._env = env
        self.registry = self._create_key("registry", "container images in ECR")
        self.models = self._create_key("models", "model packages in S3")
        self.cluster = (
            self._create_key("cluster", "Kubernetes secrets (envelope encryption) and EBS volumes")
            if env.config.compute.mode == "eks"
            else None
        )
        self.register_outputs({"registryKeyArn": self.registry.arn, "modelsKeyArn": self.models.arn})

    def _create_key(self, purpose: str, description: str) -> aws.kms.Key:
        """A symmetric key with rotation on; stateful, so retained on delete where the stack is protected."""
        protect = self._env.config.protect
        key = aws.kms.Key(
            f"{self._name}-{purpose}",
            description=f"{self._env.prefix}: {description}",
            enable_key_rotation=True,
            deletion_window_in_days=KEY_DELETION_WINDOW_DAYS,
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
