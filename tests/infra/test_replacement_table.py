"""The replace-vs-update table `mlstack diff` reads: each entry says where upstream decides it, and changes are
marked the way the providers treat them."""

import re
from typing import Any

import pytest

from infra.preview.diff import (
    KUBERNETES_KIND_REPLACED_BY,
    KUBERNETES_REPLACED_BY,
    REPLACED_BY,
    ForcesReplacement,
    field_changes,
)

# repository@commit:path of a Go source file, the commit a full 40-digit SHA.
PROVENANCE = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}:[\w./-]+\.go$")
ENTRIES: list[tuple[str, ForcesReplacement]] = [
    *REPLACED_BY.items(),
    *KUBERNETES_KIND_REPLACED_BY.items(),
    ("kubernetes: every object", KUBERNETES_REPLACED_BY),
]


@pytest.mark.parametrize(("resource_type", "rule"), ENTRIES, ids=[name for name, _ in ENTRIES])
def test_each_entry_names_the_upstream_file_and_commit_it_was_checked_against(
    resource_type: str, rule: ForcesReplacement
) -> None:
    assert PROVENANCE.match(rule.source), f"{resource_type}: {rule.source!r} is not repository@commit:path"
    assert rule.fields, resource_type
    for field in rule.fields:
        # The engine's camelCase input names, not Terraform's snake_case ones.
        assert re.fullmatch(r"[a-z][A-Za-z0-9]*(\.[a-z][A-Za-z0-9]*)*", field), f"{resource_type}: {field}"
    expected_repository = "pulumi/pulumi-kubernetes" if resource_type.startswith("kubernetes") else "hashicorp/"
    assert rule.source.startswith(expected_repository)


def test_the_resources_a_reviewer_worries_about_are_in_the_table() -> None:
    for resource_type in (
        "aws:ec2/launchTemplate:LaunchTemplate",
        "aws:autoscaling/group:Group",
        "aws:eks/cluster:Cluster",
        "aws:eks/nodeGroup:NodeGroup",
        "aws:s3/bucket:Bucket",
        "aws:kms/key:Key",
        "aws:iam/role:Role",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ecr/repository:Repository",
        "aws:lb/targetGroup:TargetGroup",
    ):
        assert resource_type in REPLACED_BY


def _replaces(resource_type: str, before: dict[str, Any], after: dict[str, Any]) -> dict[str, bool]:
    return {change.path: change.replaces for change in field_changes(resource_type, before, after)}


@pytest.mark.parametrize(
    ("resource_type", "before", "after", "expected"),
    [
        # A bigger instance type is a new launch template version and an instance refresh, not a new template.
        ("aws:ec2/launchTemplate:LaunchTemplate", {"instanceType": "t3.large"}, {"instanceType": "m6i.large"}, False),
        ("aws:ec2/launchTemplate:LaunchTemplate", {"name": "a"}, {"name": "b"}, True),
        # A node group's instance types cannot change: a new group.
        ("aws:eks/nodeGroup:NodeGroup", {"instanceTypes": ["m6i.large"]}, {"instanceTypes": ["m6i.xlarge"]}, True),
        ("aws:eks/nodeGroup:NodeGroup", {"scalingConfig": {"maxSize": 4}}, {"scalingConfig": {"maxSize": 5}}, False),
        ("aws:eks/cluster:Cluster", {"version": "1.34"}, {"version": "1.35"}, False),
        ("aws:eks/cluster:Cluster", {"name": "a"}, {"name": "b"}, True),
        ("aws:eks/cluster:Cluster", {"vpcConfig": {"subnetIds": ["a"]}}, {"vpcConfig": {"subnetIds": ["b"]}}, False),
        # A block added whole replaces when a field inside it forces it.
        ("aws:eks/cluster:Cluster", {}, {"kubernetesNetworkConfig": {"serviceIpv4Cidr": "172.20.0.0/16"}}, True),
        ("aws:ec2/vpc:Vpc", {"instanceTenancy": "default"}, {"instanceTenancy": "dedicated"}, False),
        ("aws:s3/bucket:Bucket", {"bucket": "a"}, {"bucket": "b"}, True),
        ("aws:iam/role:Role", {"assumeRolePolicy": "{}"}, {"assumeRolePolicy": "[]"}, False),
        ("aws:lb/targetGroup:TargetGroup", {"protocolVersion": "HTTP1"}, {"protocolVersion": "GRPC"}, True),
        ("aws:autoscaling/group:Group", {"maxSize": 2}, {"maxSize": 3}, False),
        ("kubernetes:core/v1:ConfigMap", {"data": {"a": "1"}}, {"data": {"a": "2"}}, True),
        ("kubernetes:core/v1:Service", {"spec": {"ports": [{"port": 80}]}}, {"spec": {"ports": [{"port": 81}]}}, False),
        ("kubernetes:helm.sh/v3:Release", {"values": {"a": 1}}, {"values": {"a": 2}}, False),
        ("kubernetes:helm.sh/v3:Release", {"name": "a"}, {"name": "b"}, True),
    ],
)
def test_changes_are_marked_as_the_provider_treats_them(
    resource_type: str, before: dict[str, Any], after: dict[str, Any], expected: bool
) -> None:
    marks = _replaces(resource_type, before, after)
    assert marks
    assert any(marks.values()) is expected, marks


def test_a_security_group_rule_is_replaced_only_when_its_source_kind_changes() -> None:
    rule = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
    same_kind = _replaces(rule, {"cidrIpv4": "203.0.113.0/24"}, {"cidrIpv4": "0.0.0.0/0"})
    assert same_kind == {"cidrIpv4": False}
    other_kind = _replaces(rule, {"cidrIpv4": "203.0.113.0/24"}, {"referencedSecurityGroupId": "sg-1"})
    assert other_kind == {"cidrIpv4": True, "referencedSecurityGroupId": True}
