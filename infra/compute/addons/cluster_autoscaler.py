"""Cluster Autoscaler (Helm, pinned) with its own IAM role through EKS Pod Identity.

Chosen over Karpenter: the pools stay EKS managed node groups whose sizes sit in the stack file, the preview
and the cost estimate; Karpenter would bring its own CRDs, an interruption queue and nodes outside them.
"""

import pulumi

from infra.compute.addons.helm import pinned_release
from infra.compute.eks_cluster import EksCluster
from infra.config import Environment
from infra.security.iam import policy_document
from infra.security.pod_identity import pod_identity_role
from infra.versions import CLUSTER_AUTOSCALER_CHART, CLUSTER_AUTOSCALER_IMAGES

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "cluster-autoscaler"
READ_ACTIONS = [
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "autoscaling:DescribeTags",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
    "eks:DescribeNodegroup",
]
SCALE_ACTIONS = ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]


def autoscaler_policy_statements(cluster_name: str) -> list[dict[str, object]]:
    """Read anything; change only the ASGs EKS tagged as this cluster's."""
    return [
        {"Effect": "Allow", "Action": READ_ACTIONS, "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": SCALE_ACTIONS,
            "Resource": "*",
            "Condition": {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}},
        },
    ]


def autoscaler_image(kubernetes_version: str) -> dict[str, str]:
    """The chart's `image.repository` and `image.tag` (tag@digest) for the autoscaler matching the cluster's minor."""
    repository, _, tag = CLUSTER_AUTOSCALER_IMAGES[kubernetes_version].value.partition(":")
    return {"repository": repository, "tag": tag}


def autoscaler_values(cluster_name: str, region: str, kubernetes_version: str) -> dict[str, object]:
    return {
        "cloudProvider": "aws",
        "awsRegion": region,
        "autoDiscovery": {"clusterName": cluster_name},
        "image": autoscaler_image(kubernetes_version),
        "rbac": {"serviceAccount": {"create": True, "name": SERVICE_ACCOUNT}},
        "extraArgs": {
            "balance-similar-node-groups": True,
            "skip-nodes-with-system-pods": False,
            "expander": "least-waste",
        },
        "priorityClassName": "system-cluster-critical",
    }


class ClusterAutoscaler(pulumi.ComponentResource):
    """The IAM role, its Pod Identity association and the Helm release."""

    def __init__(
        self,
        name: str,
        env: Environment,
        cluster: EksCluster,
        depends_on: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`depends_on` must hold the AWS Load Balancer Controller's release: the chart creates a Service, which that
        controller's webhook (failurePolicy Fail) must be up to admit."""
        super().__init__("mlstack:compute:ClusterAutoscaler", name, None, opts)
        eks = env.config.compute.eks
        assert eks is not None
        child = pulumi.ResourceOptions(parent=self)
        identity = pod_identity_role(
            name,
            cluster_name=cluster.name,
            cluster_arn=cluster.cluster.arn,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            policy=policy_document(autoscaler_policy_statements(env.cluster_name)),
            opts=child,
        )
        pinned_release(
            f"{name}-release",
            release_name="cluster-autoscaler",
            chart=CLUSTER_AUTOSCALER_CHART,
            namespace=NAMESPACE,
            values=autoscaler_values(env.cluster_name, env.region, eks.version),
            opts=pulumi.ResourceOptions(
                parent=self, provider=cluster.provider, depends_on=[identity.association, *depends_on]
            ),
        )
        self.register_outputs({})
