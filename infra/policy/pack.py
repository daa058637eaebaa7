"""The CrossGuard side: each rule of rules.py as a stack validation policy at the rule's level (mandatory or
advisory; a rule whose level differs by tier is two rules, one per level, each for its tiers).

Stack validation rather than resource validation, because some rules look at related resources (the group an
ingress rule opens, the encryption configuration of a bucket). Runs in the pack's own virtual environment
(requirements.txt beside this file), where `rules` is a top-level module.
"""

from collections.abc import Callable

import rules
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

Validate = Callable[[StackValidationArgs, ReportViolation], None]
LEVELS = {rules.MANDATORY: EnforcementLevel.MANDATORY, rules.ADVISORY: EnforcementLevel.ADVISORY}


def resource_from(resource: PolicyResource) -> rules.Resource:
    return rules.Resource(
        urn=resource.urn,
        type=resource.resource_type,
        name=resource.name,
        inputs=resource.props,
        protect=bool(resource.opts.protect),
        property_dependencies={
            prop: [dependency.urn for dependency in dependencies]
            for prop, dependencies in resource.property_dependencies.items()
        },
    )


def stack_from(args: StackValidationArgs) -> rules.Stack:
    """The stack as the rules see it; providers come from the resources that use them."""
    resources = [resource_from(resource) for resource in args.resources]
    seen = {resource.urn for resource in resources}
    for resource in args.resources:
        provider = resource.provider
        if provider is not None and provider.urn not in seen:
            seen.add(provider.urn)
            resources.append(rules.Resource(provider.urn, provider.resource_type, provider.name, provider.props))
    configured = args.get_config().get("tier")
    return rules.Stack(resources, rules.tier_of(resources) or (str(configured) if configured else None))


def _validator(rule: rules.Rule) -> Validate:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for violation in rule.evaluate(stack_from(args)):
            report_violation(violation.message, violation.urn)

    return validate


def policies() -> list[Policy]:
    return [
        StackValidationPolicy(
            name=rule.name,
            description=rule.description,
            enforcement_level=LEVELS[rule.level],
            validate=_validator(rule),
        )
        for rule in rules.RULES
    ]
