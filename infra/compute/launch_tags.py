"""Tags for what a launch template launches (instances and their volumes).

The provider's default tags go on the launch template itself but never reach what it launches: terraform-provider-aws
propagates `default_tags` to a resource's root-level `tags` only, not to the nested `tag_specifications`
(hashicorp/terraform-provider-aws issue #19387, the maintainers' answer). Without them here, the instances of the
dev host and of the node groups carry no stack tag, and `mlstack verify` (which finds instances by tag) sees none.
"""

import pulumi_aws as aws

from infra.aws_provider import default_tags
from infra.config import Environment

LAUNCHED_RESOURCE_TYPES = ("instance", "volume")


def launched_tags(env: Environment, name: str) -> dict[str, str]:
    return {**default_tags(env), "Name": name}


def launch_tag_specifications(env: Environment, name: str) -> list[aws.ec2.LaunchTemplateTagSpecificationArgs]:
    """The stack's tags and a Name on each instance and volume the template launches."""
    return [
        aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=resource_type, tags=launched_tags(env, name))
        for resource_type in LAUNCHED_RESOURCE_TYPES
    ]
