"""EKS managed node groups: a CPU pool and a GPU pool, each from config, each with its own launch template."""

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.compute.eks_cluster import EksCluster
from infra.compute.gpu_instances import ACCELERATOR_LABEL, accelerator_label_value, gpus_per_node
from infra.compute.launch_tags import launch_tag_specifications
from infra.compute.taints import GPU_TAINT, Taint, autoscaler_node_template_tags, parse_label
from infra.config import Environment
from infra.config.models import NodePoolConfig
from infra.network.vpc import Network
from infra.security.iam import attach_managed_policies, trust_policy
from infra.security.security_groups import SecurityGroups
from infra.security.session_manager import session_manager_policy
from infra.versions import CPU_AMI_TYPE, GPU_AMI_TYPE

# What a node needs and no more: join the cluster, pull images, run the VPC CNI; Session Manager comes from the
# stack's own policy (infra/security/session_manager.py), not AmazonSSMManagedInstanceCore and its parameter reads.
NODE_MANAGED_POLICIES = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEC2ContainerRegistryPullOnly",
    "AmazonEKS_CNI_Policy",
)
POOL_LABEL = "mlstack.io/pool"


@dataclass(frozen=True)
class PoolSpec:
    """A pool as Kubernetes sees it: the labels and taints its nodes carry."""

    name: str
    ami_type: str
    settings: NodePoolConfig
    labels: dict[str, str]
    taints: list[Taint]


def pool_specs(env: Environment) -> list[PoolSpec]:
    eks = env.config.compute.eks
    assert eks is not None
    specs = [PoolSpec("cpu", CPU_AMI_TYPE, eks.cpu_pool, {POOL_LABEL: "cpu"}, [])]
    if eks.gpu_pool.enabled:
        key, value = parse_label(eks.gpu_pool.label)
        labels = {
            POOL_LABEL: "gpu",
            key: value,
            ACCELERATOR_LABEL: accelerator_label_value(eks.gpu_pool.instance_types),
        }
        specs.append(PoolSpec("gpu", GPU_AMI_TYPE, eks.gpu_pool, labels, [GPU_TAINT]))
    return specs


def _auto_scaling_group_name(resources: Sequence[aws.eks.outputs.NodeGroupResource] | None) -> str:
    """The ASG EKS created for a managed node group."""
    groups = resources[0].autoscaling_groups if resources else None
    name = groups[0].name if groups else None
    if name is None:
        raise ValueError("EKS reported no Auto Scaling group for the node group")
    return name


class NodePools(pulumi.ComponentResource):
    """The node role and one managed node group per pool."""

    specs: list[PoolSpec]
    node_groups: dict[str, aws.eks.NodeGroup]

    def __init__(
        self,
        name: str,
        env: Environment,
        *,
        cluster: EksCluster,
        network: Network,
        security_groups: SecurityGroups,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:compute:NodePools", name, None, opts)
        self._name = name
        self._env = env
        self._child = pulumi.ResourceOptions(parent=self)
        self.specs = pool_specs(env)
        role = self._create_node_role()
        self.node_groups = {
            spec.name: self._create_pool(spec, role, cluster, network, security_groups) for spec in self.specs
        }
        self.register_outputs({"nodeGroups": [group.node_group_name for group in self.node_groups.values()]})

    def spec(self, pool: str) -> PoolSpec | None:
        return next((spec for spec in self.specs if spec.name == pool), None)

    def _create_node_role(self) -> aws.iam.Role:
        role = aws.iam.Role(
            f"{self._name}-node-role", assume_role_policy=trust_policy("ec2.amazonaws.com"), opts=self._child
        )
        attach_managed_policies(f"{self._name}-node", role, NODE_MANAGED_POLICIES, self._child)
        session_manager_policy(f"{self._name}-node", role, self._env.region, self._child)
        return role

    def _create_pool(
        self, spec: PoolSpec, role: aws.iam.Role, cluster: EksCluster, network: Network, security_groups: SecurityGroups
    ) -> aws.eks.NodeGroup:
        """IMDSv2 with hop limit 1 (pods use Pod Identity, not the node's role), an encrypted gp3 disk."""
        template = aws.ec2.LaunchTemplate(
            f"{self._name}-{spec.name}-launch-template",
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name="/dev/xvda",
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=spec.settings.disk_size_gb,
                        volume_type="gp3",
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            vpc_security_group_ids=[cluster.cluster_security_group_id, security_groups.workload_group_id],
            # EKS applies the template's instance and volume tag specifications to the nodes it launches; the disk
            # is the template's block device mapping (a node group with a launch template takes no diskSize).
            tag_specifications=launch_tag_specifications(self._env, f"{self._env.prefix}-{spec.name}-node"),
            update_default_version=True,
            opts=self._child,
        )
        group = aws.eks.NodeGroup(
            f"{self._name}-{spec.name}",
            cluster_name=cluster.name,
            node_group_name_prefix=f"{spec.name}-",
            node_role_arn=role.arn,
            subnet_ids=network.private_subnet_ids,
            ami_type=spec.ami_type,
            capacity_type=spec.settings.capacity_type,
            instance_types=spec.settings.instance_types,
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=spec.settings.min_size,
                max_size=spec.settings.max_size,
                desired_size=spec.settings.desired_size,
            ),
            labels=spec.labels,
            taints=[aws.eks.NodeGroupTaintArgs(**taint.for_eks()) for taint in spec.taints],
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable_percentage=33),
            opts=pulumi.ResourceOptions(
                parent=self,
                # Cluster Autoscaler owns desired size once running; config sets the starting point and bounds.
                ignore_changes=["scalingConfig.desiredSize"],
            ),
        )
        if spec.taints or len(spec.labels) > 1:
            self._tag_for_scale_from_zero(spec, group)
        return group

    def _tag_for_scale_from_zero(self, spec: PoolSpec, group: aws.eks.NodeGroup) -> None:
        """Managed node groups do not tag their ASGs with labels, taints or GPUs; Cluster Autoscaler needs them."""
        gpus = gpus_per_node(spec.settings.instance_types) if GPU_TAINT in spec.taints else 0
        asg_name = group.resources.apply(_auto_scaling_group_name)
        for index, (key, value) in enumerate(
            sorted(autoscaler_node_template_tags(spec.labels, spec.taints, gpus).items())
        ):
            aws.autoscaling.Tag(
                f"{self._name}-{spec.name}-asg-tag-{index + 1}",
                autoscaling_group_name=asg_name,
                tag=aws.autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=False),
                opts=self._child,
            )
