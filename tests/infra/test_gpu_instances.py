"""GPU instance types: counts and models as AWS publishes them, and what the GPU pool derives from them."""

import pytest

from infra.compute.gpu_instances import (
    ACCELERATOR_LABEL,
    GPU_INSTANCE_TYPES,
    accelerator_label_value,
    gpus_per_node,
)
from infra.config import StackConfigError
from infra.preview.engine import StackRun
from infra.versions import GPU_AMI_TYPE
from tests.conftest import RunStack, stack_config

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
GPU_COUNT_TAG = "k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"
ACCELERATOR_TAG = f"k8s.io/cluster-autoscaler/node-template/label/{ACCELERATOR_LABEL}"


@pytest.mark.parametrize(
    ("instance_type", "gpus", "model"),
    [
        ("p4d.24xlarge", 8, "a100"),
        ("p5.48xlarge", 8, "h100"),
        ("p5.4xlarge", 1, "h100"),
        ("g5.24xlarge", 4, "a10g"),
        ("g5.48xlarge", 8, "a10g"),
        ("g5.16xlarge", 1, "a10g"),
        ("g4dn.12xlarge", 4, "t4"),
        ("g4dn.metal", 8, "t4"),
        ("g6e.12xlarge", 4, "l40s"),
        ("g6.xlarge", 1, "l4"),
    ],
)
def test_gpu_counts_match_what_aws_publishes(instance_type: str, gpus: int, model: str) -> None:
    assert (GPU_INSTANCE_TYPES[instance_type].gpus, GPU_INSTANCE_TYPES[instance_type].model) == (gpus, model)


def test_a_pool_promises_the_smallest_count_and_names_every_model_it_mixes() -> None:
    assert gpus_per_node(["g5.12xlarge", "g5.xlarge"]) == 1
    assert accelerator_label_value(["g5.xlarge", "g5.2xlarge"]) == "nvidia-a10g"
    assert accelerator_label_value(["g6.xlarge", "g5.xlarge"]) == "nvidia-a10g-l4"


def test_an_instance_type_whose_gpu_count_is_unknown_is_a_config_error(run_stack: RunStack) -> None:
    config = stack_config("staging")
    config["mlstack:compute"]["eks"] = {"gpuPool": {"instanceTypes": ["p4de.24xlarge"]}}
    with pytest.raises(StackConfigError, match=r"gpuPool.instanceTypes: .*'p4de.24xlarge'\] are not GPU instance"):
        run_stack("staging", config)


def _gpu_pool(run: StackRun) -> tuple[dict[str, str], dict[str, str]]:
    (group,) = [g for g in run.of_type(NODE_GROUP) if g.inputs["amiType"] == GPU_AMI_TYPE]
    tags = {tag.inputs["tag"]["key"]: tag.inputs["tag"]["value"] for tag in run.of_type("aws:autoscaling/tag:Tag")}
    return group.inputs["labels"], tags


def test_gpu_nodes_carry_the_autoscalers_accelerator_label_and_template_tag(
    committed_runs: dict[str, StackRun],
) -> None:
    labels, tags = _gpu_pool(committed_runs["prod"])
    # prod's pool mixes g5 (A10G) and g6 (L4) for capacity.
    assert labels[ACCELERATOR_LABEL] == "nvidia-a10g-l4"
    assert tags[ACCELERATOR_TAG] == "nvidia-a10g-l4"
    assert ACCELERATOR_LABEL == "k8s.amazonaws.com/accelerator"


def test_a_p4d_pool_scales_from_zero_with_eight_gpus_per_node(run_stack: RunStack) -> None:
    config = stack_config("staging")
    config["mlstack:compute"]["eks"] = {
        "gpuPool": {"instanceTypes": ["p4d.24xlarge"], "minSize": 0, "maxSize": 1, "desiredSize": 0}
    }
    labels, tags = _gpu_pool(run_stack("staging", config))
    assert tags[GPU_COUNT_TAG] == "8"
    assert labels[ACCELERATOR_LABEL] == tags[ACCELERATOR_TAG] == "nvidia-a100"
