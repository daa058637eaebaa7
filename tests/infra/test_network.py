"""The network of each stack file: subnets per AZ, NAT per strategy, routes, flow logs, endpoints, tags."""

import ipaddress

import pytest

from infra.config import StackConfigError
from infra.preview.engine import StackRun
from tests.conftest import RunStack, stack_config
from tests.graph import (
    FLOW_LOG,
    INTERNET_GATEWAY,
    LOG_GROUP,
    NAT_GATEWAY,
    ROUTE_TABLE,
    SUBNET,
    VPC,
    VPC_ENDPOINT,
    default_route_target,
    environment_of,
    private_subnets,
    public_subnets,
    route_table_of,
)


def test_one_public_and_one_private_subnet_per_configured_az(stack_run: StackRun) -> None:
    env = environment_of(stack_run, stack_config(stack_run.stack))
    az_count = env.config.network.az_count
    public, private = public_subnets(stack_run), private_subnets(stack_run)
    assert len(public) == len(private) == az_count
    public_zones = sorted(subnet.inputs["availabilityZone"] for subnet in public)
    private_zones = sorted(subnet.inputs["availabilityZone"] for subnet in private)
    assert public_zones == private_zones == stack_run.outputs["availabilityZones"]
    assert len(set(public_zones)) == az_count, "two subnets of one role share an AZ"
    assert all(zone.startswith(env.region) for zone in public_zones)


def test_subnets_lie_inside_the_vpc_and_never_overlap(stack_run: StackRun) -> None:
    (vpc,) = stack_run.of_type(VPC)
    vpc_cidr = ipaddress.IPv4Network(vpc.inputs["cidrBlock"])
    cidrs = [ipaddress.IPv4Network(subnet.inputs["cidrBlock"]) for subnet in stack_run.of_type(SUBNET)]
    assert all(cidr.subnet_of(vpc_cidr) for cidr in cidrs)
    assert len({cidr.network_address for cidr in cidrs}) == len(cidrs)
    for index, cidr in enumerate(cidrs):
        assert not any(cidr.overlaps(other) for other in cidrs[index + 1 :])
    assert all(subnet.inputs["vpcId"] == vpc.id for subnet in stack_run.of_type(SUBNET))


def test_no_subnet_hands_out_public_addresses_by_default(stack_run: StackRun) -> None:
    assert all(subnet.inputs["mapPublicIpOnLaunch"] is False for subnet in stack_run.of_type(SUBNET))


@pytest.mark.parametrize(("stack", "nat_count"), [("dev", 0), ("staging", 1), ("prod", 3)])
def test_committed_stacks_get_the_nat_gateways_their_file_asks_for(
    committed_runs: dict[str, StackRun], stack: str, nat_count: int
) -> None:
    assert len(committed_runs[stack].of_type(NAT_GATEWAY)) == nat_count


@pytest.mark.parametrize(("strategy", "az_count", "expected"), [("none", 2, 0), ("single", 3, 1), ("per-az", 3, 3)])
def test_nat_strategy_decides_gateways_and_private_routes(
    run_stack: RunStack, strategy: str, az_count: int, expected: int
) -> None:
    config = stack_config("staging")
    config["mlstack:network"].update(natStrategy=strategy, azCount=az_count)
    config["mlstack:compute"] = {"mode": "ec2"}
    run = run_stack("variant", config)

    gateways = run.of_type(NAT_GATEWAY)
    assert len(gateways) == expected
    public_ids = {subnet.id for subnet in public_subnets(run)}
    assert all(gateway.inputs["subnetId"] in public_ids for gateway in gateways), (
        "a NAT gateway must sit in a public subnet"
    )
    for subnet in private_subnets(run):
        target = default_route_target(run, route_table_of(run, subnet))
        if strategy == "none":
            assert target is None, f"{subnet.name} must have no route to the internet"
            continue
        assert target is not None
        assert target.type == NAT_GATEWAY
        if strategy == "per-az":
            nat_zone = run.by_id(target.inputs["subnetId"]).inputs["availabilityZone"]
            assert nat_zone == subnet.inputs["availabilityZone"], f"{subnet.name} must leave through its own AZ's NAT"


def test_public_subnets_route_to_the_internet_gateway(stack_run: StackRun) -> None:
    (gateway,) = stack_run.of_type(INTERNET_GATEWAY)
    for subnet in public_subnets(stack_run):
        assert default_route_target(stack_run, route_table_of(stack_run, subnet)) == gateway


@pytest.mark.parametrize(("stack", "retention"), [("staging", 30), ("prod", 365)])
def test_flow_logs_capture_the_vpc_where_configured(
    committed_runs: dict[str, StackRun], stack: str, retention: int
) -> None:
    run = committed_runs[stack]
    (vpc,) = run.of_type(VPC)
    (flow_log,) = run.of_type(FLOW_LOG)
    assert flow_log.inputs["vpcId"] == vpc.id
    assert flow_log.inputs["trafficType"] == "ALL"
    assert flow_log.inputs["logDestination"].startswith("arn:aws:logs:")
    (log_group,) = [
        group for group in run.of_type(LOG_GROUP) if flow_log.inputs["logDestination"].endswith(group.inputs["name"])
    ]
    assert log_group.inputs["retentionInDays"] == retention


def test_dev_has_no_flow_logs(committed_runs: dict[str, StackRun]) -> None:
    assert committed_runs["dev"].of_type(FLOW_LOG) == []
    assert not [group for group in committed_runs["dev"].of_type(LOG_GROUP) if "flow-logs" in group.inputs["name"]]


def test_s3_gateway_endpoint_serves_every_route_table(stack_run: StackRun) -> None:
    (endpoint,) = stack_run.of_type(VPC_ENDPOINT)
    env_region = stack_run.outputs["region"]
    assert endpoint.inputs["serviceName"] == f"com.amazonaws.{env_region}.s3"
    assert endpoint.inputs["vpcEndpointType"] == "Gateway"
    assert sorted(endpoint.inputs["routeTableIds"]) == sorted(str(table.id) for table in stack_run.of_type(ROUTE_TABLE))


def test_subnets_carry_load_balancer_discovery_tags(stack_run: StackRun) -> None:
    for subnet in public_subnets(stack_run):
        assert subnet.inputs["tags"]["kubernetes.io/role/elb"] == "1"
    for subnet in private_subnets(stack_run):
        assert subnet.inputs["tags"]["kubernetes.io/role/internal-elb"] == "1"


def test_eks_stacks_tag_subnets_for_their_cluster(committed_runs: dict[str, StackRun]) -> None:
    for stack in ("staging", "prod"):
        for subnet in committed_runs[stack].of_type(SUBNET):
            assert subnet.inputs["tags"][f"kubernetes.io/cluster/mlstack-{stack}"] == "shared"
    for subnet in committed_runs["dev"].of_type(SUBNET):
        assert not any(key.startswith("kubernetes.io/cluster/") for key in subnet.inputs["tags"])


def test_the_default_security_group_admits_nothing(stack_run: StackRun) -> None:
    (default_group,) = stack_run.of_type("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default_group.inputs["ingress"] == []
    assert default_group.inputs["egress"] == []


def test_a_region_without_enough_zones_is_a_config_error(run_stack: RunStack) -> None:
    config = stack_config("staging")
    config["aws:region"] = "us-west-1"
    config["mlstack:network"]["azCount"] = 3
    with pytest.raises(
        StackConfigError, match=r"mlstack:network.azCount: 3 is not allowed: region us-west-1 has only 2"
    ):
        run_stack("staging", config)
