"""An IAM role for one Kubernetes service account, through EKS Pod Identity."""

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.security.iam import pod_identity_trust_policy


@dataclass(frozen=True)
class PodRole:
    role: aws.iam.Role
    association: aws.eks.PodIdentityAssociation


def pod_identity_role(
    name: str,
    *,
    cluster_name: pulumi.Input[str],
    cluster_arn: pulumi.Input[str],
    namespace: str,
    service_account: str,
    policy: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> PodRole:
    """A role Pod Identity assumes for this one service account of this cluster, its inline policy, its association."""
    role = aws.iam.Role(
        f"{name}-role",
        assume_role_policy=pod_identity_trust_policy(cluster_arn, namespace, service_account),
        opts=opts,
    )
    aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=policy, opts=opts)
    association = aws.eks.PodIdentityAssociation(
        f"{name}-pod-identity",
        cluster_name=cluster_name,
        namespace=namespace,
        service_account=service_account,
        role_arn=role.arn,
        opts=opts,
    )
    return PodRole(role, association)
