"""Least privilege on the recorded graph: each pod identity is bound to one service account of one cluster, and
each workload's role can do its job and no one else's."""

import json
from typing import Any

import pytest

from infra.preview.engine import RecordedResource, StackRun

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
EKS_STACKS = ("staging", "prod")


def _role_by_arn(run: StackRun, arn: str) -> RecordedResource:
    (role,) = [role for role in run.of_type(ROLE) if role.outputs.get("arn") == arn]
    return role


def _statements(run: StackRun, role: RecordedResource) -> list[dict[str, Any]]:
    policies = [p for p in run.of_type(ROLE_POLICY) if p.inputs["role"] == role.id]
    return [statement for policy in policies for statement in json.loads(policy.inputs["policy"])["Statement"]]


def _resources(statement: dict[str, Any]) -> list[str]:
    resource = statement.get("Resource", [])
    return [resource] if isinstance(resource, str) else list(resource)


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_every_pod_identity_role_trusts_only_its_service_account_on_this_cluster(
    committed_runs: dict[str, StackRun], stack: str
) -> None:
    run = committed_runs[stack]
    (cluster,) = run.of_type(EKS_CLUSTER)
    cluster_arn = cluster.outputs["arn"]
    pod_roles = [role for role in run.of_type(ROLE) if "pods.eks.amazonaws.com" in role.inputs["assumeRolePolicy"]]
    associated = {association.inputs["roleArn"]: association.inputs for association in run.of_type(ASSOCIATION)}
    assert len(pod_roles) >= 4  # the model service, batch, the LB controller, the autoscaler (and the EBS driver)
    for role in pod_roles:
        (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        conditions = statement["Condition"]["StringEquals"]
        assert conditions["aws:SourceAccount"] == cluster_arn.split(":")[4], role.name
        assert conditions["aws:RequestTag/eks-cluster-arn"] == cluster_arn, role.name
        association = associated.get(role.outputs["arn"])
        if association is not None:
            assert conditions["aws:RequestTag/kubernetes-namespace"] == association["namespace"], role.name
            assert conditions["aws:RequestTag/kubernetes-service-account"] == association["serviceAccount"], role.name
        else:  # an add-on's association (EBS CSI driver), declared on the add-on itself
            assert conditions["aws:RequestTag/kubernetes-namespace"] == "kube-system", role.name
            assert conditions["aws:RequestTag/kubernetes-service-account"], role.name


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_batch_runs_under_its_own_role_and_serving_loses_batch_access(
    committed_runs: dict[str, StackRun], stack: str
) -> None:
    run = committed_runs[stack]
    roles = {a.inputs["serviceAccount"]: _role_by_arn(run, a.inputs["roleArn"]) for a in run.of_type(ASSOCIATION)}
    serving = _statements(run, roles["model-service"])
    batch = _statements(run, roles["model-service-batch"])
    serving_resources = [resource for statement in serving for resource in _resources(statement)]
    assert not [resource for resource in serving_resources if "batch/" in resource], serving_resources
    assert all(
        action in ("s3:GetObject", "s3:ListBucket", "kms:Decrypt")
        for statement in serving
        for action in statement["Action"]
    ), serving
    writes = [s for s in batch if "s3:PutObject" in s["Action"]]
    assert [_resources(s)[0].rsplit("/", 2)[-2:] for s in writes] == [["output", "*"]]
    reads = [r for s in batch if "s3:GetObject" in s["Action"] for r in _resources(s)]
    assert any(r.endswith("/batch/input/*") for r in reads)
    assert any(r.endswith("/models/*") for r in reads)
