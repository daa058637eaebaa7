"""The offline side of policy as code: the same rule functions as the CrossGuard pack, over the mocked graph."""

from infra.policy.rules import RULES, Resource, Stack, Violation, evaluate, tier_of
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
        # By URN: the engine registers resources in whatever order their inputs resolve, and the violations (and so
        # plan.json) follow this order.
        for resource in sorted(run.resources, key=lambda resource: resource.urn)
    ]
    return Stack(resources, tier_of(resources))


def check_policies(run: StackRun) -> list[Violation]:
    return evaluate(stack_from_run(run))


def policy_rules_run(run: StackRun) -> int:
    """How many policy rules apply to the stack's tier (and so ran)."""
    tier = stack_from_run(run).tier
    return sum(1 for rule in RULES if rule.runs_for(tier))
