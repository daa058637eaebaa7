"""The WAF web ACL in front of the model API's ALB: a rate-based rule per client IP.

Associated with the ALB through the Load Balancer Controller's `alb.ingress.kubernetes.io/wafv2-acl-arn` annotation
(kubernetes-sigs/aws-load-balancer-controller docs/guide/ingress/annotations.md at v3.5.0, 5982613953df58f3). The
rule counts requests per source IP over a 5-minute window (WAF's default evaluation window) and blocks an IP past
`ingress.rateLimitPerIp` until its rate drops; everything else is allowed (the service checks API keys).
"""

import pulumi
import pulumi_aws as aws

from infra.config import Environment

RATE_WINDOW_SECONDS = 300
RATE_RULE = "rate-limit-per-ip"


class RateLimitAcl(pulumi.ComponentResource):
    """A regional web ACL with one rate-based rule; `arn` goes onto the Ingress."""

    arn: pulumi.Output[str]

    def __init__(self, name: str, env: Environment, limit: int, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlstack:security:RateLimitAcl", name, None, opts)
        metric = f"{env.prefix}-model-api"
        acl = aws.wafv2.WebAcl(
            f"{name}-web-acl",
            name=metric,
            description=f"{env.prefix}: blocks a client IP past {limit} requests in {RATE_WINDOW_SECONDS} s",
            scope="REGIONAL",
            default_action=aws.wafv2.WebAclDefaultActionArgs(allow=aws.wafv2.WebAclDefaultActionAllowArgs()),
            rules=[
                aws.wafv2.WebAclRuleArgs(
                    name=RATE_RULE,
                    priority=0,
                    action=aws.wafv2.WebAclRuleActionArgs(block=aws.wafv2.WebAclRuleActionBlockArgs()),
                    statement=aws.wafv2.WebAclRuleStatementArgs(
                        rate_based_statement=aws.wafv2.WebAclRuleStatementRateBasedStatementArgs(
                            limit=limit,
                            aggregate_key_type="IP",
                            evaluation_window_sec=RATE_WINDOW_SECONDS,
                        )
                    ),
                    visibility_config=aws.wafv2.WebAclRuleVisibilityConfigArgs(
                        cloudwatch_metrics_enabled=True,
                        metric_name=f"{metric}-{RATE_RULE}",
                        sampled_requests_enabled=True,
                    ),
                )
            ],
            visibility_config=aws.wafv2.WebAclVisibilityConfigArgs(
                cloudwatch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.arn = acl.arn
        self.register_outputs({"arn": self.arn})
