"""`ingress.domain` pointed at the service's ALB: a Route 53 alias record in the domain's zone.

An alias, not a CNAME: it works at a zone's apex too, Route 53 answers it at no query charge, and it follows the
ALB's addresses. Its target is the ALB's DNS name as the AWS Load Balancer Controller publishes it in the Ingress
status, which the provider's Ingress await has waited for; the ALB's hosted zone comes from the provider's table of
Elastic Load Balancing zones per region (aws.lb.getHostedZoneId, no AWS call).
"""

import pulumi
import pulumi_aws as aws

from infra.config import Environment


class ServiceDnsRecord(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        env: Environment,
        *,
        zone_id: pulumi.Output[str],
        load_balancer_hostname: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:network:ServiceDnsRecord", name, None, opts)
        domain = env.config.ingress.domain
        assert domain  # only stacks that name a domain point it anywhere
        load_balancer_zone = aws.lb.get_hosted_zone_id_output(
            load_balancer_type="application", opts=pulumi.InvokeOutputOptions(parent=self)
        )
        self.record = aws.route53.Record(
            f"{name}-alias",
            zone_id=zone_id,
            name=domain,
            type="A",
            aliases=[
                aws.route53.RecordAliasArgs(
                    name=load_balancer_hostname, zone_id=load_balancer_zone.id, evaluate_target_health=True
                )
            ],
            # No allow_overwrite: a record of that name that the stack did not create fails the create, rather than
            # being silently taken over.
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"fqdn": self.record.fqdn})
