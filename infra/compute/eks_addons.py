"""EKS managed add-ons at pinned versions: networking, DNS, kube-proxy, Pod Identity and the EBS CSI driver."""

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.compute.addons.addon_versions import addon_version
from infra.compute.eks_cluster import EksCluster
from infra.config import Environment
from infra.security.iam import attach_managed_policies, pod_identity_trust_policy, policy_document
from infra.versions import EKS_ADDON_VERSIONS

# Add-ons that run as pods need nodes to become healthy; the others are installed with the control plane.
NEEDS_NODES = ("coredns", "aws-ebs-csi-driver")
EBS_CSI_ADDON = "aws-ebs-csi-driver"
VPC_CNI_ADDON = "vpc-cni"
# The driver's controller runs as this service account in kube-system; the Pod Identity association names it
# (kubernetes-sigs/aws-ebs-csi-driver docs/install.md at v1.64.0, "EKS Pod Identity").
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
# The least-privilege managed policy the driver's docs now point to: volumes and snapshots it tagged itself
# (docs/install.md and docs/AmazonEBSCSIDriverPolicyV2.json at v1.64.0; CHANGELOG v1.59.0, issue #2918). It
# grants no KMS access, so a customer-managed key needs the statements below.
EBS_CSI_MANAGED_POLICY = "service-role/AmazonEBSCSIDriverPolicyV2"
# Turns on the VPC CNI's network policy agent, which enforces NetworkPolicy objects: the add-on's configuration
# key (aws/amazon-vpc-cni-k8s charts/aws-vpc-cni/values.yaml at v1.23.0; EKS User Guide, eks-networking-add-ons,
# "Enable the network policy parameter for the add-on"), a string as the add-on schema wants it.
VPC_CNI_CONFIGURATION = {"enableNetworkPolicy": "true"}


def ebs_csi_key_statements(key_arn: pulumi.Input[str]) -> list[dict[str, Any]]:
    """What the driver needs to create and attach volumes encrypted with a customer-managed key.

    Actions from the driver's docs (docs/install.md at v1.64.0, "Encrypted EBS Volumes via KMS"), scoped to the
    one key; DescribeKey and the grant condition from the EKS User Guide's ebs-csi page: EC2 creates the grant
    on the driver's behalf, so grants for anything but an AWS resource are refused.
    """
    return [
        {
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"],
            "Resource": key_arn,
        },
        {
            "Effect": "Allow",
            "Action": ["kms:CreateGrant"],
            "Resource": key_arn,
            "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
        },
    ]


class EksAddons(pulumi.ComponentResource):
    """One aws.eks.Addon per entry of EKS_ADDON_VERSIONS for the cluster's Kubernetes version."""

    addons: dict[str, aws.eks.Addon]

    def __init__(
        self,
        name: str,
        env: Environment,
        cluster: EksCluster,
        node_groups: list[pulumi.Resource],
        *,
        volume_key: aws.kms.Key,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:compute:EksAddons", name, None, opts)
        eks = env.config.compute.eks
        assert eks is not None
        versions = EKS_ADDON_VERSIONS[eks.version]
        ebs_role = aws.iam.Role(
            f"{name}-ebs-csi-role",
            assume_role_policy=pod_identity_trust_policy(cluster.cluster.arn, "kube-system", EBS_CSI_SERVICE_ACCOUNT),
            opts=pulumi.ResourceOptions(parent=self),
        )
        attach_managed_policies(
            f"{name}-ebs-csi", ebs_role, (EBS_CSI_MANAGED_POLICY,), pulumi.ResourceOptions(parent=self)
        )
        key_policy = aws.iam.RolePolicy(
            f"{name}-ebs-csi-volume-key",
            role=ebs_role.id,
            policy=policy_document(ebs_csi_key_statements(volume_key.arn)),
            opts=pulumi.ResourceOptions(parent=self),
        )
        pod_identity = {
            EBS_CSI_ADDON: [
                aws.eks.AddonPodIdentityAssociationArgs(role_arn=ebs_role.arn, service_account=EBS_CSI_SERVICE_ACCOUNT)
            ]
        }
        configuration = {VPC_CNI_ADDON: json.dumps(VPC_CNI_CONFIGURATION)}
        self.addons = {}
        # The Pod Identity agent goes first: the EBS CSI driver's credentials come through it.
        for addon_name in sorted(versions, key=lambda addon: addon != "eks-pod-identity-agent"):
            depends_on: list[pulumi.Resource] = list(node_groups) if addon_name in NEEDS_NODES else []
            if addon_name != "eks-pod-identity-agent" and "eks-pod-identity-agent" in self.addons:
                depends_on.append(self.addons["eks-pod-identity-agent"])
            if addon_name == EBS_CSI_ADDON:
                # The driver must be able to use the key before the first claim asks it for a volume.
                depends_on.append(key_policy)
            self.addons[addon_name] = aws.eks.Addon(
                f"{name}-{addon_name}",
                cluster_name=cluster.name,
                addon_name=addon_name,
                addon_version=addon_version(addon_name, eks.version, pulumi.InvokeOutputOptions(parent=self)),
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                pod_identity_associations=pod_identity.get(addon_name),
                configuration_values=configuration.get(addon_name),
                opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
            )
        self.register_outputs({"addons": sorted(self.addons)})
