"""Every policy rule with an input that breaks it and one that keeps it, through both engines: the offline check
that `mlstack preview` runs and the CrossGuard pack (pulumi_policy, in the pack's own environment)."""

import json
import subprocess
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import pytest

from infra.policy.rules import (
    AUTOSCALER,
    AWS_PROVIDER,
    BUCKET,
    BUCKET_ENCRYPTION,
    CLUSTER,
    INGRESS,
    INGRESS_RULE,
    LAUNCH_TEMPLATE,
    LOAD_BALANCER,
    NAT_GATEWAY,
    REPOSITORY,
    ROLLOUT,
    RULES,
    SECURITY_GROUP,
    SUBNET,
    VPC,
    Resource,
    Stack,
    evaluate,
    tier_of,
)
from tests.conftest import REPO_ROOT

POLICY_PYTHON = REPO_ROOT / ".venv-policy" / "bin" / "python"
TAGS = {"project": "p", "environment": "e", "owner": "o", "cost-center": "c", "managed-by": "pulumi"}


def _provider(tier: str, **tags: str) -> Resource:
    default_tags = json.dumps({"tags": {**TAGS, "tier": tier, **tags}})
    return Resource(f"urn:{AWS_PROVIDER}::aws", AWS_PROVIDER, "aws", {"defaultTags": default_tags})


def _resource(kind: str, name: str, inputs: dict[str, Any], **extra: Any) -> Resource:
    return Resource(f"urn:{kind}::{name}", kind, name, inputs, **extra)


def _ingress(port: int, cidr: str, group_role: str = "load-balancer") -> list[Resource]:
    group = _resource(SECURITY_GROUP, "group", {"tags": {"role": group_role}})
    rule = _resource(
        INGRESS_RULE,
        "rule",
        {"ipProtocol": "tcp", "fromPort": port, "toPort": port, "cidrIpv4": cidr},
        property_dependencies={"securityGroupId": [group.urn]},
    )
    return [group, rule]


def _bucket(algorithm: str) -> list[Resource]:
    bucket = _resource(BUCKET, "bucket", {}, protect=True)
    rules = [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": algorithm}}]
    encryption = _resource(BUCKET_ENCRYPTION, "sse", {"rules": rules}, property_dependencies={"bucket": [bucket.urn]})
    return [bucket, encryption]


def _template(encrypted: str, tokens: str) -> list[Resource]:
    mappings = [{"deviceName": "/dev/xvda", "ebs": {"encrypted": encrypted, "volumeSize": 30}}]
    return [
        _resource(LAUNCH_TEMPLATE, "lt", {"blockDeviceMappings": mappings, "metadataOptions": {"httpTokens": tokens}})
    ]


def _repository(kms: bool, scan: bool) -> list[Resource]:
    encryption = [{"encryptionType": "KMS" if kms else "AES256"}]
    scanning = {"scanOnPush": scan}
    return [
        _resource(
            REPOSITORY,
            "repo",
            {"encryptionConfigurations": encryption, "imageScanningConfiguration": scanning},
            protect=True,
        )
    ]


def _cluster(secrets: bool, deletion_protection: bool = True, protect: bool = True) -> list[Resource]:
    config = {"resources": ["secrets"] if secrets else [], "provider": {"keyArn": "arn"}}
    inputs = {"encryptionConfig": config, "deletionProtection": deletion_protection}
    return [_resource(CLUSTER, "cluster", inputs, protect=protect)]


def _network(zones: int, gateways: int) -> list[Resource]:
    subnets = [_resource(SUBNET, f"private-{z}", {"availabilityZone": f"us-east-1{'abc'[z]}"}) for z in range(zones)]
    nats = [_resource(NAT_GATEWAY, f"nat-{n}", {}) for n in range(gateways)]
    return [_resource(VPC, "vpc", {}), *subnets, *nats]


def _autoscaled_rollout(min_replicas: int) -> list[Resource]:
    labels = {"app.kubernetes.io/name": "model-service"}
    return [
        _resource(ROLLOUT, "model-service-rollout", {"metadata": {"labels": labels}, "spec": {}}),
        _resource(
            AUTOSCALER, "model-service-hpa", {"metadata": {"labels": labels}, "spec": {"minReplicas": min_replicas}}
        ),
    ]


def _alb_ingress(attributes: str) -> list[Resource]:
    metadata = {"annotations": {"alb.ingress.kubernetes.io/load-balancer-attributes": attributes}}
    return [_resource(INGRESS, "ingress", {"metadata": metadata, "spec": {"ingressClassName": "alb"}})]


# rule -> (tier, resources that break it, resources that keep it)
CASES: dict[str, tuple[str, Callable[[], list[Resource]], Callable[[], list[Resource]]]] = {
    "no-world-ingress": ("dev", lambda: _ingress(8080, "0.0.0.0/0"), lambda: _ingress(443, "0.0.0.0/0")),
    "no-ssh": ("dev", lambda: _ingress(22, "203.0.113.0/24"), lambda: _ingress(8443, "203.0.113.0/24")),
    "s3-encryption": ("dev", lambda: _bucket("AES256"), lambda: _bucket("aws:kms")),
    "ebs-encryption": ("dev", lambda: _template("false", "required"), lambda: _template("true", "required")),
    "ecr-encryption": ("dev", lambda: _repository(kms=False, scan=True), lambda: _repository(kms=True, scan=True)),
    "eks-secrets-encryption": ("dev", lambda: _cluster(secrets=False), lambda: _cluster(secrets=True)),
    "imdsv2": ("dev", lambda: _template("true", "optional"), lambda: _template("true", "required")),
    "required-tags": ("dev", lambda: [_provider("dev", owner="")], lambda: [_provider("dev")]),
    "ecr-scan-on-push": ("dev", lambda: _repository(kms=True, scan=False), lambda: _repository(kms=True, scan=True)),
    "protect-stateful": ("prod", lambda: _cluster(secrets=True, protect=False), lambda: _cluster(secrets=True)),
    "nat-per-az": ("prod", lambda: _network(zones=3, gateways=1), lambda: _network(zones=3, gateways=3)),
    "min-service-replicas": ("prod", lambda: _autoscaled_rollout(1), lambda: _autoscaled_rollout(3)),
    "deletion-protection": (
        "prod",
        lambda: [*_alb_ingress("routing.http.drop_invalid_header_fields.enabled=true"),
                 _resource(LOAD_BALANCER, "alb", {"loadBalancerType": "application"})],
        lambda: [*_alb_ingress("routing.http.drop_invalid_header_fields.enabled=true,deletion_protection.enabled=true"),
                 _resource(LOAD_BALANCER, "alb", {"enableDeletionProtection": True})],
    ),
}  # fmt: skip


def _stack(tier: str, resources: list[Resource]) -> list[Resource]:
    if not any(resource.type == AWS_PROVIDER for resource in resources):
        resources = [_provider(tier), *resources]
    return resources


def _offline(resources: list[Resource]) -> list[dict[str, str]]:
    stack = Stack(resources, tier_of(resources))
    return [{"policy": v.policy, "urn": v.urn, "message": v.message} for v in evaluate(stack)]


def _crossguard(stacks: list[list[Resource]]) -> list[list[dict[str, str]]]:
    assert POLICY_PYTHON.exists(), "the pack's environment is missing: make builds .venv-policy"
    result = subprocess.run(
        [str(POLICY_PYTHON), str(REPO_ROOT / "tests" / "policy" / "crossguard_probe.py")],
        input=json.dumps([[asdict(resource) for resource in stack] for stack in stacks]),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    reported: list[list[dict[str, str]]] = json.loads(result.stdout)
    return reported


def test_every_rule_has_a_case() -> None:
    assert sorted(CASES) == sorted(rule.name for rule in RULES)


def test_each_rule_fails_its_violating_input_and_passes_the_other_through_both_engines() -> None:
    names = sorted(CASES)
    stacks = []
    for name in names:
        tier, violating, passing = CASES[name]
        stacks += [_stack(tier, violating()), _stack(tier, passing())]
    crossguard = _crossguard(stacks)
    for index, name in enumerate(names):
        for stack, expected_to_fail, reported in (
            (stacks[2 * index], True, crossguard[2 * index]),
            (stacks[2 * index + 1], False, crossguard[2 * index + 1]),
        ):
            offline = _offline(stack)
            assert sorted(offline, key=str) == sorted(reported, key=str), f"{name}: the two engines disagree"
            assert [v["policy"] for v in offline] == ([name] * len(offline) if expected_to_fail else []), name
            assert offline or not expected_to_fail, f"{name}: the violating input passed"


def test_prod_rules_leave_other_tiers_alone() -> None:
    assert _offline(_stack("staging", _network(zones=3, gateways=1))) == []
    assert [v["policy"] for v in _offline(_stack("prod", _network(zones=3, gateways=1)))] == ["nat-per-az"]


@pytest.mark.parametrize(
    ("port", "cidr", "role", "expected"),
    [
        (443, "::/0", "load-balancer", []),
        (443, "0.0.0.0/0", "workload", ["no-world-ingress"]),
        (22, "0.0.0.0/0", "load-balancer", ["no-world-ingress", "no-ssh"]),
        (8080, "10.0.0.0/8", "workload", []),
    ],
)
def test_world_ingress_depends_on_port_and_group(port: int, cidr: str, role: str, expected: list[str]) -> None:
    resources = _ingress(port, cidr, role)
    if cidr == "::/0":
        rule = resources[1]
        inputs = {**rule.inputs, "cidrIpv6": cidr}
        del inputs["cidrIpv4"]
        resources[1] = Resource(
            rule.urn, rule.type, rule.name, inputs, property_dependencies=rule.property_dependencies
        )
    assert [v["policy"] for v in _offline(_stack("dev", resources))] == expected
