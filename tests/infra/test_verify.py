"""`mlstack verify`: an account built from what prod's program creates passes every check; a tampered one fails,
naming each setting; an account missing the stack's resources or instances fails instead of printing nothing.

The moto account is built from the recorded plan of prod's program (the same run `mlstack preview` makes): its ECR
repository, model bucket with its public access block and encryption, VPC, security groups with their ingress rules
and the provider's default tags, EKS cluster, and one instance launched from each launch template (what EC2 or the
node group launches). Nothing is shaped by hand to pass.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.cli import main
from infra.preview.engine import StackRun
from tests.graph import AWS_PROVIDER

REGION = "us-east-1"  # prod's region
# Weaker cluster settings for the tampered case: moto cannot change a cluster's encryption afterwards.
TAMPERED_PUBLIC_CIDRS = ["198.51.100.0/24"]


@dataclass
class Account:
    bucket: str
    group_ids: list[str]
    instance_ids: list[str]
    cluster_public_cidrs: list[str]


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def _build(plan: StackRun, *, tampered: bool = False, launch: bool = True) -> Account:
    """The plan's resources in moto, with their recorded settings; `launch` False: no instance has started."""
    (provider,) = plan.of_type(AWS_PROVIDER)
    stack_tags: dict[str, str] = json.loads(provider.inputs["defaultTags"])["tags"]
    ecr = boto3.client("ecr", region_name=REGION)
    (repository,) = plan.of_type("aws:ecr/repository:Repository")
    ecr.create_repository(
        repositoryName=repository.inputs["name"],
        imageScanningConfiguration=repository.inputs["imageScanningConfiguration"],
        imageTagMutability=repository.inputs["imageTagMutability"],
    )
    s3 = boto3.client("s3", region_name=REGION)
    buckets = {b.id: b.outputs["bucket"] for b in plan.of_type("aws:s3/bucket:Bucket")}
    for name in buckets.values():
        s3.create_bucket(Bucket=name)
    for block in plan.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"):
        settings = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
        s3.put_public_access_block(
            Bucket=buckets[block.inputs["bucket"]],
            PublicAccessBlockConfiguration={key: block.inputs[key[0].lower() + key[1:]] for key in settings},
        )
    for encryption in plan.of_type(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ):
        # SSE-KMS names its key; SSE-S3 (the ALB access-log bucket: ALB logs support nothing else) names none.
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": {
                    "SSEAlgorithm": rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"],
                    **(
                        {"KMSMasterKeyID": rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"]}
                        if "kmsMasterKeyId" in rule["applyServerSideEncryptionByDefault"]
                        else {}
                    ),
                }
            }
            for rule in encryption.inputs["rules"]
        ]
        s3.put_bucket_encryption(
            Bucket=buckets[encryption.inputs["bucket"]], ServerSideEncryptionConfiguration={"Rules": rules}
        )
    (model_bucket,) = [name for name in buckets.values() if name.startswith("mlstack-prod-models-")]

    ec2 = boto3.client("ec2", region_name=REGION)
    (vpc,) = plan.of_type("aws:ec2/vpc:Vpc")
    vpc_id = ec2.create_vpc(CidrBlock=vpc.inputs["cidrBlock"])["Vpc"]["VpcId"]
    subnets = {
        s.id: ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=s.inputs["cidrBlock"], AvailabilityZone=s.inputs["availabilityZone"]
        )["Subnet"]["SubnetId"]
        for s in plan.of_type("aws:ec2/subnet:Subnet")
    }
    groups = {}
    for group in plan.of_type("aws:ec2/securityGroup:SecurityGroup"):
        tags = {**stack_tags, **group.inputs.get("tags", {})}
        groups[group.id] = ec2.create_security_group(
            GroupName=tags["Name"],
            Description=group.inputs["description"],
            VpcId=vpc_id,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": _tag_list(tags)}],
        )["GroupId"]
    assert groups, "the plan has no security group"
    for rule in plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        if rule.inputs["securityGroupId"] not in groups or not ({"cidrIpv4", "cidrIpv6"} & set(rule.inputs)):
            continue  # the cluster's own group (EKS creates it) or a rule from another group
        permission: dict[str, Any] = {
            "IpProtocol": rule.inputs["ipProtocol"],
            "FromPort": int(rule.inputs["fromPort"]),
            "ToPort": int(rule.inputs["toPort"]),
        }
        if "cidrIpv4" in rule.inputs:
            permission["IpRanges"] = [{"CidrIp": rule.inputs["cidrIpv4"]}]
        else:
            permission["Ipv6Ranges"] = [{"CidrIpv6": rule.inputs["cidrIpv6"]}]
        ec2.authorize_security_group_ingress(GroupId=groups[rule.inputs["securityGroupId"]], IpPermissions=[permission])

    instances = []
    templates = plan.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert templates, "the plan launches nothing"
    for template in templates if launch else []:
        metadata = template.inputs["metadataOptions"]
        # What the template's tag specifications put on the instance at launch: the only tags it gets.
        (instance_tags,) = [s["tags"] for s in template.inputs["tagSpecifications"] if s["resourceType"] == "instance"]
        instances += [
            i["InstanceId"]
            for i in ec2.run_instances(
                ImageId="ami-12c6146b",
                MinCount=1,
                MaxCount=1,
                SubnetId=next(iter(subnets.values())),
                MetadataOptions={"HttpTokens": metadata["httpTokens"], "HttpEndpoint": metadata["httpEndpoint"]},
                TagSpecifications=[{"ResourceType": "instance", "Tags": _tag_list(instance_tags)}],
            )["Instances"]
        ]

    (cluster,) = plan.of_type("aws:eks/cluster:Cluster")
    vpc_config = cluster.inputs["vpcConfig"]
    public_cidrs = TAMPERED_PUBLIC_CIDRS if tampered else vpc_config["publicAccessCidrs"]
    boto3.client("eks", region_name=REGION).create_cluster(
        name=cluster.inputs["name"],
        roleArn=cluster.inputs["roleArn"],
        resourcesVpcConfig={
            "subnetIds": [subnets[s] for s in vpc_config["subnetIds"]],
            "endpointPublicAccess": vpc_config["endpointPublicAccess"],
            "endpointPrivateAccess": vpc_config["endpointPrivateAccess"],
            "publicAccessCidrs": public_cidrs,
        },
        encryptionConfig=[] if tampered else [cluster.inputs["encryptionConfig"]],
    )
    return Account(model_bucket, list(groups.values()), instances, vpc_config["publicAccessCidrs"])


@pytest.fixture
def prod_plan(committed_runs: dict[str, StackRun]) -> StackRun:
    return committed_runs["prod"]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


def _verify(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = main(["verify", "prod"])
    return status, capsys.readouterr().out.splitlines()


def _check_name(line: str) -> str:
    return line[6:35].strip()


def test_an_account_built_from_the_plan_passes_every_check(
    aws: None, prod_plan: StackRun, capsys: pytest.CaptureFixture[str]
) -> None:
    account = _build(prod_plan)
    status, lines = _verify(capsys)
    assert status == 0, "\n".join(lines)
    checks = [_check_name(line) for line in lines[:-1]]
    # One line per instance: the CPU and the GPU pool's nodes, found by the tags their launch templates give them.
    assert len(account.instance_ids) == 2
    assert sorted(checks) == sorted(
        [
            "ecr scan on push", "ecr immutable tags", "s3 public access block", "s3 kms encryption",
            *["no world ingress but 80/443"] * len(account.group_ids), *["imdsv2"] * len(account.instance_ids),
            "eks secrets encryption", "eks endpoint access",
        ]
    )  # fmt: skip
    for instance in account.instance_ids:
        assert any(line.startswith("PASS  imdsv2") and instance in line for line in lines), instance
    assert all(line.startswith("PASS") for line in lines[:-1])
    assert lines[-1] == f"{len(checks)} checks, 0 failed"


def test_a_tampered_account_fails_naming_each_setting(
    aws: None, prod_plan: StackRun, capsys: pytest.CaptureFixture[str]
) -> None:
    account = _build(prod_plan, tampered=True)
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.put_image_scanning_configuration(
        repositoryName="mlstack-prod/model-service", imageScanningConfiguration={"scanOnPush": False}
    )
    ecr.put_image_tag_mutability(repositoryName="mlstack-prod/model-service", imageTagMutability="MUTABLE")
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_public_access_block(
        Bucket=account.bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": False, "RestrictPublicBuckets": True
        },
    )  # fmt: skip
    s3.put_bucket_encryption(
        Bucket=account.bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.authorize_security_group_ingress(
        GroupId=account.group_ids[0],
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    ec2.modify_instance_metadata_options(InstanceId=account.instance_ids[0], HttpTokens="optional")

    status, lines = _verify(capsys)
    assert status == 1
    failures = {line for line in lines if line.startswith("FAIL")}
    expected = {
        "ecr scan on push": "scanOnPush is off",
        "ecr immutable tags": "MUTABLE",
        "s3 public access block": "BlockPublicPolicy off",
        "s3 kms encryption": "default encryption is ['AES256']",
        "no world ingress but 80/443": "port 22 from 0.0.0.0/0",
        "imdsv2": "HttpTokens is optional",
        "eks secrets encryption": "secrets are not KMS-encrypted",
        "eks endpoint access": (
            f"public access CIDRs are {TAMPERED_PUBLIC_CIDRS}, the stack says {sorted(account.cluster_public_cidrs)}"
        ),
    }
    for check, detail in expected.items():
        assert any(check in line and line.endswith(detail) for line in failures), f"{check}: {detail}\n{lines}"
    assert len(failures) == len(expected)
    assert lines[-1].endswith(f" checks, {len(expected)} failed")


def test_no_running_instance_of_the_stack_is_a_failure_naming_the_check(
    aws: None, prod_plan: StackRun, capsys: pytest.CaptureFixture[str]
) -> None:
    _build(prod_plan, launch=False)
    # Another stack's instance does not count.
    boto3.client("ec2", region_name=REGION).run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        MetadataOptions={"HttpTokens": "required"},
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": "project", "Value": "mlstack"}, {"Key": "environment", "Value": "staging"}],
            }
        ],
    )
    status, lines = _verify(capsys)
    assert status == 1
    assert (
        "FAIL  imdsv2                       mlstack-prod: no running instance tagged project=mlstack, "
        "environment=prod" in lines
    )
    assert lines[-1].endswith(" checks, 1 failed")


def test_a_missing_resource_is_a_failure_not_a_pass(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = _verify(capsys)
    assert status == 1
    assert (
        "FAIL  ecr repository               mlstack-prod/model-service: not found (RepositoryNotFoundException)"
        in lines
    )
    assert any(line.startswith("FAIL  s3 model bucket") and line.endswith("not found") for line in lines)
    assert any(line.startswith("FAIL  security groups") for line in lines)
    assert any(line.startswith("FAIL  imdsv2") and "no running instance" in line for line in lines)
