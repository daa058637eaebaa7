"""Scheduled batch scoring: a CronJob running the service image's batch scorer over an S3 prefix.

The job has its own service account and Pod Identity role: it reads the model and `batch.inputPrefix` and writes
`batch.outputPrefix`. The serving pods' role reads the model only, so a compromised serving pod can neither read
the batch inputs nor overwrite the batch results.
"""

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.compute.eks_cluster import EksCluster
from infra.config import Environment
from infra.registry.ecr import ContainerRegistry
from infra.release_state import deployed_image_tag
from infra.security.iam import policy_document
from infra.security.kms import EncryptionKeys
from infra.security.pod_identity import pod_identity_role
from infra.storage.model_bucket import ModelBucket
from infra.workloads.model_service import ModelService
from infra.workloads.objects import create
from infra.workloads.pod_template import MODEL_CACHE_DIR
from infra.workloads.release_tracks import APP
from infra.workloads.s3_cronjob import s3_cronjob_spec

SERVICE_ACCOUNT = f"{APP}-batch"


class BatchScoring(pulumi.ComponentResource):
    """Reads `batch.inputPrefix`, writes `batch.outputPrefix`: the serving image under an identity of its own."""

    role: aws.iam.Role

    def __init__(
        self,
        name: str,
        env: Environment,
        *,
        cluster: EksCluster,
        service: ModelService,
        registry: ContainerRegistry,
        bucket: ModelBucket,
        keys: EncryptionKeys,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:workloads:BatchScoring", name, None, opts)
        settings = env.config.batch
        arn = bucket.bucket_arn
        labels = {"app.kubernetes.io/name": SERVICE_ACCOUNT}
        self.role = pod_identity_role(
            name,
            cluster_name=cluster.name,
            cluster_arn=cluster.cluster.arn,
            namespace=service.namespace,
            service_account=SERVICE_ACCOUNT,
            policy=policy_document(
                [
                    *bucket.read_models_statements(keys.models.arn),
                    {
                        "Effect": "Allow",
                        "Action": ["s3:GetObject"],
                        "Resource": pulumi.Output.concat(arn, "/", settings.input_prefix, "*"),
                    },
                    {
                        "Effect": "Allow",
                        "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                        "Resource": pulumi.Output.concat(arn, "/", settings.output_prefix, "*"),
                    },
                    {
                        "Effect": "Allow",
                        "Action": ["s3:ListBucket"],
                        "Resource": arn,
                        "Condition": {
                            "StringLike": {"s3:prefix": [f"{settings.input_prefix}*", f"{settings.output_prefix}*"]}
                        },
                    },
                    {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": keys.models.arn},
                ]
            ),
            opts=pulumi.ResourceOptions(parent=self),
        ).role
        in_namespace = pulumi.ResourceOptions(
            parent=self, provider=service.provider, depends_on=[service.namespace_resource]
        )
        service_account = create(
            k8s.core.v1.ServiceAccount,
            f"{name}-service-account",
            metadata={"name": SERVICE_ACCOUNT, "namespace": service.namespace, "labels": labels},
            automount_service_account_token=False,
            opts=in_namespace,
        )
        service_config = env.config.service
        image = pulumi.Output.concat(registry.repository_url, ":", deployed_image_tag())
        prefix = pulumi.Output.concat("s3://", bucket.bucket_name, "/")
        model_uri = bucket.model_uri(service_config.model_name, service_config.model_version)
        create(
            k8s.batch.v1.CronJob,
            f"{name}-cronjob",
            metadata={
                "name": f"{APP}-batch",
                "namespace": service.namespace,
                "labels": labels,
            },
            spec=s3_cronjob_spec(
                schedule=settings.schedule,
                labels=labels,
                service_account=SERVICE_ACCOUNT,
                active_deadline_seconds=6 * 3600,
                container={
                    "name": "batch",
                    "image": image,
                    "command": ["python", "-m", "mlstack_service.batch"],
                    "args": [
                        "--model",
                        model_uri,
                        "--input",
                        pulumi.Output.concat(prefix, settings.input_prefix),
                        "--output",
                        pulumi.Output.concat(prefix, settings.output_prefix),
                    ],
                    "env": [
                        {"name": "AWS_REGION", "value": env.region},
                        {"name": "TMPDIR", "value": "/tmp"},
                        {"name": "MLSTACK_MODEL_CACHE_DIR", "value": MODEL_CACHE_DIR},
                    ],
                    "resources": {
                        "requests": {"cpu": "1", "memory": "1Gi"},
                        "limits": {"cpu": "2", "memory": "2Gi"},
                    },
                },
            ),
            # A create into a namespace that does not exist yet is retried for seconds only, then fails.
            opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[service_account])),
        )
        self.register_outputs({})
