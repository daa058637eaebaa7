"""IAM policy documents as plain data: trust policies and least-privilege statements."""

import json
from typing import Any

import pulumi
import pulumi_aws as aws

POLICY_VERSION = "2012-10-17"
Statement = dict[str, Any]


def trust_policy(service: str, extra_actions: tuple[str, ...] = ()) -> str:
    """A role that only `service` (e.g. ec2.amazonaws.com) can assume."""
    return json.dumps(
        {
            "Version": POLICY_VERSION,
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": ["sts:AssumeRole", *extra_actions]}
            ],
        }
    )


POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"


def account_of(arn: str) -> str:
    """The account field of an ARN (arn:partition:service:region:account:resource)."""
    return arn.split(":")[4]


def pod_identity_trust_document(cluster_arn: str, namespace: str, service_account: str) -> dict[str, Any]:
    """EKS Pod Identity may assume the role only for one service account of one cluster in this account.

    The conditions are the session tags Pod Identity sets when it assumes a role (AWS EKS User Guide, "Create IAM
    role with trust policy required by EKS Pod Identity", pod-id-role.html, and "List of session tags added by EKS
    Pod Identity", pod-id-abac.html: eks-cluster-arn, kubernetes-namespace, kubernetes-service-account), plus
    `aws:SourceAccount` against the confused deputy: without them, any Pod Identity association in the account
    (another cluster, another namespace) could be pointed at this role and receive its credentials.
    """
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "PodIdentityForOneServiceAccount",
                "Effect": "Allow",
                "Principal": {"Service": POD_IDENTITY_SERVICE},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Condition": {
                    "StringEquals": {
                        "aws:SourceAccount": account_of(cluster_arn),
                        "aws:RequestTag/eks-cluster-arn": cluster_arn,
                        "aws:RequestTag/kubernetes-namespace": namespace,
                        "aws:RequestTag/kubernetes-service-account": service_account,
                    }
                },
            }
        ],
    }


def pod_identity_trust_policy(
    cluster_arn: pulumi.Input[str], namespace: str, service_account: str
) -> pulumi.Output[str]:
    """The trust policy of a Pod Identity role for `namespace/service_account` on the cluster `cluster_arn`."""
    return pulumi.Output.from_input(cluster_arn).apply(
        lambda arn: json.dumps(pod_identity_trust_document(arn, namespace, service_account))
    )


def policy_document(statements: list[Statement]) -> pulumi.Output[str]:
    """A policy from statements whose resources may be outputs (ARNs of this stack's resources)."""
    return pulumi.Output.json_dumps({"Version": POLICY_VERSION, "Statement": statements})


def managed_policy(name: str) -> str:
    return f"arn:aws:iam::aws:policy/{name}"


def attach_managed_policies(
    name_prefix: str, role: aws.iam.Role, policies: tuple[str, ...], opts: pulumi.ResourceOptions
) -> None:
    """One attachment per AWS managed policy, named after the policy so the preview reads as a list."""
    for policy in policies:
        aws.iam.RolePolicyAttachment(
            f"{name_prefix}-{policy.rsplit('/', 1)[-1]}", role=role.name, policy_arn=managed_policy(policy), opts=opts
        )
