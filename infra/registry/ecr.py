"""The ECR repository for the model service image."""

import json

import pulumi
import pulumi_aws as aws

from infra.config import Environment
from infra.security.kms import EncryptionKeys

SERVICE_IMAGE = "model-service"


def lifecycle_policy(keep_tagged: int, untagged_days: int) -> str:
    """Expire untagged images after some days, keep the newest tagged ones."""
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"expire untagged images after {untagged_days} days",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": untagged_days,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "description": f"keep the last {keep_tagged} tagged images",
                    "selection": {
                        "tagStatus": "tagged",
                        "tagPatternList": ["*"],
                        "countType": "imageCountMoreThan",
                        "countNumber": keep_tagged,
                    },
                    "action": {"type": "expire"},
                },
            ]
        }
    )


class ContainerRegistry(pulumi.ComponentResource):
    """Scans on push, immutable tags, KMS-encrypted, pruned by a lifecycle policy."""

    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]

    def __init__(
        self, name: str, env: Environment, keys: EncryptionKeys, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlstack:registry:ContainerRegistry", name, None, opts)
        settings = env.config.registry
        protect = env.config.protect
        repository = aws.ecr.Repository(
            f"{name}-{SERVICE_IMAGE}",
            name=f"{env.prefix}/{SERVICE_IMAGE}",
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS", kms_key=keys.registry.arn)
            ],
            # Outside protected stacks a teardown may delete a repository that still holds images.
            force_delete=not protect,
            opts=pulumi.ResourceOptions(parent=self, protect=protect, retain_on_delete=protect),
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-{SERVICE_IMAGE}-lifecycle",
            repository=repository.name,
            policy=lifecycle_policy(settings.keep_tagged_images, settings.untagged_expiry_days),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.repository_url = repository.repository_url
        self.repository_arn = repository.arn
        self.register_outputs({"repositoryUrl": self.repository_url, "repositoryArn": self.repository_arn})
