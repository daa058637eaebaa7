"""The LB controller's upstream IAM policy, with its writes on "*" narrowed to this account, region and VPC.

Upstream (docs/install/iam_policy.json at the pinned tag) grants five statements' worth of writes on `Resource: "*"`
with no condition: statements #2 (WAF and Shield), #3 (security group ingress), #4 (CreateSecurityGroup), #9
(listeners and rules) and #15 (listener and rule changes, SetWebAcl). Each such action that the AWS Service
Authorization Reference gives a resource type is moved to a statement of its own on the ARNs of that type in this
account and region (`narrowed_policy`); the upstream statement keeps only its reads and the writes that have no
resource type, which the `no-wildcard-write` policy rule allows by name (infra/policy/rules.py,
WRITES_WITHOUT_RESOURCE_TYPES). No action is dropped, so everything the controller calls stays allowed.

Resource types, each from the Service Authorization Reference (docs.aws.amazon.com/service-authorization/latest/
reference/), read in November 2026:
- list_awselasticloadbalancingv2.html: CreateListener on loadbalancer/app|net; CreateRule, DeleteListener,
  ModifyListener, AddListenerCertificates, RemoveListenerCertificates on listener/app|net; DeleteRule, ModifyRule,
  SetRulePriorities on listener-rule/app|net; SetWebAcl on loadbalancer/app. All granted on the ELB ARN set below.
- list_amazonec2.html: AuthorizeSecurityGroupIngress / RevokeSecurityGroupIngress on security-group* (condition key
  ec2:Vpc; the optional security-group-rule type is enforced only with TagSpecifications, which the controller never
  sends: v3.5.0 pkg/networking/security_group_manager.go passes GroupId and IpPermissions only); CreateSecurityGroup
  on security-group* and vpc, so naming this VPC's ARN keeps new groups in it.
- list_awswafv2.html: AssociateWebACL on webacl and loadbalancer/app/; DisassociateWebACL on loadbalancer/app/.
- list_awswafregional.html: webacl is arn:aws:waf-regional:REGION:ACCOUNT:webacl/ID; Associate/Disassociate take
  the web ACL and the load balancer.
- list_awsshield.html: DeleteProtection on protection* (arn:aws:shield::ACCOUNT:protection/ID); CreateProtection
  lists no resource type, so it stays on "*".

The security-group ingress writes also need the node and cluster security groups, which carry no controller tag:
that is why upstream grants them untagged. The `ec2:Vpc` condition keeps them to this cluster's VPC.
"""

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Statement = dict[str, Any]


@dataclass(frozen=True)
class Scope:
    """Where this stack's controller works."""

    partition: str
    region: str
    account_id: str
    vpc_id: str

    def arn(self, service: str, resource: str, *, regional: bool = True) -> str:
        return f"arn:{self.partition}:{service}:{self.region if regional else ''}:{self.account_id}:{resource}"


def _load_balancer_arns(scope: Scope) -> list[str]:
    return [
        scope.arn("elasticloadbalancing", resource)
        for resource in (
            "loadbalancer/app/*/*",
            "loadbalancer/net/*/*",
            "listener/app/*/*/*",
            "listener/net/*/*/*",
            "listener-rule/app/*/*/*",
            "listener-rule/net/*/*/*",
        )
    ]


def _alb_arn(scope: Scope) -> str:
    return scope.arn("elasticloadbalancing", "loadbalancer/app/*/*")


def narrowed_statements(scope: Scope) -> list[tuple[str, tuple[str, ...], list[str], Statement | None]]:
    """(Sid, the actions, the resources they are narrowed to, a condition) for each narrowed group of actions."""
    elb_writes = (
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:DeleteListener",
        "elasticloadbalancing:CreateRule",
        "elasticloadbalancing:DeleteRule",
        "elasticloadbalancing:SetWebAcl",
        "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:AddListenerCertificates",
        "elasticloadbalancing:RemoveListenerCertificates",
        "elasticloadbalancing:ModifyRule",
        "elasticloadbalancing:SetRulePriorities",
    )
    vpc_arn = scope.arn("ec2", f"vpc/{scope.vpc_id}")
    return [
        ("ListenersAndRulesInThisAccountAndRegion", elb_writes, _load_balancer_arns(scope), None),
        (
            "SecurityGroupIngressInThisVpc",
            ("ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"),
            [scope.arn("ec2", "security-group/*")],
            {"ArnEquals": {"ec2:Vpc": vpc_arn}},
        ),
        (
            "NewSecurityGroupsInThisVpc",
            ("ec2:CreateSecurityGroup",),
            [scope.arn("ec2", "security-group/*"), vpc_arn],
            None,
        ),
        (
            "WafV2OnThisAccountsLoadBalancers",
            ("wafv2:AssociateWebACL",),
            [scope.arn("wafv2", "regional/webacl/*/*"), _alb_arn(scope)],
            None,
        ),
        ("WafV2DisassociateOnThisAccountsLoadBalancers", ("wafv2:DisassociateWebACL",), [_alb_arn(scope)], None),
        (
            "WafRegionalOnThisAccountsLoadBalancers",
            ("waf-regional:AssociateWebACL",),
            [scope.arn("waf-regional", "webacl/*"), _alb_arn(scope)],
            None,
        ),
        (
            "WafRegionalDisassociateOnThisAccountsLoadBalancers",
            ("waf-regional:DisassociateWebACL",),
            [_alb_arn(scope)],
            None,
        ),
        (
            "ShieldProtectionsOfThisAccount",
            ("shield:DeleteProtection",),
            [scope.arn("shield", "protection/*", regional=False)],
            None,
        ),
    ]


def _actions(statement: Statement) -> list[str]:
    action = statement.get("Action", [])
    return [action] if isinstance(action, str) else list(action)


def narrowed_policy(document: dict[str, Any], scope: Scope) -> dict[str, Any]:
    """`document` with every narrowable action taken out of its unconditioned `Resource: "*"` statements and granted
    on this scope's ARNs instead. Statements with a condition, or on ARNs already, stay as they are."""
    narrowed = copy.deepcopy(document)
    groups = narrowed_statements(scope)
    moving = {action for _, actions, _, _ in groups for action in actions}
    found: set[str] = set()
    statements: list[Statement] = []
    for statement in narrowed["Statement"]:
        unbounded = statement.get("Resource") == "*" and "Condition" not in statement
        actions = _actions(statement)
        if not unbounded or not moving.intersection(actions):
            statements.append(statement)
            continue
        found.update(moving.intersection(actions))
        kept = [action for action in actions if action not in moving]
        if kept:
            statements.append({**statement, "Action": kept})
    missing = moving - found
    if missing:
        # The upstream file changed under the pin: re-derive the table above rather than grant what isn't there.
        raise ValueError(f"the LB controller policy no longer grants {sorted(missing)} on '*' unconditionally")
    for sid, group_actions, resources, condition in groups:
        granted: Statement = {"Sid": sid, "Effect": "Allow", "Action": list(group_actions), "Resource": resources}
        if condition:
            granted["Condition"] = condition
        statements.append(granted)
    narrowed["Statement"] = statements
    return narrowed


def actions_of(statements: Sequence[Statement]) -> set[str]:
    """Every action the statements allow (for checking that narrowing dropped none)."""
    return {action for statement in statements if statement.get("Effect") == "Allow" for action in _actions(statement)}
