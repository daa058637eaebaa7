"""The VPC: subnets per AZ, internet and NAT gateways, routes, flow logs and the S3 gateway endpoint."""

import json

import pulumi
import pulumi_aws as aws

from infra.config import Environment
from infra.config.errors import StackConfigError
from infra.config.load import stack_file
from infra.network.cidr import plan_subnets

ANYWHERE_IPV4 = "0.0.0.0/0"
# Zone IDs where EKS cannot place cluster subnets: the EKS User Guide, "Subnet requirements for clusters"
# (awsdocs/amazon-eks-user-guide, latest/ug/networking/network-reqs.adoc at 4d52b4d05e3478582e7d10a73cbd9ba9194dd5f7).
EKS_UNSUPPORTED_ZONE_IDS = ("use1-az3", "usw1-az2", "cac1-az3")


def subnet_discovery_tags(env: Environment, public: bool) -> dict[str, str]:
    """Tags the AWS Load Balancer Controller and EKS use to find subnets for load balancers."""
    tags = {"kubernetes.io/role/elb" if public else "kubernetes.io/role/internal-elb": "1"}
    if env.config.compute.mode == "eks":
        tags[f"kubernetes.io/cluster/{env.cluster_name}"] = "shared"
    return tags


def choose_zone_ids(zone_ids: list[str], excluded: dict[str, str], wanted: int) -> list[str]:
    """Up to `wanted` zone IDs, in zone-ID order, leaving out the excluded ones."""
    return sorted(zone for zone in zone_ids if zone not in excluded)[:wanted]


def nat_gateway_count(strategy: str, az_count: int) -> int:
    return {"none": 0, "single": 1, "per-az": az_count}[strategy]


class Network(pulumi.ComponentResource):
    """VPC with one public and one private subnet per availability zone."""

    vpc_id: pulumi.Output[str]
    vpc_cidr: str
    availability_zones: list[str]
    public_subnet_cidrs: list[str]
    private_subnet_cidrs: list[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    nat_gateway_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, env: Environment, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlstack:network:Network", name, None, opts)
        self._name = name
        self._env = env
        self._network = env.config.network
        self._child = pulumi.ResourceOptions(parent=self)

        self.availability_zones = self._select_availability_zones()
        self._plan = plan_subnets(
            self._network.cidr,
            self._network.az_count,
            self._network.private_subnet_prefix,
            self._network.public_subnet_prefix,
        )
        self.vpc_cidr = str(self._network.cidr)
        self.public_subnet_cidrs = [str(cidr) for cidr in self._plan.public]
        self.private_subnet_cidrs = [str(cidr) for cidr in self._plan.private]
        self._vpc = self._create_vpc()
        self.vpc_id = self._vpc.id
        self._lock_down_default_security_group()
        self._internet_gateway = self._create_internet_gateway()
        self._public_subnets = self._create_subnets(public=True)
        self._private_subnets = self._create_subnets(public=False)
        self.public_subnet_ids = [subnet.id for subnet in self._public_subnets]
        self.private_subnet_ids = [subnet.id for subnet in self._private_subnets]
        self._nat_gateways = self._create_nat_gateways()
        self.nat_gateway_ids = [gateway.id for gateway in self._nat_gateways]
        self._route_tables = [self._create_public_routes(), *self._create_private_routes()]
        self._create_s3_gateway_endpoint()
        if self._network.flow_logs.enabled:
            self._create_flow_logs()

        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
                "natGatewayIds": self.nat_gateway_ids,
            }
        )

    def _tags(self, suffix: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Name": f"{self._env.prefix}-{suffix}", **(extra or {})}

    def _select_availability_zones(self) -> list[str]:
        """The first `azCount` usable zones by zone ID (names are shuffled per account, IDs are not)."""
        zones = aws.get_availability_zones(
            state="available",
            filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])],
            opts=pulumi.InvokeOptions(parent=self),
        )
        names_by_id = dict(zip(zones.zone_ids, zones.names, strict=True))
        excluded = self._excluded_zone_ids(list(names_by_id))
        wanted = self._network.az_count
        chosen = choose_zone_ids(list(names_by_id), excluded, wanted)
        if len(chosen) < wanted:
            reasons = "; ".join(f"{zone} ({names_by_id[zone]}): {why}" for zone, why in sorted(excluded.items()))
            raise StackConfigError(
                f"{stack_file(self._env.name)}: mlstack:network.azCount: {wanted} is not allowed: "
                f"region {self._env.region} has only {len(chosen)} usable availability zones "
                f"({', '.join(names_by_id[zone] for zone in chosen) or 'none'})"
                + (f"; left out {reasons}" if reasons else "")
            )
        return [names_by_id[zone] for zone in chosen]

    def _excluded_zone_ids(self, zone_ids: list[str]) -> dict[str, str]:
        """Zone IDs that cannot hold this stack's subnets, each with the reason."""
        excluded: dict[str, str] = {}
        if self._env.config.compute.mode == "eks":
            excluded |= dict.fromkeys(EKS_UNSUPPORTED_ZONE_IDS, "EKS cannot place cluster subnets there")
            eks = self._env.config.compute.eks
            if eks is not None and eks.gpu_pool.enabled and zone_ids:
                wanted_types = sorted(eks.gpu_pool.instance_types)
                offerings = aws.ec2.get_instance_type_offerings(
                    location_type="availability-zone-id",
                    filters=[aws.ec2.GetInstanceTypeOfferingsFilterArgs(name="instance-type", values=wanted_types)],
                    opts=pulumi.InvokeOptions(parent=self),
                )
                offered = set(zip(offerings.locations, offerings.instance_types, strict=True))
                for zone in zone_ids:
                    missing = [name for name in wanted_types if (zone, name) not in offered]
                    if missing and zone not in excluded:
                        excluded[zone] = f"does not offer the GPU pool's {', '.join(missing)}"
        return {zone: why for zone, why in excluded.items() if zone in zone_ids}

    def _create_vpc(self) -> aws.ec2.Vpc:
        """The VPC, with DNS on: EKS, VPC endpoints and SSM need it."""
        return aws.ec2.Vpc(
            f"{self._name}-vpc",
            cidr_block=self.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=self._tags("vpc"),
            opts=self._child,
        )

    def _lock_down_default_security_group(self) -> None:
        """Strip the default security group's allow-all rules so nothing can fall back on it."""
        aws.ec2.DefaultSecurityGroup(
            f"{self._name}-default-sg",
            vpc_id=self._vpc.id,
            ingress=[],
            egress=[],
            tags=self._tags("default-deny-all"),
            opts=self._child,
        )

    def _create_internet_gateway(self) -> aws.ec2.InternetGateway:
        """The internet gateway for the public subnets."""
        return aws.ec2.InternetGateway(
            f"{self._name}-igw", vpc_id=self._vpc.id, tags=self._tags("igw"), opts=self._child
        )

    def _create_subnets(self, public: bool) -> list[aws.ec2.Subnet]:
        """One subnet per AZ; public ones hold load balancers and NAT gateways, private ones the workloads."""
        role = "public" if public else "private"
        cidrs = self._plan.public if public else self._plan.private
        return [
            aws.ec2.Subnet(
                f"{self._name}-{role}-subnet-{index + 1}",
                vpc_id=self._vpc.id,
                cidr_block=str(cidr),
                availability_zone=zone,
                # Instances get public addresses only by explicit request, never by subnet default.
                map_public_ip_on_launch=False,
                tags=self._tags(f"{role}-{zone}", subnet_discovery_tags(self._env, public)),
                opts=self._child,
            )
            for index, (zone, cidr) in enumerate(zip(self.availability_zones, cidrs, strict=True))
        ]

    def _create_nat_gateways(self) -> list[aws.ec2.NatGateway]:
        """NAT gateways per strategy: none, one shared, or one per AZ so an AZ outage stays local."""
        count = nat_gateway_count(self._network.nat_strategy, self._network.az_count)
        gateways = []
        for index in range(count):
            zone = self.availability_zones[index]
            address = aws.ec2.Eip(
                f"{self._name}-nat-eip-{index + 1}",
                domain="vpc",
                tags=self._tags(f"nat-{zone}"),
                opts=self._child,
            )
            gateways.append(
                aws.ec2.NatGateway(
                    f"{self._name}-nat-{index + 1}",
                    allocation_id=address.allocation_id,
                    subnet_id=self._public_subnets[index].id,
                    connectivity_type="public",
                    tags=self._tags(f"nat-{zone}"),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[self._internet_gateway]),
                )
            )
        return gateways

    def _create_public_routes(self) -> aws.ec2.RouteTable:
        """One route table for the public subnets, default route to the internet gateway."""
        table = aws.ec2.RouteTable(
            f"{self._name}-public-rt", vpc_id=self._vpc.id, tags=self._tags("public"), opts=self._child
        )
        aws.ec2.Route(
            f"{self._name}-public-default-route",
            route_table_id=table.id,
            destination_cidr_block=ANYWHERE_IPV4,
            gateway_id=self._internet_gateway.id,
            opts=self._child,
        )
        for index, subnet in enumerate(self._public_subnets):
            aws.ec2.RouteTableAssociation(
                f"{self._name}-public-rta-{index + 1}",
                route_table_id=table.id,
                subnet_id=subnet.id,
                opts=self._child,
            )
        return table

    def _create_private_routes(self) -> list[aws.ec2.RouteTable]:
        """A route table per private subnet, so moving between NAT strategies never replaces them."""
        tables = []
        for index, (zone, subnet) in enumerate(zip(self.availability_zones, self._private_subnets, strict=True)):
            table = aws.ec2.RouteTable(
                f"{self._name}-private-rt-{index + 1}",
                vpc_id=self._vpc.id,
                tags=self._tags(f"private-{zone}"),
                opts=self._child,
            )
            if self._nat_gateways:
                gateway = self._nat_gateways[min(index, len(self._nat_gateways) - 1)]
                aws.ec2.Route(
                    f"{self._name}-private-default-route-{index + 1}",
                    route_table_id=table.id,
                    destination_cidr_block=ANYWHERE_IPV4,
                    nat_gateway_id=gateway.id,
                    opts=self._child,
                )
            aws.ec2.RouteTableAssociation(
                f"{self._name}-private-rta-{index + 1}",
                route_table_id=table.id,
                subnet_id=subnet.id,
                opts=self._child,
            )
            tables.append(table)
        return tables

    def _create_s3_gateway_endpoint(self) -> None:
        """S3 traffic (model artifacts, image layers) stays on the AWS network and off the NAT bill."""
        aws.ec2.VpcEndpoint(
            f"{self._name}-s3-endpoint",
            vpc_id=self._vpc.id,
            service_name=f"com.amazonaws.{self._env.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[table.id for table in self._route_tables],
            tags=self._tags("s3-endpoint"),
            opts=self._child,
        )

    def _create_flow_logs(self) -> None:
        """VPC flow logs into a CloudWatch log group, written by a role only the flow-logs service can assume."""
        settings = self._network.flow_logs
        log_group = aws.cloudwatch.LogGroup(
            f"{self._name}-flow-logs",
            name=f"/{self._env.prefix}/vpc-flow-logs",
            retention_in_days=settings.retention_days,
            tags=self._tags("vpc-flow-logs"),
            opts=self._child,
        )
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        role = aws.iam.Role(
            f"{self._name}-flow-logs-role",
            assume_role_policy=account.account_id.apply(
                lambda account_id: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                                "Action": "sts:AssumeRole",
                                # Guards against the confused-deputy problem.
                                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                            }
                        ],
                    }
                )
            ),
            tags=self._tags("vpc-flow-logs"),
            opts=self._child,
        )
        aws.iam.RolePolicy(
            f"{self._name}-flow-logs-policy",
            role=role.id,
            policy=log_group.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": [
                                    "logs:CreateLogStream",
                                    "logs:PutLogEvents",
                                    "logs:DescribeLogGroups",
                                    "logs:DescribeLogStreams",
                                ],
                                "Resource": [arn, f"{arn}:*"],
                            }
                        ],
                    }
                )
            ),
            opts=self._child,
        )
        aws.ec2.FlowLog(
            f"{self._name}-flow-log",
            vpc_id=self._vpc.id,
            traffic_type=settings.traffic_type,
            log_destination_type="cloud-watch-logs",
            log_destination=log_group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags=self._tags("vpc-flow-log"),
            opts=self._child,
        )
