"""The AWS provider every resource goes through, carrying the stack's tags as default tags."""

import pulumi_aws as aws

from infra.config import Environment

PROJECT_TAG_VALUE = "mlstack"
MANAGED_BY = "pulumi"


def default_tags(env: Environment) -> dict[str, str]:
    """Tags on every taggable resource: who owns it, who pays, and which environment it serves."""
    return {
        **env.config.extra_tags,
        "project": PROJECT_TAG_VALUE,
        "environment": env.name,
        "managed-by": MANAGED_BY,
        "owner": env.config.owner,
        "cost-center": env.config.cost_center,
        "tier": env.config.tier,
    }


def create_aws_provider(env: Environment) -> aws.Provider:
    """`accountId` in the stack file pins the account: the provider refuses credentials of any other account before
    it touches a resource, so a stack can't be applied to the wrong account by a stray profile."""
    return aws.Provider(
        "aws",
        region=env.region,
        allowed_account_ids=[env.config.account_id] if env.config.account_id else None,
        default_tags=aws.ProviderDefaultTagsArgs(tags=default_tags(env)),
    )
