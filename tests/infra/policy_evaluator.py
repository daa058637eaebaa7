"""A small evaluator of resource-policy Deny statements, for the condition operators the stack's policies use.

moto 5.2.5 does not evaluate bucket policies (moto/core/authorization.py checks only the caller's identity
policies), so the model bucket's policy is evaluated here. It follows the IAM policy evaluation logic for Deny
statements: a statement applies when its Principal, Action, Resource (or NotResource) and every condition match.
A key absent from the request (IAM User Guide, "Condition operators"): `...IfExists` operators and negated
operators (StringNotEquals, ArnNotEquals, StringNotLike, ArnNotLike) are true, the others false; `Null` tests
presence. An operator it does not know raises, so a policy that grows one fails the tests instead of being
misjudged.
"""

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

NEGATED = ("StringNotEquals", "ArnNotEquals", "StringNotLike", "ArnNotLike")


class UnknownOperatorError(ValueError):
    pass


@dataclass(frozen=True)
class Request:
    principal_arn: str
    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _wildcard(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    if not case_sensitive:
        pattern, value = pattern.lower(), value.lower()
    return fnmatchcase(value, pattern.replace("[", "[[]"))


def _condition_holds(operator: str, key: str, expected: Any, context: dict[str, str]) -> bool:
    values = _as_list(expected)
    if operator == "Null":
        return (key not in context) == (str(values[0]).lower() == "true")
    base, if_exists = (operator[: -len("IfExists")], True) if operator.endswith("IfExists") else (operator, False)
    if key not in context:
        return if_exists or base in NEGATED
    actual = context[key]
    if base in ("StringEquals", "ArnEquals"):
        return actual in values
    if base in ("StringNotEquals", "ArnNotEquals"):
        return actual not in values
    if base in ("StringLike", "ArnLike"):
        return any(_wildcard(value, actual) for value in values)
    if base in ("StringNotLike", "ArnNotLike"):
        return not any(_wildcard(value, actual) for value in values)
    if base == "Bool":
        return actual.lower() == str(values[0]).lower()
    raise UnknownOperatorError(operator)


def statement_applies(statement: dict[str, Any], request: Request) -> bool:
    principal = statement.get("Principal")
    if principal != "*" and request.principal_arn not in _as_list((principal or {}).get("AWS", [])):
        return False
    if not any(_wildcard(action, request.action, case_sensitive=False) for action in _as_list(statement["Action"])):
        return False
    if "Resource" in statement:
        if not any(_wildcard(resource, request.resource) for resource in _as_list(statement["Resource"])):
            return False
    elif any(_wildcard(resource, request.resource) for resource in _as_list(statement["NotResource"])):
        return False
    context = {"aws:PrincipalArn": request.principal_arn, **request.context}
    return all(
        _condition_holds(operator, key, expected, context)
        for operator, block in statement.get("Condition", {}).items()
        for key, expected in block.items()
    )


def denied(policy: dict[str, Any], request: Request) -> bool:
    """Whether an explicit Deny in `policy` refuses the request (an Allow elsewhere can't override it)."""
    return any(
        statement_applies(statement, request) for statement in policy["Statement"] if statement["Effect"] == "Deny"
    )
