"""Stack config: defaults per tier, unknown keys refused, cross-field rules, one-line errors."""

import copy
from typing import Any

import pytest

from infra.config import StackConfigError, parse_stack_config
from infra.config.defaults import TIER_DEFAULTS
from tests.conftest import COMMITTED_STACKS, stack_config


def _with(stack: str, path: str, value: Any) -> dict[str, Any]:
    """The committed stack's config with the dotted `path` (first part the full config key) set to value."""
    config = stack_config(stack)
    key, *rest = path.split(".")
    if not rest:
        config[key] = value
        return config
    node = config.setdefault(key, {})
    for part in rest[:-1]:
        node = node.setdefault(part, {})
    node[rest[-1]] = value
    return config


def _without(stack: str, path: str) -> dict[str, Any]:
    config = stack_config(stack)
    key, *rest = path.split(".")
    if not rest:
        del config[key]
        return config
    node = config[key]
    for part in rest[:-1]:
        node = node[part]
    del node[rest[-1]]
    return config


@pytest.mark.parametrize("stack", COMMITTED_STACKS)
def test_committed_stack_files_are_valid(stack: str) -> None:
    env = parse_stack_config(stack, stack_config(stack))
    assert env.name == stack
    assert env.config.tier == stack


def test_omitted_keys_take_the_tier_defaults() -> None:
    config = _without("prod", "mlstack:network.natStrategy")
    del config["mlstack:compute"]
    env = parse_stack_config("prod", config)
    assert env.config.network.nat_strategy == TIER_DEFAULTS["prod"]["network"]["natStrategy"] == "per-az"
    assert env.config.compute.mode == "eks"
    assert env.config.service.port == 8080


def test_a_nested_default_is_merged_key_by_key() -> None:
    config = _with("dev", "mlstack:network.flowLogs", {"enabled": True})
    env = parse_stack_config("dev", config)
    assert env.config.network.flow_logs.enabled is True
    assert env.config.network.flow_logs.retention_days == TIER_DEFAULTS["dev"]["network"]["flowLogs"]["retentionDays"]


def test_structured_values_arrive_as_json_text_like_from_the_cli() -> None:
    config = stack_config("staging")
    config["mlstack:network"] = '{"cidr": "10.99.0.0/16", "allowedCidrs": ["0.0.0.0/0"]}'
    env = parse_stack_config("staging", config)
    assert str(env.config.network.cidr) == "10.99.0.0/16"


@pytest.mark.parametrize(
    ("stack", "path", "value", "expected"),
    [
        (
            "prod",
            "mlstack:network.cidr",
            "10.0.0.0/33",
            "stacks/Pulumi.prod.yaml: mlstack:network.cidr: '10.0.0.0/33' is not allowed: not a valid IPv4 CIDR",
        ),
        ("prod", "mlstack:network.azCount", 0, "mlstack:network.azCount: 0 is not allowed: must be from 1 to 6"),
        ("dev", "mlstack:network.azCount", 7, "mlstack:network.azCount: 7 is not allowed: must be from 1 to 6"),
        (
            "staging",
            "mlstack:network.natStrategy",
            "nat-per-az",
            "mlstack:network.natStrategy: 'nat-per-az' is not allowed: input should be 'none', 'single' or 'per-az'",
        ),
        (
            "prod",
            "mlstack:network.natStrategie",
            "single",
            "mlstack:network.natStrategie: unknown key; did you mean 'natStrategy'? allowed keys: allowedCidrs,",
        ),
        ("prod", "mlstack:netwrk", {}, "mlstack:netwrk: unknown key; did you mean 'network'?"),
        ("prod", "mlstack:network.flowLogs.retention", 30, "mlstack:network.flowLogs.retention: unknown key"),
        ("prod", "mlstack:tier", "production", "mlstack:tier: 'production' is not allowed; choose one of dev, staging"),
        ("prod", "aws:region", "mars-1", "aws:region: 'mars-1' is not an AWS region"),
        (
            "prod",
            "mlstack:network.cidr",
            "8.8.0.0/16",
            "mlstack:network.cidr: '8.8.0.0/16' is not allowed: a VPC should",
        ),
        ("prod", "mlstack:network.cidr", "10.0.0.0/8", "AWS VPCs must be between /16 and /28"),
        ("prod", "mlstack:network.cidr", "10.0.0.1/16", "has host bits set"),
        ("prod", "mlstack:network.cidr", "10.0.0.0/26", "mlstack:network.cidr: 10.0.0.0/26 holds 64 addresses but"),
        ("prod", "mlstack:network.allowedCidrs", ["0.0.0.0/0", "::/129"], "mlstack:network.allowedCidrs:"),
        ("prod", "mlstack:network.allowedCidrs", [], "mlstack:network.allowedCidrs: [] is not allowed"),
        ("prod", "mlstack:network.flowLogs.retentionDays", 42, "retention must be one of 1, 3, 5"),
        ("prod", "mlstack:service.port", 80, "mlstack:service.port: 80 is not allowed: must be from 1024 to 65535"),
        ("prod", "mlstack:owner", "", "mlstack:owner: '' is not allowed"),
        ("prod", "mlstack:extraTags", {"owner": "someone"}, "mlstack:extraTags: ['owner'] are set by mlstack itself"),
        (
            "staging",
            "mlstack:compute.eks.gpuPool.instanceTypes",
            ["m6i.large"],
            "['m6i.large'] are not GPU instance types",
        ),
        ("staging", "mlstack:compute.eks.version", "1.29", "add-on versions are pinned only for Kubernetes 1.36"),
        ("staging", "mlstack:compute.eks.cpuPool.capacityType", "spot", "input should be 'ON_DEMAND' or 'SPOT'"),
        (
            "staging",
            "mlstack:compute.eks.cpuPool.desiredSize",
            9,
            "mlstack:compute.eks.cpuPool.desiredSize: 9 must lie between minSize 2 and maxSize 4",
        ),
        ("dev", "mlstack:compute.eks", {"version": "1.36"}, "mlstack:compute.eks: set, but compute.mode is 'ec2'"),
        ("dev", "mlstack:network.azCount", 1, "Application Load Balancer, which needs 2 AZs"),
        (
            "prod",
            "mlstack:compute.eks.adminPrincipalArns",
            ["alice"],
            "mlstack:compute.eks.adminPrincipalArns[0]: 'alice'",
        ),
        # Cross-field rules name the key to change.
        ("prod", "mlstack:network.azCount", 1, "mlstack:network.azCount: tier 'prod' needs at least 2 availability"),
        ("staging", "mlstack:network.natStrategy", "none", "mlstack:network.natStrategy: 'none' leaves the private"),
    ],
)
def test_bad_values_name_the_file_key_value_and_what_is_allowed(
    stack: str, path: str, value: Any, expected: str
) -> None:
    with pytest.raises(StackConfigError) as raised:
        parse_stack_config(stack, _with(stack, path, value))
    message = str(raised.value)
    assert message.startswith(f"stacks/Pulumi.{stack}.yaml: ")
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("mlstack:network.cidr", "mlstack:network.cidr: required key is missing"),
        ("mlstack:owner", "mlstack:owner: required key is missing"),
        ("mlstack:tier", "mlstack:tier: missing; choose one of dev, staging, prod"),
        ("aws:region", "aws:region: missing; set it to a region"),
    ],
)
def test_required_keys_are_named_when_missing(path: str, expected: str) -> None:
    with pytest.raises(StackConfigError, match="^stacks/Pulumi.prod.yaml: .*" + expected.replace("[", r"\[")):
        parse_stack_config("prod", _without("prod", path))


def test_every_problem_is_reported_at_once() -> None:
    config = _with("prod", "mlstack:network.azCount", 0)
    config["mlstack:network"]["natStrategy"] = "sometimes"
    with pytest.raises(StackConfigError) as raised:
        parse_stack_config("prod", config)
    assert "mlstack:network.azCount" in str(raised.value)
    assert "mlstack:network.natStrategy" in str(raised.value)


def test_the_stack_name_not_the_tier_names_the_environment() -> None:
    config = copy.deepcopy(stack_config("staging"))
    env = parse_stack_config("qa", config)
    assert (env.name, env.config.tier, env.prefix) == ("qa", "staging", "mlstack-qa")
