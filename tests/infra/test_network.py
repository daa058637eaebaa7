"""The network of each stack file: subnets per AZ, NAT per strategy, routes, flow logs, endpoints, tags."""

import ipaddress

import pytest

from infra.config import StackConfigError
from infra.network.vpc import EKS_UNSUPPORTED_ZONE_IDS, choose_zone_ids
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
    assert private_subnets(run)
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
    assert public_subnets(stack_run)
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
    assert public_subnets(stack_run)
    assert private_subnets(stack_run)
    for subnet in public_subnets(stack_run):
        assert subnet.inputs["tags"]["kubernetes.io/role/elb"] == "1"
    for subnet in private_subnets(stack_run):
        assert subnet.inputs["tags"]["kubernetes.io/role/internal-elb"] == "1"


def test_eks_stacks_tag_subnets_for_their_cluster(committed_runs: dict[str, StackRun]) -> None:
    for stack in ("staging", "prod", "dev"):
        assert committed_runs[stack].of_type(SUBNET), stack
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
    config = stack_config("dev")
    config["aws:region"] = "us-west-1"
    config["mlstack:network"]["azCount"] = 3
    with pytest.raises(
        StackConfigError, match=r"mlstack:network.azCount: 3 is not allowed: region us-west-1 has only 2 usable"
    ):
        run_stack("dev", config)


def test_zones_are_chosen_by_zone_id_leaving_out_excluded_ones() -> None:
    # Names are shuffled per account: here the zone that sorts first is the one EKS cannot use.
    zone_ids = ["use1-az3", "use1-az1", "use1-az2", "use1-az4"]
    excluded = {"use1-az3": "EKS cannot place cluster subnets there"}
    assert choose_zone_ids(zone_ids, excluded, 3) == ["use1-az1", "use1-az2", "use1-az4"]
    assert choose_zone_ids(zone_ids, {**excluded, "use1-az2": "no GPUs"}, 3) == ["use1-az1", "use1-az4"]


def test_prod_leaves_out_the_zone_eks_cannot_use_though_its_name_sorts_first(
    committed_runs: dict[str, StackRun],
) -> None:
    run = committed_runs["prod"]
    # The offline account's us-east-1a is use1-az3, which EKS rejects for cluster subnets.
    zones = sorted({subnet.inputs["availabilityZone"] for subnet in run.of_type(SUBNET)})
    assert zones == ["us-east-1b", "us-east-1c", "us-east-1d"]
    assert run.outputs["availabilityZones"] == zones
    assert set(EKS_UNSUPPORTED_ZONE_IDS) == {"use1-az3", "usw1-az2", "cac1-az3"}


def test_a_dev_host_stack_may_use_the_zone_eks_cannot(run_stack: RunStack) -> None:
    config = stack_config("dev")
    config["aws:region"] = "us-east-1"
    config["mlstack:network"]["azCount"] = 3
    run = run_stack("dev", config)
    # In zone-ID order: use1-az1, use1-az2, then use1-az3 (us-east-1a), which only EKS has to avoid.
    assert run.outputs["availabilityZones"] == ["us-east-1b", "us-east-1c", "us-east-1a"]


def test_an_eks_stack_in_a_region_with_one_usable_zone_names_the_zone_it_left_out(run_stack: RunStack) -> None:
    config = stack_config("staging")
    config["aws:region"] = "us-west-1"
    with pytest.raises(
        StackConfigError,
        match=r"mlstack:network.azCount: 2 is not allowed: .* only 1 usable .* usw1-az2 \(us-west-1b\): EKS cannot",
    ):
        run_stack("staging", config)


def _with_gpu_types(stack: str, instance_types: list[str], az_count: int) -> dict[str, object]:
    config = stack_config(stack)
    config["mlstack:network"]["azCount"] = az_count
    config.setdefault("mlstack:compute", {}).setdefault("eks", {})["gpuPool"] = {
        "instanceTypes": instance_types,
        "minSize": 0,
        "maxSize": 1,
        "desiredSize": 0,
    }
    return config


def test_a_gpu_pool_gets_only_zones_that_offer_its_instance_types(run_stack: RunStack) -> None:
    # Offline, p4d is offered in zones az2 and az4 only; az1 sorts first but lacks it.
    run = run_stack("staging", _with_gpu_types("staging", ["p4d.24xlarge"], 2))
    assert run.outputs["availabilityZones"] == ["us-west-2b", "us-west-2d"]
    offerings = [args for token, args in run.invokes if token.endswith("getInstanceTypeOfferings")]
    assert [args["locationType"] for args in offerings] == ["availability-zone-id"]


def test_too_few_zones_offering_the_gpu_types_is_a_config_error_naming_az_count(run_stack: RunStack) -> None:
    with pytest.raises(
        StackConfigError,
        match=r"mlstack:network.azCount: 3 is not allowed: .* usw2-az1 \(us-west-2a\): does not offer the GPU "
        r"pool's p4d.24xlarge",
    ):
        run_stack("staging", _with_gpu_types("staging", ["p4d.24xlarge", "g5.xlarge"], 3))


def test_a_stack_without_a_gpu_pool_asks_for_no_instance_offerings(committed_runs: dict[str, StackRun]) -> None:
    assert not [token for token, _ in committed_runs["dev"].invokes if token.endswith("getInstanceTypeOfferings")]
