"""The registry and the model bucket: encrypted, private, pruned, and kept when the stack is protected."""

import json

from infra.preview.engine import RecordedResource, StackRun
from tests.conftest import stack_config
from tests.graph import environment_of


def _one(run: StackRun, type_token: str) -> RecordedResource:
    """The one resource of the type outside the ALB access-logs bucket (tests/infra/test_model_bucket_security.py)."""
    (resource,) = [resource for resource in run.of_type(type_token) if not resource.name.startswith("alb-logs-")]
    return resource


def _key_arn(run: StackRun, purpose: str) -> str:
    (key,) = [key for key in run.of_type("aws:kms/key:Key") if key.name.endswith(f"-{purpose}")]
    arn: str = key.outputs["arn"]
    return arn


def test_repository_scans_on_push_with_immutable_tags_and_kms(stack_run: StackRun) -> None:
    repository = _one(stack_run, "aws:ecr/repository:Repository")
    assert repository.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repository.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repository.inputs["encryptionConfigurations"] == [
        {"encryptionType": "KMS", "kmsKey": _key_arn(stack_run, "registry")}
    ]


def test_repository_lifecycle_expires_untagged_and_keeps_the_newest_tagged(stack_run: StackRun) -> None:
    env = environment_of(stack_run, stack_config(stack_run.stack))
    policy = json.loads(_one(stack_run, "aws:ecr/lifecyclePolicy:LifecyclePolicy").inputs["policy"])
    untagged, tagged = policy["rules"]
    assert untagged["selection"]["tagStatus"] == "untagged"
    assert untagged["selection"]["countNumber"] == env.config.registry.untagged_expiry_days
    assert tagged["selection"]["countType"] == "imageCountMoreThan"
    assert tagged["selection"]["countNumber"] == env.config.registry.keep_tagged_images


def test_bucket_is_versioned_kms_encrypted_private_and_owner_enforced(stack_run: StackRun) -> None:
    bucket = _one(stack_run, "aws:s3/bucket:Bucket")
    block = _one(stack_run, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert block.inputs["bucket"] == bucket.id
    for setting in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
        assert block.inputs[setting] is True, setting
    versioning = _one(stack_run, "aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
    (rule,) = _one(
        stack_run, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ).inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": _key_arn(stack_run, "models"),
    }
    ownership = _one(stack_run, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    rules = _one(stack_run, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]
    # Old versions expire for the whole bucket; the prediction log and labels have their own rules beside it.
    (noncurrent,) = [rule for rule in rules if "noncurrentVersionExpiration" in rule]
    assert noncurrent["noncurrentVersionExpiration"]["noncurrentDays"] == 90


def test_bucket_policy_denies_requests_without_tls(stack_run: StackRun) -> None:
    bucket = _one(stack_run, "aws:s3/bucket:Bucket")
    policy = json.loads(_one(stack_run, "aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    (statement,) = [s for s in policy["Statement"] if s["Sid"] == "DenyInsecureTransport"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [bucket.outputs["arn"], bucket.outputs["arn"] + "/*"]


def test_stateful_resources_are_retained_only_where_the_stack_is_protected(committed_runs: dict[str, StackRun]) -> None:
    stateful = ("aws:ecr/repository:Repository", "aws:s3/bucket:Bucket", "aws:kms/key:Key")
    for stack, protected in (("dev", False), ("staging", False), ("prod", True)):
        run = committed_runs[stack]
        for type_token in stateful:
            assert run.of_type(type_token), f"{stack}: no {type_token} to check"
            for resource in run.of_type(type_token):
                assert resource.retain_on_delete is protected, f"{stack}: {resource.name}"
        assert _one(run, "aws:ecr/repository:Repository").inputs["forceDelete"] is not protected
        assert _one(run, "aws:s3/bucket:Bucket").inputs["forceDestroy"] is not protected


def test_kms_keys_rotate(stack_run: StackRun) -> None:
    keys = stack_run.of_type("aws:kms/key:Key")
    assert keys
    assert all(key.inputs["enableKeyRotation"] is True for key in keys)
