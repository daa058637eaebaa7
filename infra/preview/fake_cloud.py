"""Plays the AWS provider offline: invents the ids and ARNs a real create would return, answers invokes.

Every value it invents is remembered, so a plan can show it as "[unknown]" rather than pass it off as real.
"""

import hashlib
from collections.abc import Callable
from typing import Any

import pulumi

FAKE_ACCOUNT_ID = "123456789012"
# Availability zones that need no opt-in, per region; other regions are assumed to have three.
ZONE_COUNTS = {
    "us-east-1": 6,
    "us-east-2": 3,
    "us-west-1": 2,
    "us-west-2": 4,
    "eu-west-1": 3,
    "eu-central-1": 3,
    "ap-southeast-1": 3,
}
DEFAULT_ZONE_COUNT = 3
# Zone names map to zone IDs differently in each account. The fake account's us-east-1a is use1-az3, a zone
# EKS cannot use, as it is in real accounts; elsewhere the n-th name is the n-th ID.
ZONE_ID_NUMBERS = {"us-east-1": (3, 1, 2, 4, 5, 6)}
# Large GPU families are offered in only some zones (by zone-ID number); every other type in every zone.
SCARCE_FAMILY_ZONES = {"p4d": (2, 4), "p5": (2, 4)}
# Types whose physical name Pulumi derives from the logical one when the program sets none.
AUTONAMED = ("aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile")
# Prefixes AWS uses for resource ids, so invented ids read like real ones in the plan.
ID_PREFIXES = {
    "aws:ec2/vpc:Vpc": "vpc",
    "aws:ec2/subnet:Subnet": "subnet",
    "aws:ec2/internetGateway:InternetGateway": "igw",
    "aws:ec2/natGateway:NatGateway": "nat",
    "aws:ec2/eip:Eip": "eipalloc",
    "aws:ec2/routeTable:RouteTable": "rtb",
    "aws:ec2/securityGroup:SecurityGroup": "sg",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce",
    "aws:ec2/flowLog:FlowLog": "fl",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "sgr",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "sgr",
}


def zone_id_prefix(region: str) -> str:
    """AWS's zone-ID prefix of a region: us-east-1 -> use1, ap-southeast-2 -> apse2, eu-central-1 -> euc1."""
    parts = region.split("-")
    area, direction, number = parts[0], parts[-2], parts[-1]
    abbreviation = "".join(part[0] for part in _direction_parts(direction))
    return f"{area}{abbreviation}{number}"


def _direction_parts(direction: str) -> list[str]:
    for first in ("north", "south"):
        if direction.startswith(first) and direction != first:
            return [first, direction.removeprefix(first)]
    return [direction]


class UnansweredInvokeError(LookupError):
    """The program asked a data source the fake cloud has no answer for; guessing one would mislead the plan."""


class FakeCloud(pulumi.runtime.Mocks):
    """Answers the program's resource registrations and invokes the way AWS would, deterministically."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.invented: set[str] = set()
        self.invokes: list[tuple[str, dict[str, Any]]] = []
        self._invokes: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "aws:index/getAvailabilityZones:getAvailabilityZones": self._availability_zones,
            "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings": self._instance_type_offerings,
            "aws:index/getCallerIdentity:getCallerIdentity": self._caller_identity,
            "aws:index/getRegion:getRegion": lambda _: {"name": self.region, "region": self.region},
            "aws:index/getPartition:getPartition": lambda _: {"partition": "aws", "dnsSuffix": "amazonaws.com"},
            "aws:ssm/getParameter:getParameter": self._ssm_parameter,
            "aws:eks/getAddonVersion:getAddonVersion": self._addon_version,
            # A public hosted zone of the account, found by name; its id invented, as the plan shows.
            "aws:route53/getZone:getZone": self._hosted_zone,
            # The provider's table of Elastic Load Balancing hosted zones per region (for alias records).
            "aws:lb/getHostedZoneId:getHostedZoneId": lambda args: {
                "id": self._remember(self._invent("aws:lb/getHostedZoneId", str(args.get("loadBalancerType")), "Z")),
                "loadBalancerType": args.get("loadBalancerType"),
                "region": self.region,
            },
            # The Region's Elastic Load Balancing account (ALB access log delivery); invented, as the plan shows.
            "aws:elb/getServiceAccount:getServiceAccount": lambda _: {
                "id": "elb-account",
                "arn": self._remember(f"arn:aws:iam::{self._invent('elb', 'service-account', 'elb')}:root"),
            },
        }

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if not args.custom:
            # Components are Pulumi's own grouping; no cloud object stands behind them.
            return None, {}
        if args.typ.startswith("pulumi:providers:"):
            return self._invent(args.typ, args.name, "provider"), dict(args.inputs)
        resource_id = args.resource_id or self._invent(args.typ, args.name, self._id_prefix(args.typ))
        outputs = {**args.inputs, **self._computed(args)}
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        self.invokes.append((args.token, dict(args.args)))
        answer = self._invokes.get(args.token)
        if answer is None:
            raise UnansweredInvokeError(
                f"the offline preview cannot answer the invoke {args.token}; teach FakeCloud how"
            )
        return answer(args.args)

    def _computed(self, args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
        """Attributes AWS (or a controller in the cluster) computes on create that the program reads back."""
        if args.typ == "kubernetes:networking.k8s.io/v1:Ingress":
            # The AWS Load Balancer Controller publishes the ALB's name in the Ingress status.
            hostname = f"k8s-{self._invent(args.typ, args.name, 'alb')}.{self.region}.elb.amazonaws.com"
            return {"status": {"loadBalancer": {"ingress": [{"hostname": self._remember(hostname)}]}}}
        if args.typ == "random:index/randomPassword:RandomPassword":
            return {"result": self._remember(self._invent(args.typ, args.name, "password")), "bcryptHash": "[unknown]"}
        if not args.typ.startswith("aws:"):
            return {}
        service = args.typ.split(":")[1].split("/")[0]
        computed = {"arn": self._arn(args, service)}
        computed |= self._type_specific(args)
        return computed

    def _type_specific(self, args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
        """The outputs of each type that the program reads back, in the shape the provider returns them."""
        typ, name = args.typ, args.name
        if typ in AUTONAMED and "name" not in args.inputs:
            # The engine autonames these (logical name plus a random suffix) before anything is created.
            return {"name": f"{name}-{hashlib.sha256(name.encode()).hexdigest()[:7]}"}
        if typ == "aws:ec2/eip:Eip":
            return {"allocationId": self._invent(typ, name, "eipalloc"), "publicIp": "203.0.113.10"}
        if typ == "aws:ecr/repository:Repository":
            registry = f"{FAKE_ACCOUNT_ID}.dkr.ecr.{self.region}.amazonaws.com"
            return {"repositoryUrl": self._remember(f"{registry}/{args.inputs['name']}")}
        if typ == "aws:s3/bucket:Bucket":
            bucket = args.inputs.get("bucket") or self._invent(
                typ, name, args.inputs.get("bucketPrefix", "bucket").rstrip("-")
            )
            return {"bucket": bucket, "id": bucket, "arn": self._remember(f"arn:aws:s3:::{bucket}")}
        if typ == "aws:kms/key:Key":
            return {"keyId": self._invent(typ, name, "key")}
        if typ == "aws:ec2/launchTemplate:LaunchTemplate":
            return {"latestVersion": 1}
        if typ == "aws:lb/loadBalancer:LoadBalancer":
            return {"dnsName": self._remember(f"{self._invent(typ, name, 'alb')}.{self.region}.elb.amazonaws.com")}
        if typ == "aws:acm/certificate:Certificate":
            # ACM asks for one CNAME per name on the certificate, under a token only it knows.
            domain = str(args.inputs.get("domainName") or "")
            token = self._invent(typ, name, "_acm")
            return {
                "status": "PENDING_VALIDATION",
                "domainValidationOptions": [
                    {
                        "domainName": domain,
                        "resourceRecordName": self._remember(f"{token}.{domain}."),
                        "resourceRecordType": "CNAME",
                        "resourceRecordValue": self._remember(f"{token}.acm-validations.aws."),
                    }
                ],
            }
        if typ == "aws:route53/record:Record":
            return {"fqdn": str(args.inputs.get("name") or "").rstrip(".")}
        if typ == "aws:autoscaling/group:Group":
            return {"name": self._invent(typ, name, "asg")}
        if typ == "aws:eks/cluster:Cluster":
            return {
                "endpoint": self._remember(
                    f"https://{self._invent(typ, name, 'eks')}.gr7.{self.region}.eks.amazonaws.com"
                ),
                "certificateAuthority": {"data": self._remember("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==")},
                "vpcConfig": {
                    **args.inputs.get("vpcConfig", {}),
                    "clusterSecurityGroupId": self._invent(typ, name, "sg"),
                },
            }
        if typ == "aws:eks/nodeGroup:NodeGroup":
            return {
                "nodeGroupName": self._invent(typ, name, "nodegroup"),
                "resources": [{"autoscalingGroups": [{"name": self._invent(typ, name, "eks-asg")}]}],
            }
        return {}

    def _arn(self, args: pulumi.runtime.MockResourceArgs, service: str) -> str:
        kind = args.typ.split(":")[-1].lower()
        if service == "iam":
            return self._remember(f"arn:aws:iam::{FAKE_ACCOUNT_ID}:{kind}/{args.name}")
        if args.typ == "aws:cloudwatch/logGroup:LogGroup":
            return self._remember(
                f"arn:aws:logs:{self.region}:{FAKE_ACCOUNT_ID}:log-group:{args.inputs.get('name', args.name)}"
            )
        if service == "s3":
            return self._remember(f"arn:aws:s3:::{args.inputs.get('bucket', args.name)}")
        suffix = self._invent(args.typ, args.name, kind)
        return self._remember(f"arn:aws:{service}:{self.region}:{FAKE_ACCOUNT_ID}:{kind}/{suffix}")

    def _zones(self) -> list[tuple[str, str, int]]:
        """(name, zone ID, zone-ID number) of each zone of the region, in name order."""
        count = ZONE_COUNTS.get(self.region, DEFAULT_ZONE_COUNT)
        numbers = ZONE_ID_NUMBERS.get(self.region, tuple(range(1, count + 1)))
        return [
            (f"{self.region}{letter}", f"{zone_id_prefix(self.region)}-az{n}", n)
            for letter, n in zip("abcdef"[: len(numbers)], numbers, strict=True)
        ]

    def _availability_zones(self, _: dict[str, Any]) -> dict[str, Any]:
        zones = self._zones()
        return {"names": [name for name, _, _ in zones], "zoneIds": [zone for _, zone, _ in zones], "id": self.region}

    def _instance_type_offerings(self, args: dict[str, Any]) -> dict[str, Any]:
        """Each asked-for type in each zone that offers it, located by zone ID or name as asked."""
        by_id = args.get("locationType") == "availability-zone-id"
        wanted = [
            value for entry in args.get("filters", []) if entry["name"] == "instance-type" for value in entry["values"]
        ]
        pairs = [
            (zone_id if by_id else name, instance_type)
            for name, zone_id, number in self._zones()
            for instance_type in wanted
            if number in SCARCE_FAMILY_ZONES.get(instance_type.split(".")[0], (number,))
        ]
        return {
            "instanceTypes": [instance_type for _, instance_type in pairs],
            "locations": [location for location, _ in pairs],
            "locationTypes": [args.get("locationType", "region")] * len(pairs),
            "id": self.region,
        }

    def _ssm_parameter(self, args: dict[str, Any]) -> dict[str, Any]:
        """Public SSM parameters (AMI aliases) resolve to an id only AWS knows."""
        name = args["name"]
        return {"name": name, "value": self._invent("aws:ssm/getParameter", name, "ami"), "type": "String", "id": name}

    def _addon_version(self, args: dict[str, Any]) -> dict[str, Any]:
        """The add-on build EKS installs by default on a Kubernetes minor: only AWS knows which, so it is invented."""
        addon, kubernetes = args["addonName"], args["kubernetesVersion"]
        return {
            "addonName": addon,
            "kubernetesVersion": kubernetes,
            "version": self._invent("aws:eks/getAddonVersion", f"{addon}@{kubernetes}", "eks-default-build"),
            "mostRecent": bool(args.get("mostRecent")),
            "id": addon,
        }

    def _hosted_zone(self, args: dict[str, Any]) -> dict[str, Any]:
        name = str(args.get("name") or "")
        zone_id = self._remember(self._invent("aws:route53/getZone", name, "Z"))
        return {"id": zone_id, "zoneId": zone_id, "name": name, "privateZone": False}

    def _caller_identity(self, _: dict[str, Any]) -> dict[str, Any]:
        return {
            "accountId": self._remember(FAKE_ACCOUNT_ID),
            "arn": self._remember(f"arn:aws:iam::{FAKE_ACCOUNT_ID}:user/preview"),
            "userId": self._remember("AIDAPREVIEWUSER0000000"),
            "id": FAKE_ACCOUNT_ID,
        }

    @staticmethod
    def _id_prefix(type_token: str) -> str:
        return ID_PREFIXES.get(type_token, type_token.rsplit(":", maxsplit=1)[-1].lower())

    def _invent(self, type_token: str, name: str, prefix: str) -> str:
        digest = hashlib.sha256(f"{type_token}/{name}/{prefix}".encode()).hexdigest()[:17]
        return self._remember(f"{prefix}-{digest}")

    def _remember(self, value: str) -> str:
        self.invented.add(value)
        return value
