"""Publishing is write-once: S3's conditional PutObject refuses to replace any object of a published version."""

from pathlib import Path

import pytest

from mlstack_service.package import METADATA_FILE, MODEL_FILE, PROFILE_FILE, load_package
from mlstack_service.publish import PublishError, publish_package
from tests.service.conftest import MotoS3
from tests.service.models import EXAMPLE_PACKAGE

MODELS = "s3://{bucket}/models/loan-approval/"


@pytest.fixture
def bucket(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    for key, value in moto_s3.env.items():
        monkeypatch.setenv(key, value)
    name = f"publish-{request.node.name.replace('_', '-')[:40].strip('-')}"
    moto_s3.client().create_bucket(Bucket=name)
    return name


def test_a_second_publish_of_a_published_version_fails_and_changes_nothing(bucket: str, moto_s3: MotoS3) -> None:
    package = load_package(str(EXAMPLE_PACKAGE), EXAMPLE_PACKAGE)
    uri = publish_package(package, MODELS.format(bucket=bucket))
    version = package.metadata.version
    s3 = moto_s3.client()
    before = {
        name: s3.head_object(Bucket=bucket, Key=f"models/loan-approval/{version}/{name}")["ETag"]
        for name in (MODEL_FILE, METADATA_FILE, PROFILE_FILE)
    }
    with pytest.raises(PublishError, match="already published; versions are immutable"):
        publish_package(package, MODELS.format(bucket=bucket))
    after = {
        name: s3.head_object(Bucket=bucket, Key=f"models/loan-approval/{version}/{name}")["ETag"]
        for name in (MODEL_FILE, METADATA_FILE, PROFILE_FILE)
    }
    assert uri == f"s3://{bucket}/models/loan-approval/{version}/"
    assert after == before


def test_a_publisher_racing_past_the_existence_check_cannot_overwrite(
    bucket: str, moto_s3: MotoS3, tmp_path: Path
) -> None:
    """Another publisher has written the model but not yet metadata.json, so the up-front check passes: the
    conditional write still refuses to replace the model."""
    package = load_package(str(EXAMPLE_PACKAGE), EXAMPLE_PACKAGE)
    key = f"models/loan-approval/{package.metadata.version}/{MODEL_FILE}"
    s3 = moto_s3.client()
    s3.put_object(Bucket=bucket, Key=key, Body=b"the other publisher's model")
    with pytest.raises(PublishError, match=f"{MODEL_FILE} already exists"):
        publish_package(package, MODELS.format(bucket=bucket))
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"the other publisher's model"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="models/")["Contents"]
    assert [item["Key"] for item in listed] == [key], "nothing else of the version was written"
