"""Tags are set once, as the provider's default tags, and every AWS resource goes through that provider."""

import json

import pytest

from infra.preview.engine import StackRun
from tests.conftest import RunStack, stack_config
from tests.graph import AWS_PROVIDER, environment_of


def _default_tags(run: StackRun) -> dict[str, str]:
    (provider,) = run.of_type(AWS_PROVIDER)
    tags: dict[str, str] = json.loads(provider.inputs["defaultTags"])["tags"]
    return tags


def test_provider_default_tags_name_project_environment_owner_cost_centre_and_tier(stack_run: StackRun) -> None:
    env = environment_of(stack_run, stack_config(stack_run.stack))
    assert _default_tags(stack_run) == {
        "project": "mlstack",
        "environment": stack_run.stack,
        "managed-by": "pulumi",
        "owner": env.config.owner,
        "cost-center": env.config.cost_center,
        "tier": env.config.tier,
    }


def test_every_aws_resource_goes_through_the_tagged_provider(stack_run: StackRun) -> None:
    (provider,) = stack_run.of_type(AWS_PROVIDER)
    aws_resources = [resource for resource in stack_run.resources if resource.type.startswith("aws:")]
    assert aws_resources
    for resource in aws_resources:
        assert resource.provider is not None, f"{resource.name} uses the default provider, which has no tags"
        assert resource.provider.startswith(provider.urn + "::"), f"{resource.name} uses another provider"


def test_provider_region_is_the_stack_files(stack_run: StackRun) -> None:
    (provider,) = stack_run.of_type(AWS_PROVIDER)
    assert provider.inputs["region"] == stack_config(stack_run.stack)["aws:region"]


@pytest.mark.parametrize("extra", [{"team": "fraud"}, {"data-classification": "internal", "team": "risk"}])
def test_extra_tags_join_the_default_tags(run_stack: RunStack, extra: dict[str, str]) -> None:
    config = stack_config("dev")
    config["mlstack:extraTags"] = extra
    tags = _default_tags(run_stack("dev", config))
    assert extra.items() <= tags.items()
    assert tags["environment"] == "dev"


def test_what_each_launch_template_launches_carries_the_stacks_tags(stack_run: StackRun) -> None:
    """Default tags stop at the launch template; its instances and volumes get tags only from tag specifications,
    and `mlstack verify` finds the stack's instances by those tags."""
    templates = stack_run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    # dev: the host's; staging and prod: one per node pool (CPU, and GPU where enabled).
    pools = len(stack_run.of_type("aws:eks/nodeGroup:NodeGroup"))
    assert len(templates) == (pools if pools else 1)
    stack_tags = _default_tags(stack_run)
    for template in templates:
        specifications = {spec["resourceType"]: spec["tags"] for spec in template.inputs["tagSpecifications"]}
        assert set(specifications) == {"instance", "volume"}, template.name
        for resource_type, tags in specifications.items():
            assert stack_tags.items() <= tags.items(), f"{template.name} launches {resource_type}s without them"
            assert tags["Name"].startswith(f"mlstack-{stack_run.stack}-"), template.name
