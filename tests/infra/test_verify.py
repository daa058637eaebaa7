"""`mlstack verify`: a compliant account passes every check; a tampered one fails, naming each setting."""

from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto import mock_aws

from infra.cli import main

REGION = "us-east-1"  # prod's region
STACK_TAGS = [{"Key": "project", "Value": "mlstack"}, {"Key": "environment", "Value": "prod"}]
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"


@dataclass
class Account:
    bucket: str
    group_id: str
    instance_id: str


def _build(*, tampered: bool) -> Account:
    """prod's resources as the program makes them; `tampered` gives the cluster weaker settings from the start
    (moto cannot change a cluster's encryption afterwards), the rest is tampered in the tests."""
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_repository(
        repositoryName="mlstack-prod/model-service",
        imageScanningConfiguration={"scanOnPush": True},
        imageTagMutability="IMMUTABLE",
    )
    s3 = boto3.client("s3", region_name=REGION)
    bucket = "mlstack-prod-models-20261128"
    s3.create_bucket(Bucket=bucket)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration=dict.fromkeys(
            ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
        ),
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY_ARN}}]
        },
    )
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.0.0/18")["Subnet"]["SubnetId"]
    tags = [{"ResourceType": "security-group", "Tags": STACK_TAGS}]
    group = ec2.create_security_group(GroupName="mlstack-prod-lb", Description="lb", VpcId=vpc, TagSpecifications=tags)
    ec2.authorize_security_group_ingress(
        GroupId=group["GroupId"],
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
            for port in (80, 443)
        ],
    )
    instance = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        MetadataOptions={"HttpTokens": "required"},
        TagSpecifications=[{"ResourceType": "instance", "Tags": STACK_TAGS}],
    )["Instances"][0]["InstanceId"]
    boto3.client("eks", region_name=REGION).create_cluster(
        name="mlstack-prod",
        roleArn="arn:aws:iam::123456789012:role/mlstack-prod-eks",
        resourcesVpcConfig={
            "subnetIds": [subnet],
            "endpointPublicAccess": True,
            "endpointPrivateAccess": True,
            "publicAccessCidrs": ["0.0.0.0/0"] if tampered else ["203.0.113.0/24"],
        },
        encryptionConfig=[] if tampered else [{"resources": ["secrets"], "provider": {"keyArn": KEY_ARN}}],
    )
    return Account(bucket, group["GroupId"], instance)


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


def test_a_compliant_account_passes_every_check(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    _build(tampered=False)
    status, lines = _verify(capsys)
    assert status == 0, "\n".join(lines)
    checks = [
        line.split("  ", 1)[1].split(" mlstack")[0].split(" sg-")[0].split(" i-")[0].strip() for line in lines[:-1]
    ]
    assert sorted(checks) == sorted(
        [
            "ecr scan on push", "ecr immutable tags", "s3 public access block", "s3 kms encryption",
            "no world ingress but 80/443", "imdsv2", "eks secrets encryption", "eks endpoint access",
        ]
    )  # fmt: skip
    assert all(line.startswith("PASS") for line in lines[:-1])
    assert lines[-1] == "8 checks, 0 failed"


def test_a_tampered_account_fails_naming_each_setting(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    account = _build(tampered=True)
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
        GroupId=account.group_id,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    ec2.modify_instance_metadata_options(InstanceId=account.instance_id, HttpTokens="optional")

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
        "eks endpoint access": "public access CIDRs are ['0.0.0.0/0'], the stack says ['203.0.113.0/24']",
    }
    for check, detail in expected.items():
        assert any(check in line and line.endswith(detail) for line in failures), f"{check}: {detail}\n{lines}"
    assert lines[-1] == "8 checks, 8 failed"


def test_a_missing_resource_is_a_failure_not_a_pass(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = _verify(capsys)
    assert status == 1
    assert (
        "FAIL  ecr repository               mlstack-prod/model-service: not found (RepositoryNotFoundException)"
        in lines
    )
    assert any(line.startswith("FAIL  s3 model bucket") and line.endswith("not found") for line in lines)
