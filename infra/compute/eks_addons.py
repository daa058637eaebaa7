"""EKS managed add-ons at pinned versions: networking, DNS, kube-proxy, Pod Identity and the EBS CSI driver."""

import pulumi
import pulumi_aws as aws

from infra.compute.addons.addon_versions import addon_version
from infra.compute.eks_cluster import EksCluster
from infra.config import Environment
from infra.security.iam import attach_managed_policies, pod_identity_trust_policy
from infra.versions import EKS_ADDON_VERSIONS

# Add-ons that run as pods need nodes to become healthy; the others are installed with the control plane.
NEEDS_NODES = ("coredns", "aws-ebs-csi-driver")


class EksAddons(pulumi.ComponentResource):
    """One aws.eks.Addon per entry of EKS_ADDON_VERSIONS for the cluster's Kubernetes version."""

    addons: dict[str, aws.eks.Addon]

    def __init__(
        self,
        name: str,
        env: Environment,
        cluster: EksCluster,
        node_groups: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:compute:EksAddons", name, None, opts)
        eks = env.config.compute.eks
        assert eks is not None
        versions = EKS_ADDON_VERSIONS[eks.version]
        ebs_role = aws.iam.Role(
            f"{name}-ebs-csi-role",
            assume_role_policy=pod_identity_trust_policy(),
            opts=pulumi.ResourceOptions(parent=self),
        )
        attach_managed_policies(
            f"{name}-ebs-csi", ebs_role, ("service-role/AmazonEBSCSIDriverPolicy",), pulumi.ResourceOptions(parent=self)
        )
        pod_identity = {
            "aws-ebs-csi-driver": [
                aws.eks.AddonPodIdentityAssociationArgs(role_arn=ebs_role.arn, service_account="ebs-csi-controller-sa")
            ]
        }
        self.addons = {}
        # The Pod Identity agent goes first: the EBS CSI driver's credentials come through it.
        for addon_name in sorted(versions, key=lambda addon: addon != "eks-pod-identity-agent"):
            depends_on: list[pulumi.Resource] = list(node_groups) if addon_name in NEEDS_NODES else []
            if addon_name != "eks-pod-identity-agent" and "eks-pod-identity-agent" in self.addons:
                depends_on.append(self.addons["eks-pod-identity-agent"])
            self.addons[addon_name] = aws.eks.Addon(
                f"{name}-{addon_name}",
                cluster_name=cluster.name,
                addon_name=addon_name,
                addon_version=addon_version(addon_name, eks.version, pulumi.InvokeOutputOptions(parent=self)),
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                pod_identity_associations=pod_identity.get(addon_name),
                opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
            )
        self.register_outputs({"addons": sorted(self.addons)})
