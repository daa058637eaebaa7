"""Models that can't be swapped: only the publish role writes under models/ (the deploy role only the bundled
package's folder), only under the models key, and a published version can be neither overwritten nor deleted.

The bucket policy is the one the program recorded for each stack. moto 5.2.5 does not evaluate bucket policies
(it authorizes S3 calls against the caller's identity policies only), so the policy is evaluated by
tests/infra/policy_evaluator.py; moto shows what it does enforce: conditional writes and Object Lock retention.
"""

import hashlib
import json
import subprocess
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from infra.bootstrap.names import DEPLOY_ROLE_NAME, PREVIEW_ROLE_NAME, RETRAIN_ROLE_NAME, role_arn
from infra.preview.engine import RecordedResource, StackRun
from infra.preview.fake_cloud import FAKE_ACCOUNT_ID
from infra.storage.bundled_model import BUNDLED_PACKAGE_DIR, bundled_package, bundled_package_sha256
from tests.infra.policy_evaluator import Request, denied

PUBLISHER = role_arn(FAKE_ACCOUNT_ID, RETRAIN_ROLE_NAME)
DEPLOYER = role_arn(FAKE_ACCOUNT_ID, DEPLOY_ROLE_NAME)
OTHERS = (
    f"arn:aws:iam::{FAKE_ACCOUNT_ID}:root",
    role_arn(FAKE_ACCOUNT_ID, PREVIEW_ROLE_NAME),
    role_arn(FAKE_ACCOUNT_ID, "model-service-role-0123456"),
    f"arn:aws:iam::{FAKE_ACCOUNT_ID}:user/admin",
    "arn:aws:iam::210987654321:role/mlstack-retrain",  # the same role name in another account
)
TLS = {"aws:SecureTransport": "true"}


def _named(run: StackRun, type_token: str, name: str) -> RecordedResource:
    (resource,) = [resource for resource in run.of_type(type_token) if resource.name == name]
    return resource


def _policy(run: StackRun) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(
        _named(run, "aws:s3/bucketPolicy:BucketPolicy", "models-tls-only").inputs["policy"]
    )
    return policy


def _bucket_arn(run: StackRun) -> str:
    arn: str = _named(run, "aws:s3/bucket:Bucket", "models-bucket").outputs["arn"]
    return arn


def _models_key(run: StackRun) -> str:
    arn: str = _named(run, "aws:kms/key:Key", "keys-models").outputs["arn"]
    return arn


def _put(run: StackRun, principal: str, key: str, **context: str) -> Request:
    return Request(principal, "s3:PutObject", f"{_bucket_arn(run)}/{key}", {**TLS, **context})


def test_only_the_publish_role_writes_a_new_model_version(stack_run: StackRun) -> None:
    policy = _policy(stack_run)
    key = "models/loan-approval/2.0.0/model.onnx"
    assert not denied(policy, _put(stack_run, PUBLISHER, key))
    for principal in (*OTHERS, DEPLOYER):
        assert denied(policy, _put(stack_run, principal, key)), principal
    for action in ("s3:PutObjectRetention", "s3:PutObjectLegalHold", "s3:BypassGovernanceRetention"):
        request = Request(OTHERS[0], action, f"{_bucket_arn(stack_run)}/{key}", TLS)
        assert denied(policy, request), action
    # Outside models/ the policy leaves writes to IAM (the batch role writes batch/output/).
    assert not denied(policy, _put(stack_run, OTHERS[2], "batch/output/scores.jsonl"))


def test_the_deploy_role_seeds_only_the_bundled_package(stack_run: StackRun) -> None:
    policy = _policy(stack_run)
    name, version, files = bundled_package()
    for file_name in files:
        assert not denied(policy, _put(stack_run, DEPLOYER, f"models/{name}/{version}/{file_name}")), file_name
    assert denied(policy, _put(stack_run, DEPLOYER, f"models/{name}/9.9.9/model.onnx"))
    assert denied(policy, _put(stack_run, DEPLOYER, f"models/{name}/{version}-evil/model.onnx"))


def test_objects_must_be_encrypted_with_the_models_key(stack_run: StackRun) -> None:
    policy = _policy(stack_run)
    key = "models/loan-approval/2.0.0/model.onnx"
    sse, key_id = "s3:x-amz-server-side-encryption", "s3:x-amz-server-side-encryption-aws-kms-key-id"
    models_key = _models_key(stack_run)
    other_key = models_key.rsplit("/", 1)[0] + "/another-key"
    assert not denied(policy, _put(stack_run, PUBLISHER, key))  # the bucket's default: the models key
    assert not denied(policy, _put(stack_run, PUBLISHER, key, **{sse: "aws:kms", key_id: models_key}))
    assert denied(policy, _put(stack_run, PUBLISHER, key, **{sse: "AES256"}))
    assert denied(policy, _put(stack_run, PUBLISHER, key, **{sse: "aws:kms", key_id: other_key}))
    assert denied(policy, _put(stack_run, PUBLISHER, key, **{sse: "aws:kms"}))  # aws/s3, not the bucket's key


def test_plain_http_is_refused_to_everyone(stack_run: StackRun) -> None:
    request = Request(PUBLISHER, "s3:GetObject", f"{_bucket_arn(stack_run)}/models/x", {"aws:SecureTransport": "false"})
    assert denied(_policy(stack_run), request)


@pytest.mark.parametrize(("stack", "bypass_denied"), [("dev", False), ("staging", False), ("prod", True)])
def test_only_an_unprotected_stacks_destroy_may_bypass_the_retention(
    committed_runs: dict[str, StackRun], stack: str, bypass_denied: bool
) -> None:
    run = committed_runs[stack]
    for key in ("models/loan-approval/1.0.0/model.onnx", "models/loan-approval/2.0.0/model.onnx", "batch/output/x"):
        request = Request(DEPLOYER, "s3:BypassGovernanceRetention", f"{_bucket_arn(run)}/{key}", TLS)
        assert denied(_policy(run), request) is bypass_denied, key
        for principal in (PUBLISHER, *OTHERS):
            assert denied(_policy(run), Request(principal, "s3:BypassGovernanceRetention", request.resource, TLS))


def test_every_model_version_is_retained_under_object_lock(stack_run: StackRun) -> None:
    lock = _named(stack_run, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", "models-object-lock")
    assert lock.inputs["objectLockEnabled"] == "Enabled"
    retention = lock.inputs["rule"]["defaultRetention"]
    assert retention == {"mode": "GOVERNANCE", "days": 30}
    versioning = _named(stack_run, "aws:s3/bucketVersioning:BucketVersioning", "models-versioning")
    assert versioning.urn in lock.dependencies


@mock_aws
def test_a_second_publish_of_a_version_fails_and_a_published_version_cant_be_deleted(
    committed_runs: dict[str, StackRun],
) -> None:
    """What moto enforces: If-None-Match on put (how mlstack_service.publish writes) and the stack's Object Lock."""
    run = committed_runs["prod"]
    lock = _named(run, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", "models-object-lock")
    retention = lock.inputs["rule"]["defaultRetention"]
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="models", ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket="models",
        ObjectLockConfiguration={
            "ObjectLockEnabled": lock.inputs["objectLockEnabled"],
            "Rule": {"DefaultRetention": {"Mode": retention["mode"], "Days": int(retention["days"])}},
        },
    )
    key = "models/loan-approval/2.0.0/model.onnx"
    first = s3.put_object(Bucket="models", Key=key, Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as second:
        s3.put_object(Bucket="models", Key=key, Body=b"second", IfNoneMatch="*")
    assert second.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket="models", Key=key)["Body"].read() == b"first"
    with pytest.raises(ClientError) as delete:
        s3.delete_object(Bucket="models", Key=key, VersionId=first["VersionId"])
    assert delete.value.response["Error"]["Code"] == "AccessDenied"


def test_the_pods_hold_the_bundled_package_to_its_sha256(committed_runs: dict[str, StackRun]) -> None:
    """The pin the stack passes (MLSTACK_MODEL_SHA256) is what `sha256sum` prints over the package's files, the
    digest mlstack_service.package documents; computed here by the shell tools, not by the program's code."""
    name, version, files = bundled_package()
    model_file, profile, metadata = files
    listing = subprocess.run(
        ["sha256sum", model_file, metadata, profile], cwd=BUNDLED_PACKAGE_DIR, check=True, capture_output=True
    ).stdout
    expected = hashlib.sha256(listing).hexdigest()
    assert bundled_package_sha256() == expected
    for stack in ("staging", "prod"):
        rollout = _named(committed_runs[stack], "kubernetes:argoproj.io/v1alpha1:Rollout", "model-service-rollout")
        (container,) = rollout.inputs["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env["MLSTACK_MODEL_SHA256"] == expected, stack
        assert env["MLSTACK_MODEL_URI"].endswith(f"/models/{name}/{version}/")
