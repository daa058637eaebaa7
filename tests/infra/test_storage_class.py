"""The cluster's default StorageClass and what the EBS CSI driver needs to honour it."""

import json

from infra.compute.eks_addons import EBS_CSI_MANAGED_POLICY, EBS_CSI_SERVICE_ACCOUNT
from infra.compute.storage_class import DEFAULT_CLASS_ANNOTATION
from infra.preview.engine import RecordedResource, StackRun

STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
ADDON = "aws:eks/addon:Addon"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"


def _cluster_key_arn(run: StackRun) -> str:
    (key,) = [key for key in run.of_type("aws:kms/key:Key") if key.name.endswith("-cluster")]
    arn: str = key.outputs["arn"]
    return arn


def _addon(run: StackRun, name: str) -> RecordedResource:
    (addon,) = [addon for addon in run.of_type(ADDON) if addon.inputs["addonName"] == name]
    return addon


def test_each_cluster_has_one_default_class_of_encrypted_gp3_with_the_clusters_key(stack_run: StackRun) -> None:
    classes = stack_run.of_type(STORAGE_CLASS)
    if stack_run.stack == "dev":
        assert classes == []
        return
    (storage_class,) = classes
    assert storage_class.inputs["metadata"]["annotations"] == {DEFAULT_CLASS_ANNOTATION: "true"}
    assert storage_class.inputs["provisioner"] == "ebs.csi.aws.com"
    assert storage_class.inputs["volumeBindingMode"] == "WaitForFirstConsumer"
    parameters = storage_class.inputs["parameters"]
    assert (parameters["type"], parameters["encrypted"]) == ("gp3", "true")
    assert parameters["kmsKeyId"] == _cluster_key_arn(stack_run)


def test_the_class_waits_for_the_ebs_csi_driver_and_monitoring_for_the_class(
    committed_runs: dict[str, StackRun],
) -> None:
    run = committed_runs["prod"]
    (storage_class,) = run.of_type(STORAGE_CLASS)
    assert _addon(run, "aws-ebs-csi-driver").urn in storage_class.dependencies
    (prometheus,) = [r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.name == "monitoring-release"]
    assert storage_class.urn in prometheus.dependencies


def test_the_ebs_csi_driver_may_use_exactly_the_clusters_key(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["staging"]
    addon = _addon(run, "aws-ebs-csi-driver")
    (association,) = addon.inputs["podIdentityAssociations"]
    assert association["serviceAccount"] == EBS_CSI_SERVICE_ACCOUNT == "ebs-csi-controller-sa"
    role_names = [r for r in run.of_type("aws:iam/role:Role") if r.outputs.get("arn") == association["roleArn"]]
    (role,) = role_names
    attached = {a.inputs["policyArn"] for a in run.of_type(ATTACHMENT) if a.inputs["role"] == role.outputs["name"]}
    # Stated here: AWS's managed policy for the EBS CSI driver, and nothing else.
    assert attached == {"arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicyV2"}
    assert attached == {f"arn:aws:iam::aws:policy/{EBS_CSI_MANAGED_POLICY}"}
    (policy,) = [p for p in run.of_type(ROLE_POLICY) if p.inputs["role"] == role.id]
    statements = json.loads(policy.inputs["policy"])["Statement"]
    key = _cluster_key_arn(run)
    actions = {action for statement in statements for action in statement["Action"]}
    assert actions == {"kms:Decrypt", "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey", "kms:CreateGrant"}
    assert {statement["Resource"] for statement in statements} == {key}
    (grant,) = [s for s in statements if s["Action"] == ["kms:CreateGrant"]]
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert policy.urn in addon.dependencies


def test_the_vpc_cni_enforces_network_policies(committed_runs: dict[str, StackRun]) -> None:
    addon = _addon(committed_runs["prod"], "vpc-cni")
    assert json.loads(addon.inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}
