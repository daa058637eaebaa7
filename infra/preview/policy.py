"""The offline side of policy as code: the same rule functions as the CrossGuard pack, over the mocked graph."""

from infra.policy.rules import Resource, Stack, Violation, evaluate, tier_of
from infra.preview.engine import StackRun, unwrap_secret


def stack_from_run(run: StackRun) -> Stack:
    resources = [
        Resource(
            urn=resource.urn,
            type=resource.type,
            name=resource.name,
            inputs=unwrap_secret(resource.inputs),
            protect=resource.protect,
            property_dependencies=resource.property_dependencies,
        )
        for resource in run.resources
    ]
    return Stack(resources, tier_of(resources))


def check_policies(run: StackRun) -> list[Violation]:
    return evaluate(stack_from_run(run))
