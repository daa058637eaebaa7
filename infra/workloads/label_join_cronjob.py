"""The label join, scheduled: a CronJob running the service image's `mlstack_service.label_join`.

Its own service account and Pod Identity role (infra/storage/label_prefixes.py label_join_statements): it reads the
prediction log and the labels and writes under the labelled prefix, and nothing else; it can't read a model package
or write one. The serving pods can't read what it reads: they only add log lines and labels.
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
from infra.storage.label_prefixes import label_join_statements
from infra.storage.model_bucket import ModelBucket
from infra.workloads.model_service import ModelService
from infra.workloads.objects import create
from infra.workloads.release_tracks import APP
from infra.workloads.s3_cronjob import s3_cronjob_spec

SERVICE_ACCOUNT = f"{APP}-label-join"


class LabelJoin(pulumi.ComponentResource):
    """Joins labels to logged predictions on `monitoring.predictionLog.joinSchedule`."""

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
        super().__init__("mlstack:workloads:LabelJoin", name, None, opts)
        settings = env.config.monitoring.prediction_log
        labels = {"app.kubernetes.io/name": SERVICE_ACCOUNT}
        self.role = pod_identity_role(
            name,
            cluster_name=cluster.name,
            cluster_arn=cluster.cluster.arn,
            namespace=service.namespace,
            service_account=SERVICE_ACCOUNT,
            policy=policy_document(label_join_statements(bucket.bucket_arn, keys.models.arn, settings)),
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
        image = pulumi.Output.concat(registry.repository_url, ":", deployed_image_tag())
        root = pulumi.Output.concat("s3://", bucket.bucket_name, "/")
        create(
            k8s.batch.v1.CronJob,
            f"{name}-cronjob",
            metadata={"name": SERVICE_ACCOUNT, "namespace": service.namespace, "labels": labels},
            spec=s3_cronjob_spec(
                schedule=settings.join_schedule,
                labels=labels,
                service_account=SERVICE_ACCOUNT,
                active_deadline_seconds=4 * 3600,
                container={
                    "name": "label-join",
                    "image": image,
                    "command": ["python", "-m", "mlstack_service.label_join"],
                    "args": [
                        "--model-name",
                        env.config.service.model_name,
                        "--predictions",
                        pulumi.Output.concat(root, settings.prefix),
                        "--feedback",
                        pulumi.Output.concat(root, settings.feedback_prefix),
                        "--output",
                        pulumi.Output.concat(root, settings.labelled_prefix),
                    ],
                    "env": [
                        {"name": "AWS_REGION", "value": env.region},
                        {"name": "TMPDIR", "value": "/tmp"},
                    ],
                    "resources": {
                        "requests": {"cpu": "500m", "memory": "1Gi"},
                        "limits": {"cpu": "1", "memory": "2Gi"},
                    },
                },
            ),
            # A create into a namespace that does not exist yet is retried for seconds only, then fails.
            opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[service_account])),
        )
        self.register_outputs({})
