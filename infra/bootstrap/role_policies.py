"""Trust and permission policies of the three CI roles, as plain data built from the permission table.

- deploy: what `pulumi up` needs for every resource type of the stacks (permissions.RESOURCE_ACTIONS), the state
  bucket and the secrets key, pushing images, and the smoke test's temporary security-group rule; never the
  bootstrap's own roles, key policy or state bucket settings (an explicit deny).
- preview: reads only. The state bucket (a DIY backend's `pulumi preview` takes no lock and saves no checkpoint:
  pulumi/pulumi pkg/backend/diy/backend.go, `Preview` vs `Update`), the secrets key, and the Describe/Get/List half
  of the table.
- retrain: reads the labelled data, writes model packages into the stacks' model buckets.
"""

from dataclasses import dataclass

from infra.bootstrap.names import (
    DEPLOY_ROLE_NAME,
    GITHUB_OIDC_AUDIENCE,
    GITHUB_OIDC_HOST,
    MODEL_PUBLISH_ENVIRONMENT,
    PREVIEW_ROLE_NAME,
    RETRAIN_ROLE_NAME,
    SECRETS_KEY_ALIAS,
)
from infra.bootstrap.permissions import Statement, all_stack_actions

# Physical-name prefixes of what the stacks create (infra/config/load.py NAMESPACE): buckets, repositories, clusters.
STACK_NAME_PREFIX = "mlstack-"
# Services the stacks' roles are passed to, and the service-linked roles their first use creates.
PASSED_TO_SERVICES = ("ec2.amazonaws.com", "eks.amazonaws.com", "pods.eks.amazonaws.com", "vpc-flow-logs.amazonaws.com")
SERVICE_LINKED_ROLES = (
    "autoscaling.amazonaws.com",
    "eks.amazonaws.com",
    "eks-nodegroup.amazonaws.com",
    "elasticloadbalancing.amazonaws.com",
)
# Read actions that return data rather than settings: never the preview role's.
DATA_READS = frozenset({"s3:GetObject", "s3:GetObjectTagging", "s3:ListBucketVersions"})
READ_VERBS = ("Describe", "Get", "List")
# Pushing an image (docker push) and checking whether a tag is already there.
IMAGE_PUSH_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImages",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
)
STATE_BUCKET_SETTINGS = (
    "s3:DeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketOwnershipControls",
    "s3:PutBucketPolicy",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketVersioning",
    "s3:PutEncryptionConfiguration",
    "s3:PutLifecycleConfiguration",
)
SECRETS_KEY_ADMIN = (
    "kms:CreateGrant",
    "kms:DisableKey",
    "kms:PutKeyPolicy",
    "kms:ScheduleKeyDeletion",
    "kms:UpdateAlias",
    "kms:DeleteAlias",
)


@dataclass(frozen=True)
class Account:
    """Where the policies apply: the account, its partition, and the bootstrap's own resources."""

    account_id: str
    partition: str
    region: str
    state_bucket: str
    secrets_key_arn: str

    def arn(self, service: str, resource: str, region: str = "*", account: str | None = None) -> str:
        return f"arn:{self.partition}:{service}:{region}:{self.account_id if account is None else account}:{resource}"

    @property
    def state_bucket_arn(self) -> str:
        return f"arn:{self.partition}:s3:::{self.state_bucket}"


def github_trust_policy(oidc_provider_arn: str, subjects: list[str]) -> dict[str, object]:
    """Only GitHub's OIDC tokens for these `sub` claims (repository plus environment, event or branch)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": oidc_provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": GITHUB_OIDC_AUDIENCE,
                        f"{GITHUB_OIDC_HOST}:sub": subjects,
                    }
                },
            }
        ],
    }


def deploy_subjects(repository: str, environments: list[str]) -> list[str]:
    """Jobs that run in one of the stacks' GitHub environments (prod's carries the required reviewers)."""
    return [f"repo:{repository}:environment:{environment}" for environment in environments]


def preview_subjects(repository: str) -> list[str]:
    return [f"repo:{repository}:pull_request"]


def retrain_subjects(repository: str, branch: str) -> list[str]:
    """The relay's workflow_dispatch names the default branch (`monitoring.retrain.ref`); a dispatch on any other
    branch gets no credentials. Prod's publish runs in the reviewed environment MODEL_PUBLISH_ENVIRONMENT (a job with
    an environment gets that subject instead of its ref)."""
    return [f"repo:{repository}:ref:refs/heads/{branch}", f"repo:{repository}:environment:{MODEL_PUBLISH_ENVIRONMENT}"]


def _state_statements(account: Account, *, write: bool) -> list[Statement]:
    object_actions = ["s3:GetObject", *(["s3:PutObject", "s3:DeleteObject"] if write else [])]
    key_actions = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", *(["kms:GenerateDataKey"] if write else [])]
    return [
        {
            "Sid": "StateBucket",
            "Effect": "Allow",
            "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
            "Resource": account.state_bucket_arn,
        },
        {
            "Sid": "StateObjects",
            "Effect": "Allow",
            "Action": object_actions,
            "Resource": f"{account.state_bucket_arn}/*",
        },
        # Encrypt: with no `encryptedkey` committed in a stack file, each CLI run wraps a fresh data key
        # (pulumi/pulumi pkg/secrets/cloud/manager.go NewCloudSecretsManager); Decrypt reads the state's secrets.
        {"Sid": "SecretsKey", "Effect": "Allow", "Action": key_actions, "Resource": account.secrets_key_arn},
    ]


def _by_service(actions: set[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for action in sorted(actions):
        grouped.setdefault(action.split(":", 1)[0], []).append(action)
    return grouped


def _stack_resources(account: Account, service: str) -> str | list[str]:
    """Where the name of what the stacks create is known, only there; elsewhere any resource of the service."""
    prefix = STACK_NAME_PREFIX
    scoped: dict[str, str | list[str]] = {
        "s3": [f"arn:{account.partition}:s3:::{prefix}*", f"arn:{account.partition}:s3:::{prefix}*/*"],
        "ecr": account.arn("ecr", f"repository/{prefix}*"),
        "iam": [
            account.arn("iam", "role/*", region=""),
            account.arn("iam", "instance-profile/*", region=""),
            account.arn("iam", "policy/*", region=""),
        ],
        "ssm": account.arn("ssm", "parameter/aws/service/*", account=""),
    }
    return scoped.get(service, "*")


def deploy_statements(account: Account) -> list[Statement]:
    actions = all_stack_actions()
    special = {"iam:PassRole", "iam:CreateServiceLinkedRole"}
    # EKS actions on clusters named mlstack-* and everything under them; a few EKS reads take no resource.
    eks_unscoped = {"eks:DescribeAddonVersions", "eks:DescribeAddonConfiguration"}
    statements = _state_statements(account, write=True)
    for service, service_actions in _by_service(actions - special - eks_unscoped).items():
        resource = (
            account.arn("eks", f"*/{STACK_NAME_PREFIX}*") if service == "eks" else _stack_resources(account, service)
        )
        statements.append(
            {
                "Sid": f"Stacks{service.title().replace('-', '')}",
                "Effect": "Allow",
                "Action": service_actions,
                "Resource": resource,
            }
        )
    statements += [
        {"Sid": "StacksEksAnyCluster", "Effect": "Allow", "Action": sorted(eks_unscoped), "Resource": "*"},
        {
            "Sid": "PassStackRoles",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": account.arn("iam", "role/*", region=""),
            "Condition": {"StringEquals": {"iam:PassedToService": list(PASSED_TO_SERVICES)}},
        },
        {
            "Sid": "ServiceLinkedRoles",
            "Effect": "Allow",
            "Action": "iam:CreateServiceLinkedRole",
            "Resource": account.arn("iam", "role/aws-service-role/*", region=""),
            "Condition": {"StringEquals": {"iam:AWSServiceName": list(SERVICE_LINKED_ROLES)}},
        },
        {"Sid": "RegistryLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        {
            "Sid": "ImagePush",
            "Effect": "Allow",
            "Action": list(IMAGE_PUSH_ACTIONS),
            "Resource": account.arn("ecr", f"repository/{STACK_NAME_PREFIX}*"),
        },
        {
            "Sid": "ProtectTheBootstrap",
            "Effect": "Deny",
            "Action": ["iam:*"],
            "Resource": [
                account.arn("iam", f"role/{name}", region="")
                for name in (DEPLOY_ROLE_NAME, PREVIEW_ROLE_NAME, RETRAIN_ROLE_NAME)
            ]
            + [account.arn("iam", "oidc-provider/*", region="")],
        },
        {
            "Sid": "ProtectTheStateBucket",
            "Effect": "Deny",
            "Action": list(STATE_BUCKET_SETTINGS),
            "Resource": account.state_bucket_arn,
        },
        {
            "Sid": "ProtectTheSecretsKey",
            "Effect": "Deny",
            "Action": list(SECRETS_KEY_ADMIN),
            "Resource": [account.secrets_key_arn, account.arn("kms", SECRETS_KEY_ALIAS, region=account.region)],
        },
    ]
    return statements


def preview_actions() -> set[str]:
    """The Describe/Get/List half of what the stacks need, less reads that return data."""
    return {
        action
        for action in all_stack_actions()
        if action.split(":", 1)[1].startswith(READ_VERBS) and action not in DATA_READS
    }


def preview_statements(account: Account) -> list[Statement]:
    statements = _state_statements(account, write=False)
    for service, service_actions in _by_service(preview_actions()).items():
        resource = "*" if service != "ssm" else _stack_resources(account, service)
        statements.append(
            {
                "Sid": f"Read{service.title().replace('-', '')}",
                "Effect": "Allow",
                "Action": service_actions,
                "Resource": resource,
            }
        )
    return statements


def retrain_statements(account: Account, data_bucket: str) -> list[Statement]:
    partition = account.partition
    models = f"arn:{partition}:s3:::{STACK_NAME_PREFIX}*-models-*"
    return [
        {
            "Sid": "ReadLabelledData",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:ListBucket"],
            "Resource": [f"arn:{partition}:s3:::{data_bucket}", f"arn:{partition}:s3:::{data_bucket}/*"],
        },
        {
            "Sid": "PublishModels",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:ListBucket", "s3:PutObject"],
            "Resource": [models, f"{models}/*"],
        },
        {
            # The model buckets encrypt with their stack's key; only through S3.
            "Sid": "ModelBucketKeys",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": account.arn("kms", "key/*"),
            "Condition": {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}},
        },
    ]
