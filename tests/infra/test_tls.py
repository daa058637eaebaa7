"""The public endpoint's TLS: the stack config that names or issues a certificate, the ACM certificate validated
through Route 53, the Ingress's HTTPS listener and redirect, the domain pointed at the ALB, and prod refused
without it."""

import json
from typing import Any

import pytest

from infra.bootstrap.permissions import actions_for
from infra.config import StackConfigError, parse_stack_config
from infra.policy.rules import MANDATORY
from infra.preview.engine import StackRun
from infra.preview.policy import check_policies
from infra.preview.readiness import check_readiness
from infra.versions import ALB_SSL_POLICY
from tests.conftest import RunStack, stack_config
from tests.infra.test_workloads import INGRESS, depends_on, manifests, one, recorded

ALB = "alb.ingress.kubernetes.io"
CERTIFICATE = "aws:acm/certificate:Certificate"
VALIDATION = "aws:acm/certificateValidation:CertificateValidation"
RECORD = "aws:route53/record:Record"
ARN = "arn:aws:acm:us-east-1:123456789012:certificate/0b0e3c1a-5d6f-4a7b-8c9d-0e1f2a3b4c5d"


def _ingress_config(stack: str, settings: dict[str, Any]) -> dict[str, Any]:
    config = stack_config(stack)
    config["mlstack:ingress"] = settings
    return config


def _refusal(stack: str, settings: dict[str, Any]) -> str:
    with pytest.raises(StackConfigError) as caught:
        parse_stack_config(stack, _ingress_config(stack, settings))
    message = str(caught.value)
    assert "\n" not in message
    assert "None" not in message
    return message


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"certificateArn": ARN, "domain": "api.example.com", "hostedZone": "example.com"},
            "ingress.certificateArn: set either certificateArn (a certificate you have) or domain with hostedZone",
        ),
        ({"domain": "api.example.com"}, "ingress.hostedZone: missing: domain 'api.example.com' needs the Route 53"),
        ({"hostedZone": "example.com"}, "ingress.domain: missing: hostedZone 'example.com' is set, but no domain"),
        (
            {"domain": "api.example.org", "hostedZone": "example.com"},
            "ingress.domain: 'api.example.org' is not a name inside hostedZone 'example.com'; "
            "use e.g. 'api.example.com'",
        ),
        ({"domain": "notexample.com", "hostedZone": "example.com"}, "is not a name inside hostedZone"),
        ({"domain": "*.example.com", "hostedZone": "example.com"}, "ingress.domain"),
        ({"certificateArn": "arn:aws:iam::123456789012:server-certificate/x"}, "ingress.certificateArn"),
    ],
)
def test_a_certificate_is_named_one_way_or_the_other_and_refused_otherwise(
    settings: dict[str, Any], expected: str
) -> None:
    assert expected in _refusal("prod", settings)


def test_a_certificate_from_another_region_is_refused() -> None:
    message = _refusal("prod", {"certificateArn": ARN.replace("us-east-1", "eu-west-1")})
    assert "ingress.certificateArn: the certificate is in eu-west-1, but the stack deploys to us-east-1" in message


def test_the_dev_host_takes_no_certificate() -> None:
    assert "ingress: certificateArn and domain are wired on EKS only" in _refusal("dev", {"certificateArn": ARN})


def test_a_domain_at_the_zone_apex_is_accepted() -> None:
    env = parse_stack_config("prod", _ingress_config("prod", {"domain": "example.com", "hostedZone": "example.com"}))
    assert env.config.ingress.tls


def test_prod_issues_its_certificate_and_validates_it_in_its_zone(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["prod"]
    (certificate,) = run.of_type(CERTIFICATE)
    assert certificate.inputs["domainName"] == "api.ml.example.com"
    assert certificate.inputs["validationMethod"] == "DNS"
    zones = [args for token, args in run.invokes if token == "aws:route53/getZone:getZone"]
    assert zones == [{"name": "ml.example.com", "privateZone": False}]
    validation_record = recorded(run, RECORD, "certificate-validation-record")
    (validation,) = run.of_type(VALIDATION)
    # The record ACM asked for, in the zone the stack looked up; the validation waits on that very record.
    assert validation_record.inputs["type"] == "CNAME"
    assert validation_record.inputs["name"].endswith(".api.ml.example.com.")
    assert validation.inputs["validationRecordFqdns"] == [validation_record.outputs["fqdn"]]
    assert validation.inputs["certificateArn"] == certificate.outputs["arn"]
    assert validation.custom_timeouts.get("create") == "30m"


def test_the_ingress_serves_https_with_the_validated_certificate_and_redirects_http(
    committed_runs: dict[str, StackRun],
) -> None:
    run = committed_runs["prod"]
    # As recorded (a manifest renders the invented ARN as [unknown]).
    annotations = recorded(run, INGRESS, "model-service-ingress").inputs["metadata"]["annotations"]
    (certificate,) = run.of_type(CERTIFICATE)
    assert json.loads(annotations[f"{ALB}/listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]
    assert annotations[f"{ALB}/ssl-redirect"] == "443"
    assert annotations[f"{ALB}/ssl-policy"] == ALB_SSL_POLICY.value == "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"
    assert annotations[f"{ALB}/certificate-arn"] == certificate.outputs["arn"]
    # Written only once ACM has issued the certificate: the Ingress depends on the validation, not just the request.
    (validation,) = run.of_type(VALIDATION)
    assert depends_on(run, recorded(run, INGRESS, "model-service-ingress"), validation)


def test_without_a_certificate_the_alb_listens_on_http_only_and_nothing_is_issued(
    committed_runs: dict[str, StackRun],
) -> None:
    run = committed_runs["staging"]
    annotations = one(run, "Ingress", "model-service")["metadata"]["annotations"]
    assert json.loads(annotations[f"{ALB}/listen-ports"]) == [{"HTTP": 80}]
    assert not {f"{ALB}/certificate-arn", f"{ALB}/ssl-redirect", f"{ALB}/ssl-policy"} & set(annotations)
    assert run.of_type(CERTIFICATE) == []
    assert run.of_type(RECORD) == []
    assert run.outputs["serviceUrl"].startswith("http://")


def test_the_domain_points_at_the_alb_the_ingress_publishes(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["prod"]
    alias = recorded(run, RECORD, "service-dns-alias")
    hostname = recorded(run, INGRESS, "model-service-ingress").outputs["status"]["loadBalancer"]["ingress"][0]
    assert alias.inputs["name"] == "api.ml.example.com"
    assert alias.inputs["type"] == "A"
    (target,) = alias.inputs["aliases"]
    assert target["name"] == hostname["hostname"]
    assert target["evaluateTargetHealth"] is True
    validation_record = recorded(run, RECORD, "certificate-validation-record")
    assert alias.inputs["zoneId"] == validation_record.inputs["zoneId"]
    assert run.outputs["serviceUrl"] == "https://api.ml.example.com"


def test_an_existing_certificate_is_used_as_given_with_no_dns_of_the_stacks(run_stack: RunStack) -> None:
    run = run_stack("prod", _ingress_config("prod", {"certificateArn": ARN}))
    annotations = recorded(run, INGRESS, "model-service-ingress").inputs["metadata"]["annotations"]
    assert annotations[f"{ALB}/certificate-arn"] == ARN
    assert annotations[f"{ALB}/ssl-redirect"] == "443"
    assert run.of_type(CERTIFICATE) == []
    assert run.of_type(RECORD) == []
    assert [token for token, _ in run.invokes if token.startswith("aws:route53")] == []
    assert run.outputs["serviceUrl"].startswith("https://k8s-")
    assert [v for v in check_policies(run) if v.policy == "tls-in-prod"] == []


def test_prod_without_a_certificate_fails_the_mandatory_tls_rule(run_stack: RunStack) -> None:
    config = stack_config("prod")
    del config["mlstack:ingress"]
    violations = [v for v in check_policies(run_stack("prod", config)) if v.policy == "tls-in-prod"]
    assert [(v.level, v.urn.rsplit("::", 1)[-1]) for v in violations] == [(MANDATORY, "model-service-ingress")]
    assert "ingress.domain with ingress.hostedZone" in violations[0].message


def test_the_readiness_rules_hold_with_a_certificate(committed_runs: dict[str, StackRun]) -> None:
    assert check_readiness(committed_runs["prod"]) == []


def _ingresses(run: StackRun) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests(run) if m["kind"] == "Ingress"}


def test_both_ingresses_share_one_alb_and_agree_on_its_settings(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["prod"]
    assert set(_ingresses(run)) == {"model-service", "model-service-grpc"}
    # As recorded, so that invented ids compare as themselves rather than as [unknown].
    annotations = [ingress.inputs["metadata"]["annotations"] for ingress in run.of_type(INGRESS)]
    assert len(annotations) == 2
    # The controller fails the whole group when two members disagree on a load-balancer-wide (Exclusive) setting.
    exclusive = ("group.name", "scheme", "security-groups", "load-balancer-attributes", "ssl-policy", "ssl-redirect")
    for key in exclusive:
        assert annotations[0][f"{ALB}/{key}"] == annotations[1][f"{ALB}/{key}"], key
    assert annotations[0][f"{ALB}/group.name"] == "mlstack-prod-model-service"


def test_resources_the_stack_now_creates_are_covered_by_the_bootstrap_permissions(
    committed_runs: dict[str, StackRun],
) -> None:
    run = committed_runs["prod"]
    needed = actions_for({r.type for r in run.resources if r.custom}, {token for token, _ in run.invokes})
    assert {"acm:RequestCertificate", "acm:DescribeCertificate", "route53:ChangeResourceRecordSets"} <= needed
    assert "route53:ListHostedZones" in needed
