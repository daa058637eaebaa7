"""The public endpoint's TLS certificate: the one the stack names (`ingress.certificateArn`), or one the stack
requests from ACM for `ingress.domain` and validates with a DNS record in the domain's Route 53 zone.

What the real engine does with it (hashicorp/terraform-provider-aws, which pulumi-aws bridges,
internal/service/acm/certificate_validation.go and certificate.go):
- The Certificate is created at once, PENDING_VALIDATION; ACM names the CNAME it wants to see.
- The CertificateValidation checks that the record it was given is the one ACM asked for (a wrong one fails at
  once), then polls DescribeCertificate until ISSUED. Route 53 validation usually takes minutes; a zone whose domain
  is not delegated to Route 53 never validates, so the wait is cut to VALIDATION_TIMEOUT (the provider's own
  default is 75 minutes) and fails with ACM's reason. Deleting a CertificateValidation deletes nothing.
- The Ingress takes the validated ARN (`validation.certificate_arn`), so it is written only once the certificate is
  ISSUED: the controller could not create an HTTPS listener with a pending one, and the provider would wait out its
  10-minute Ingress await for an address that never comes.
- On destroy the engine deletes in reverse: the Ingress first (its finalizer holds until the controller has deleted
  the ALB and its listeners), then the certificate, which ACM refuses while a listener still uses it; the provider
  retries that refusal (ResourceInUseException) for a few minutes before failing.
"""

import pulumi
import pulumi_aws as aws

from infra.config import Environment

# Long enough for Route 53 and ACM (minutes), short enough that an undelegated zone fails a deploy within the hour.
VALIDATION_TIMEOUT = "30m"
VALIDATION_RECORD_TTL = 60


class ServiceCertificate(pulumi.ComponentResource):
    """`arn`: the certificate the ALB's HTTPS listener serves, known only once ACM has issued it.
    `zone_id`: the Route 53 zone the domain lives in (None when the stack was given an ARN)."""

    arn: pulumi.Output[str]
    zone_id: pulumi.Output[str] | None

    def __init__(self, name: str, env: Environment, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlstack:network:ServiceCertificate", name, None, opts)
        settings = env.config.ingress
        if settings.certificate_arn:
            self.arn = pulumi.Output.from_input(settings.certificate_arn)
            self.zone_id = None
            self.register_outputs({"certificateArn": self.arn})
            return
        # Config validation: a domain comes with its zone.
        assert settings.domain
        assert settings.hosted_zone
        child = pulumi.ResourceOptions(parent=self)
        zone = aws.route53.get_zone_output(
            name=settings.hosted_zone, private_zone=False, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        self.zone_id = zone.zone_id
        certificate = aws.acm.Certificate(
            f"{name}-certificate",
            domain_name=settings.domain,
            validation_method="DNS",
            # A replacement (another domain) is created, validated and put on the listener before the old one goes
            # (the engine's default create-before-delete).
            opts=child,
        )
        # One domain, so ACM asks for exactly one record.
        option = certificate.domain_validation_options.apply(lambda options: options[0])
        record = aws.route53.Record(
            f"{name}-validation-record",
            zone_id=zone.zone_id,
            name=option.resource_record_name,
            type=option.resource_record_type,
            records=[option.resource_record_value],
            ttl=VALIDATION_RECORD_TTL,
            # ACM reuses a domain's validation name across certificates: a replacement writes the same record.
            allow_overwrite=True,
            opts=child,
        )
        validation = aws.acm.CertificateValidation(
            f"{name}-validation",
            certificate_arn=certificate.arn,
            validation_record_fqdns=[record.fqdn],
            opts=pulumi.ResourceOptions(parent=self, custom_timeouts=pulumi.CustomTimeouts(create=VALIDATION_TIMEOUT)),
        )
        self.arn = validation.certificate_arn
        self.register_outputs({"certificateArn": self.arn})
