"""Runs the CrossGuard pack's policies over stacks given as JSON, inside the pack's own environment.

    .venv-policy/bin/python tests/policy/crossguard_probe.py < stacks.json

Input: a list of stacks, each a list of resources {urn, type, name, inputs, protect, property_dependencies}; an
AWS provider among them is both a resource and the `provider` of every AWS resource, as the engine reports it.
Output: one list of violations {policy, level, urn, message} per stack, as each policy's `validate` reported them
through pulumi_policy (level: the policy's enforcement level).
"""

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra" / "policy"))

from pack import policies
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    StackValidationArgs,
    StackValidationPolicy,
)

AWS_PROVIDER = "pulumi:providers:aws"


def policy_resources(resources: list[dict[str, Any]]) -> list[PolicyResource]:
    providers = [
        PolicyProviderResource(r["type"], r["inputs"], r["urn"], r["name"])
        for r in resources
        if r["type"] == AWS_PROVIDER
    ]
    built: dict[str, PolicyResource] = {}
    for r in resources:
        options = PolicyResourceOptions(r.get("protect", False), [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
        provider = providers[0] if providers and r["type"].startswith("aws:") else None
        built[r["urn"]] = PolicyResource(r["type"], r["inputs"], r["urn"], r["name"], options, provider, None, [], {})
    for r in resources:
        if r["urn"] in built:
            built[r["urn"]].property_dependencies = {
                prop: [built[urn] for urn in urns if urn in built]
                for prop, urns in (r.get("property_dependencies") or {}).items()
            }
    return list(built.values())


def _collector(reported: list[dict[str, str]], policy: str, level: str) -> Callable[[str, str | None], None]:
    def report(message: str, urn: str | None = None) -> None:
        reported.append({"policy": policy, "level": level, "urn": urn or "", "message": message})

    return report


def main() -> None:
    results = []
    for stack in json.load(sys.stdin):
        args = StackValidationArgs(policy_resources(stack))
        reported: list[dict[str, str]] = []
        for policy in policies():
            assert isinstance(policy, StackValidationPolicy)
            level = policy.enforcement_level.value if policy.enforcement_level else ""
            policy.validate(args, _collector(reported, policy.name, level))
        results.append(reported)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
