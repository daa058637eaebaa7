"""Taints, tolerations and node labels as data: defined once on the pool, derived everywhere else."""

from dataclasses import dataclass

# EKS's API spells taint effects differently from Kubernetes.
EKS_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}
GPU_RESOURCE = "nvidia.com/gpu"
AUTOSCALER_TEMPLATE = "k8s.io/cluster-autoscaler/node-template"


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str = "NoSchedule"

    def for_eks(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "effect": EKS_EFFECTS[self.effect]}

    def toleration(self) -> dict[str, str]:
        return {"key": self.key, "operator": "Equal", "value": self.value, "effect": self.effect}


GPU_TAINT = Taint(GPU_RESOURCE, "true", "NoSchedule")


def tolerations_for(taints: list[Taint]) -> list[dict[str, str]]:
    return [taint.toleration() for taint in taints]


def parse_label(label: str) -> tuple[str, str]:
    key, _, value = label.partition("=")
    return key, value


def autoscaler_node_template_tags(labels: dict[str, str], taints: list[Taint], gpus: int) -> dict[str, str]:
    """ASG tags that tell Cluster Autoscaler what a node of an empty pool would look like."""
    tags = {f"{AUTOSCALER_TEMPLATE}/label/{key}": value for key, value in labels.items()}
    tags |= {f"{AUTOSCALER_TEMPLATE}/taint/{taint.key}": f"{taint.value}:{taint.effect}" for taint in taints}
    if gpus:
        tags[f"{AUTOSCALER_TEMPLATE}/resources/{GPU_RESOURCE}"] = str(gpus)
    return tags
