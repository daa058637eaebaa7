"""The cluster's default StorageClass: encrypted gp3 volumes from the EBS CSI driver.

EKS 1.30 and later create no default StorageClass, so without this a claim that names no class (the Prometheus
volume of kube-prometheus-stack, for one) stays Pending forever.
"""

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.compute.eks_cluster import EksCluster
from infra.workloads.objects import create

NAME = "gp3-encrypted"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
EBS_CSI_PROVISIONER = "ebs.csi.aws.com"


def storage_class_parameters(key_arn: str) -> dict[str, str]:
    """Parameter names and values from kubernetes-sigs/aws-ebs-csi-driver docs/parameters.md at v1.64.0."""
    return {"type": "gp3", "encrypted": "true", "kmsKeyId": key_arn, "csi.storage.k8s.io/fstype": "ext4"}


class DefaultStorageClass(pulumi.ComponentResource):
    """gp3, encrypted with the cluster's key, created where the pod lands (WaitForFirstConsumer), expandable."""

    storage_class: k8s.storage.v1.StorageClass

    def __init__(
        self,
        name: str,
        *,
        cluster: EksCluster,
        volume_key: aws.kms.Key,
        ebs_csi_driver: pulumi.Resource,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:compute:DefaultStorageClass", name, None, opts)
        self.storage_class = create(
            k8s.storage.v1.StorageClass,
            f"{name}-gp3",
            metadata={"name": NAME, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
            provisioner=EBS_CSI_PROVISIONER,
            parameters=volume_key.arn.apply(storage_class_parameters),
            # A volume is zonal: create it in the zone the scheduler picked for the pod, not before.
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy="Delete",
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=cluster.provider,
                depends_on=[ebs_csi_driver],
                # Parameters are immutable and the name is fixed: a change must delete the old class first.
                delete_before_replace=True,
            ),
        )
        self.register_outputs({"name": NAME})
