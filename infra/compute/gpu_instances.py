"""The NVIDIA GPU instance types a GPU pool may use: how many GPUs each has and which model.

Cluster Autoscaler needs the count to scale an empty pool up (it cannot ask a node that does not exist), and
its AWS provider reads the model from the `k8s.amazonaws.com/accelerator` node label.

Provenance: EC2 DescribeInstanceTypes as published in aws/karpenter-provider-aws,
website/content/en/docs/reference/instance-types.md at commit 1d927085dd81a9df9301e613f371dac5b4d16bfe
(`karpenter.k8s.aws/instance-gpu-count` and `karpenter.k8s.aws/instance-gpu-name` of each type).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInstance:
    gpus: int
    model: str


def _sizes(model: str, counts: dict[str, int]) -> dict[str, GpuInstance]:
    return {size: GpuInstance(gpus, model) for size, gpus in counts.items()}


_SINGLE_TO_OCTO = {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1, "12xlarge": 4}
GPU_INSTANCE_FAMILIES: dict[str, dict[str, GpuInstance]] = {
    "g4dn": _sizes("t4", {**_SINGLE_TO_OCTO, "metal": 8}),
    "g5": _sizes("a10g", {**_SINGLE_TO_OCTO, "24xlarge": 4, "48xlarge": 8}),
    "g6": _sizes("l4", {**_SINGLE_TO_OCTO, "24xlarge": 4, "48xlarge": 8}),
    "g6e": _sizes("l40s", {**_SINGLE_TO_OCTO, "24xlarge": 4, "48xlarge": 8}),
    "p4d": _sizes("a100", {"24xlarge": 8}),
    "p5": _sizes("h100", {"4xlarge": 1, "48xlarge": 8}),
}
GPU_INSTANCE_TYPES: dict[str, GpuInstance] = {
    f"{family}.{size}": instance for family, sizes in GPU_INSTANCE_FAMILIES.items() for size, instance in sizes.items()
}
# The Cluster Autoscaler AWS provider's GPU label (kubernetes/autoscaler, cluster-autoscaler/cloudprovider/aws/
# aws_cloud_provider.go `GPULabel`, commit 55c37cd5eb550756c5ccc5a89e9068d77797e575); its README asks for
# `k8s.amazonaws.com/accelerator=<gpu-type>` set before the node joins, so the autoscaler does not scale out
# again while the device plugin is still starting.
ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"


def gpus_per_node(instance_types: list[str]) -> int:
    """The smallest GPU count among the pool's types, so a scale-up never promises more than it delivers."""
    return min(GPU_INSTANCE_TYPES[name].gpus for name in instance_types)


def accelerator_label_value(instance_types: list[str]) -> str:
    """`nvidia-<model>`; a pool mixing models (g5 and g6, for capacity) names each, e.g. `nvidia-a10g-l4`.

    The label is one value per node group, so a mixed pool cannot name the exact model of each node; the
    autoscaler only uses the value to tell GPU types apart in `--gpu-total` limits, which this stack sets none of.
    """
    models = sorted({GPU_INSTANCE_TYPES[name].model for name in instance_types})
    return "nvidia-" + "-".join(models)
