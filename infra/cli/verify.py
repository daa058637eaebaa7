"""`mlstack verify STACK`: check a live AWS account against what the stack promises, one line per check.

It reads, never writes: the stack's ECR repository (scan on push, immutable tags), its model bucket(s) (the public
access block, KMS default encryption), every security group tagged with the stack (nothing open to the world but
80/443), its EKS cluster (secrets encrypted, endpoint access as configured) and its running instances (IMDSv2).
Resources are found by the names and tags the program gives them. Exit 1 when any check fails.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from infra.config import Environment
from infra.config.load import NAMESPACE
from infra.policy.rules import WEB_PORTS, is_world
from infra.registry.ecr import SERVICE_IMAGE


@dataclass(frozen=True)
class Check:
    ok: bool
    check: str
    resource: str
    detail: str = ""

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.check:<28} {self.resource}" + (
            f": {self.detail}" if self.detail else ""
        )


class AccountVerifier:
    def __init__(self, env: Environment, session: Any) -> None:
        self.env = env
        self.ecr = session.client("ecr", region_name=env.region)
        self.s3 = session.client("s3", region_name=env.region)
        self.ec2 = session.client("ec2", region_name=env.region)
        self.eks = session.client("eks", region_name=env.region)
        self.stack_filters = [
            {"Name": "tag:project", "Values": [NAMESPACE]},
            {"Name": "tag:environment", "Values": [env.name]},
        ]

    def run(self) -> list[Check]:
        checks = [*self.repository(), *self.buckets(), *self.security_groups(), *self.instances()]
        if self.env.config.compute.mode == "eks":
            checks += list(self.cluster())
        return checks

    def repository(self) -> Iterator[Check]:
        name = f"{self.env.prefix}/{SERVICE_IMAGE}"
        try:
            (repository,) = self.ecr.describe_repositories(repositoryNames=[name])["repositories"]
        except ClientError as error:
            yield Check(False, "ecr repository", name, f"not found ({error.response['Error']['Code']})")
            return
        scan = repository.get("imageScanningConfiguration", {}).get("scanOnPush", False)
        yield Check(scan, "ecr scan on push", name, "" if scan else "scanOnPush is off")
        mutability = repository.get("imageTagMutability")
        yield Check(
            mutability == "IMMUTABLE", "ecr immutable tags", name, "" if mutability == "IMMUTABLE" else mutability
        )

    def buckets(self) -> Iterator[Check]:
        prefix = f"{self.env.prefix}-models-"
        names = [
            bucket["Name"] for bucket in self.s3.list_buckets().get("Buckets", []) if bucket["Name"].startswith(prefix)
        ]
        if not names:
            yield Check(False, "s3 model bucket", f"{prefix}*", "not found")
        for name in names:
            try:
                block = self.s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
                off = sorted(setting for setting, value in block.items() if not value)
                detail = f"{', '.join(off)} off" if off else ""
            except ClientError:
                off, detail = ["all"], "no public access block"
            yield Check(not off, "s3 public access block", name, detail)
            try:
                rules = self.s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
                algorithms = [rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for rule in rules]
            except ClientError:
                algorithms = []
            kms = any(algorithm.startswith("aws:kms") for algorithm in algorithms)
            yield Check(kms, "s3 kms encryption", name, "" if kms else f"default encryption is {algorithms or 'none'}")

    def security_groups(self) -> Iterator[Check]:
        groups = self.ec2.describe_security_groups(Filters=self.stack_filters)["SecurityGroups"]
        if not groups:
            yield Check(False, "security groups", self.env.prefix, "none tagged with this stack")
        for group in groups:
            exposed = []
            for permission in group.get("IpPermissions", []):
                sources = [r["CidrIp"] for r in permission.get("IpRanges", [])]
                sources += [r["CidrIpv6"] for r in permission.get("Ipv6Ranges", [])]
                world = [cidr for cidr in sources if is_world(cidr)]
                low, high = permission.get("FromPort", 0), permission.get("ToPort", 65535)
                if permission.get("IpProtocol") == "-1":
                    low, high = 0, 65535
                if world and not (low == high and low in WEB_PORTS):
                    exposed.append(
                        f"{low}-{high} from {', '.join(world)}" if low != high else f"{low} from {', '.join(world)}"
                    )
            label = f"{group['GroupId']} ({group.get('GroupName', '')})"
            yield Check(not exposed, "no world ingress but 80/443", label, "; ".join(f"port {e}" for e in exposed))

    def cluster(self) -> Iterator[Check]:
        name = self.env.cluster_name
        try:
            cluster = self.eks.describe_cluster(name=name)["cluster"]
        except ClientError as error:
            yield Check(False, "eks cluster", name, f"not found ({error.response['Error']['Code']})")
            return
        encrypted = any("secrets" in config.get("resources", []) for config in cluster.get("encryptionConfig", []))
        yield Check(encrypted, "eks secrets encryption", name, "" if encrypted else "secrets are not KMS-encrypted")
        settings = self.env.config.compute.eks
        vpc = cluster.get("resourcesVpcConfig", {})
        problems = []
        if settings is not None:
            if vpc.get("endpointPrivateAccess") != settings.endpoint_private_access:
                problems.append(f"private access is {vpc.get('endpointPrivateAccess')}")
            if vpc.get("endpointPublicAccess") != settings.endpoint_public_access:
                problems.append(f"public access is {vpc.get('endpointPublicAccess')}")
            expected = (
                sorted(str(cidr) for cidr in settings.public_access_cidrs) if settings.endpoint_public_access else []
            )
            actual = sorted(vpc.get("publicAccessCidrs", [])) if vpc.get("endpointPublicAccess") else []
            if actual != expected:
                problems.append(f"public access CIDRs are {actual}, the stack says {expected}")
        yield Check(not problems, "eks endpoint access", name, "; ".join(problems))

    def instances(self) -> Iterator[Check]:
        """Every running instance of the stack (the dev host, the node groups' nodes: their launch templates tag
        them); none at all is a failure, not a silent pass: the stack always runs at least one."""
        filters = [*self.stack_filters, {"Name": "instance-state-name", "Values": ["running"]}]
        found = [
            instance
            for reservation in self.ec2.describe_instances(Filters=filters)["Reservations"]
            for instance in reservation["Instances"]
        ]
        if not found:
            yield Check(
                False,
                "imdsv2",
                self.env.prefix,
                f"no running instance tagged project={NAMESPACE}, environment={self.env.name}",
            )
        for instance in found:
            tokens = instance.get("MetadataOptions", {}).get("HttpTokens")
            yield Check(
                tokens == "required",
                "imdsv2",
                instance["InstanceId"],
                "" if tokens == "required" else f"HttpTokens is {tokens}",
            )


def verify_account(env: Environment, session: Any) -> list[Check]:
    return AccountVerifier(env, session).run()
