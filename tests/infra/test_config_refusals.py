"""Config mistakes AWS would refuse are refused here first, each with the real bounds or a suggestion."""

from pathlib import Path
from typing import Any

import pytest

from infra.config import StackConfigError, parse_stack_config
from infra.config.aws_catalog import aws_regions, ec2_instance_types
from infra.preview.stack_file import read_stack_file
from tests.conftest import REPO_ROOT, stack_config
from tests.infra.test_config import _with


def _error(stack: str, config: dict[str, Any]) -> str:
    with pytest.raises(StackConfigError) as caught:
        parse_stack_config(stack, config)
    message = str(caught.value)
    assert "\n" not in message
    assert "None" not in message
    return message


@pytest.mark.parametrize(
    ("stack", "path", "value", "expected"),
    [
        ("prod", "mlstack:compute.eks.gpuPool.maxSize", 0, "gpuPool.maxSize: 0 is not allowed: must be from 1 to 100"),
        (
            "prod",
            "mlstack:compute.eks.cpuPool.maxSize",
            101,
            "cpuPool.maxSize: 101 is not allowed: must be from 1 to 100",
        ),
        (
            "staging",
            "mlstack:release.blueGreen.scaleDownDelaySeconds",
            100_000,
            "blueGreen.scaleDownDelaySeconds: 100000 is not allowed: must be from 30 to 86400",
        ),
        (
            "prod",
            "mlstack:monitoring.slo.errorRatio",
            2,
            "slo.errorRatio: 2 is not allowed: must be above 0 and below 1",
        ),
    ],
)
def test_range_errors_on_nested_optional_keys_state_the_real_bounds(
    stack: str, path: str, value: Any, expected: str
) -> None:
    assert expected in _error(stack, _with(stack, path, value))


def test_a_canary_weight_out_of_range_states_the_bounds() -> None:
    config = stack_config("prod")
    config["mlstack:release"]["canary"]["steps"][0]["weight"] = 150
    assert "release.canary.steps[0].weight: 150 is not allowed: must be from 1 to 100" in _error("prod", config)


def test_a_region_that_does_not_exist_is_refused_with_the_nearest_ones() -> None:
    message = _error("prod", _with("prod", "aws:region", "us-west-3"))
    assert "aws:region: 'us-west-3' is not an AWS region" in message
    assert "did you mean 'us-west-2'" in message
    assert {"us-east-1", "eu-west-3", "ap-southeast-2"} <= aws_regions()


@pytest.mark.parametrize(
    ("stack", "path", "value", "suggested"),
    [
        ("prod", "mlstack:compute.eks.cpuPool.instanceTypes", ["m6i.larg"], "m6i.large"),
        ("prod", "mlstack:compute.eks.gpuPool.instanceTypes", ["g5.xlarg"], "g5.xlarge"),
        ("dev", "mlstack:compute.ec2.instanceType", "t3.larg", "t3.large"),
    ],
)
def test_a_misspelled_instance_type_is_refused_with_a_suggestion(
    stack: str, path: str, value: Any, suggested: str
) -> None:
    message = _error(stack, _with(stack, path, value))
    assert f"{path.split(':')[1]}:" in message
    assert f"not an EC2 instance type; did you mean '{suggested}'" in message
    assert suggested in ec2_instance_types()


@pytest.mark.parametrize("version", ["banana", "1.0", "v1.0.0", "01.0.0"])
def test_a_model_version_must_be_what_the_retrain_pipeline_publishes(version: str) -> None:
    message = _error("prod", _with("prod", "mlstack:service.modelVersion", version))
    assert f"mlstack:service.modelVersion: '{version}' is not allowed: model versions are X.Y.Z" in message


def test_published_versions_pass() -> None:
    env = parse_stack_config("prod", _with("prod", "mlstack:service.modelVersion", "1.10.0"))
    assert env.config.service.model_version == "1.10.0"


def test_a_duplicate_key_in_a_stack_file_is_refused_naming_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    text = (REPO_ROOT / "stacks" / "Pulumi.dev.yaml").read_text(encoding="utf-8")
    lines = text.count("\n")
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(text + "  mlstack:owner: someone-else\n", encoding="utf-8")
    with pytest.raises(StackConfigError) as caught:
        read_stack_file(tmp_path, "dev")
    assert str(caught.value).startswith(
        f"stacks/Pulumi.dev.yaml: line {lines + 1}: key 'mlstack:owner' appears twice in the same mapping"
    )


def test_a_nested_duplicate_key_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.x.yaml").write_text(
        "config:\n  mlstack:network:\n    azCount: 2\n    azCount: 3\n", encoding="utf-8"
    )
    with pytest.raises(StackConfigError, match="line 4: key 'azCount' appears twice"):
        read_stack_file(tmp_path, "x")


def test_load_balancer_subnets_smaller_than_a_27_are_refused() -> None:
    message = _error("prod", _with("prod", "mlstack:network.cidr", "10.0.0.0/24"))
    assert "mlstack:network.cidr: the load-balancer (public) subnets would be /28" in message
    assert "at least a /27" in message
    explicit = _error("prod", _with("prod", "mlstack:network.publicSubnetPrefix", 28))
    assert "mlstack:network.publicSubnetPrefix: the load-balancer (public) subnets would be /28" in explicit


def test_min_above_max_blames_max_size_not_an_unset_desired_size() -> None:
    config = stack_config("prod")
    config["mlstack:compute"]["eks"]["cpuPool"] = {"minSize": 5, "maxSize": 3}
    message = _error("prod", config)
    assert "mlstack:compute.eks.cpuPool.maxSize: 3 is below minSize 5" in message
    assert "desiredSize" not in message


def test_an_empty_allowed_cidrs_list_is_explained_in_our_words() -> None:
    message = _error("prod", _with("prod", "mlstack:network.allowedCidrs", []))
    assert "nobody could reach the load balancer" in message
    assert "List should have" not in message


def test_a_prod_nat_violation_names_the_key_to_change(run_stack: Any) -> None:
    from infra.preview.policy import check_policies  # noqa: PLC0415

    run = run_stack("prod", _with("prod", "mlstack:network.natStrategy", "single"))
    messages = [violation.message for violation in check_policies(run) if violation.policy == "nat-per-az"]
    assert messages
    assert all("mlstack:network.natStrategy: per-az" in message for message in messages)


def test_prod_without_any_api_client_is_refused_saying_how_to_add_one() -> None:
    config = stack_config("prod")
    del config["mlstack:service"]["generatedApiClients"]
    message = _error("prod", config)
    assert "stacks/Pulumi.prod.yaml" in message
    assert "authentication 'api-keys' needs at least one client" in message
    assert "generatedApiClients" in message


def test_a_client_listed_twice_is_refused() -> None:
    config = stack_config("prod")
    config["mlstack:service"]["apiClients"] = {"loan-approval-frontend": "0" * 64}
    assert "loan-approval-frontend: a client is listed once, in one list" in _error("prod", config)
