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


def pod_identity_trust_policy() -> str:
    """A role for EKS Pod Identity: the agent assumes it on behalf of one service account."""
    return trust_policy("pods.eks.amazonaws.com", ("sts:TagSession",))


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
