"""Questions tests ask of a recorded stack graph."""

from typing import Any

from infra.config import Environment, parse_stack_config
from infra.preview.engine import RecordedResource, StackRun

VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
INTERNET_GATEWAY = "aws:ec2/internetGateway:InternetGateway"
ROUTE = "aws:ec2/route:Route"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
ROUTE_TABLE_ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
AWS_PROVIDER = "pulumi:providers:aws"
ANYWHERE = ("0.0.0.0/0", "::/0")


def environment_of(run: StackRun, config: dict[str, Any]) -> Environment:
    return parse_stack_config(run.stack, config)


def route_table_of(run: StackRun, subnet: RecordedResource) -> RecordedResource:
    (association,) = [a for a in run.of_type(ROUTE_TABLE_ASSOCIATION) if a.inputs["subnetId"] == subnet.id]
    return run.by_id(association.inputs["routeTableId"])


def default_route_target(run: StackRun, route_table: RecordedResource) -> RecordedResource | None:
    """What 0.0.0.0/0 leaves the route table through, if anything."""
    for route in run.of_type(ROUTE):
        if route.inputs["routeTableId"] == route_table.id and route.inputs.get("destinationCidrBlock") == "0.0.0.0/0":
            target: str = route.inputs.get("gatewayId") or route.inputs["natGatewayId"]
            return run.by_id(target)
    return None


def public_subnets(run: StackRun) -> list[RecordedResource]:
    """Subnets whose default route goes to an internet gateway: public by behaviour, not by name."""
    return [subnet for subnet in run.of_type(SUBNET) if _default_route_type(run, subnet) == INTERNET_GATEWAY]


def private_subnets(run: StackRun) -> list[RecordedResource]:
    return [subnet for subnet in run.of_type(SUBNET) if _default_route_type(run, subnet) != INTERNET_GATEWAY]


def _default_route_type(run: StackRun, subnet: RecordedResource) -> str | None:
    target = default_route_target(run, route_table_of(run, subnet))
    return target.type if target else None


def port_range(rule: RecordedResource) -> range:
    """The ports a rule opens; protocol -1 opens them all."""
    if rule.inputs.get("ipProtocol") in ("-1", "all"):
        return range(0, 65536)
    return range(int(rule.inputs["fromPort"]), int(rule.inputs["toPort"]) + 1)


def group_name(run: StackRun, group_id: str) -> str:
    return run.by_id(group_id).name
