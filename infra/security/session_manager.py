"""What the SSM agent on a node or the dev host needs for Session Manager, and no more.

It replaces the AWS managed policy AmazonSSMManagedInstanceCore, whose first statement grants `ssm:GetParameter`,
`ssm:GetParameters` (every parameter in the account: a SecureString's value included), inventory, patching and
State Manager actions on "*". Its current document (v2, default since 2019-05-23) was read from
iann0036/iam-dataset at 2073fa52ac008a45477aa0b1b4580cd99135bf60, aws/managedpolicies/AmazonSSMManagedInstanceCore.json
(and matches z0ph/MAMIP at de4971a44b36762f50d87c2baf65ebbec0e93b39, policies/AmazonSSMManagedInstanceCore).

Session Manager alone needs `ssm:UpdateInstanceInformation` (the agent's registration and heartbeat) and the four
`ssmmessages` channel actions: the AWS managed policy AWSCloud9SSMInstanceProfile (v1), which exists to give Session
Manager to an instance, is exactly these five (docs.aws.amazon.com/aws-managed-policy/latest/reference/
AWSCloud9SSMInstanceProfile.html), as is the Systems Manager User Guide's custom instance profile for Session Manager
without S3/KMS session logging. What is left out: Run Command (ec2messages), State Manager, inventory, patching and
every parameter read. Neither the nodes nor the host read a parameter: the AL2023 AMI parameter is resolved by the
deployer at preview/up time (ec2_host.py), the CloudWatch agent's configuration is a file the user data writes
(host_user_data.sh), and EKS's AL2023 nodes bootstrap from their launch template's user data.

Resource types (Service Authorization Reference): the `ssmmessages` actions have none (list_ssmmessages.html), so
they are granted on "*", which the `no-wildcard-write` rule allows by name; `ssm:UpdateInstanceInformation` takes the
instance (EC2) and managed-instance (hybrid) types, so it is granted on this account's instances in this region.
"""

import pulumi
import pulumi_aws as aws

from infra.security.iam import policy_document

SESSION_CHANNEL_ACTIONS = (
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
)
REGISTRATION_ACTION = "ssm:UpdateInstanceInformation"


def session_manager_statements(region: str, account_id: pulumi.Input[str]) -> list[dict[str, object]]:
    instances = pulumi.Output.concat("arn:aws:ec2:", region, ":", account_id, ":instance/*")
    managed_instances = pulumi.Output.concat("arn:aws:ssm:", region, ":", account_id, ":managed-instance/*")
    return [
        {
            "Sid": "SessionManagerChannels",
            "Effect": "Allow",
            "Action": list(SESSION_CHANNEL_ACTIONS),
            "Resource": "*",
        },
        {
            "Sid": "SessionManagerRegistration",
            "Effect": "Allow",
            "Action": [REGISTRATION_ACTION],
            "Resource": [instances, managed_instances],
        },
    ]


def session_manager_policy(name: str, role: aws.iam.Role, region: str, opts: pulumi.ResourceOptions) -> None:
    """The role's inline policy `{name}-session-manager`: Session Manager on the instances that carry the role."""
    account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=opts.parent))
    aws.iam.RolePolicy(
        f"{name}-session-manager",
        role=role.id,
        policy=policy_document(session_manager_statements(region, account.account_id)),
        opts=opts,
    )
