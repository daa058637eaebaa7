"""Publishing model packages to S3: s3://bucket/models/<name>/<version>/, one immutable folder per version.

metadata.json is uploaded last, so a reader that finds it finds the whole package. Every object is written with a
conditional PutObject (`If-None-Match: *`): S3 refuses to replace an object that exists, so a version can never be
overwritten, not even by two publishers racing past the check for an existing metadata.json.
"""

import argparse
import re
import sys
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from mlstack_service.package import (
    METADATA_FILE,
    PROFILE_FILE,
    ModelPackage,
    PackageError,
    load_package,
    split_s3_uri,
)

SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
FIRST_VERSION = "1.0.0"


class PublishError(Exception):
    """The package cannot be published; the message names the S3 location."""


def next_version(models_uri: str) -> str:
    """One minor version above the highest X.Y.Z under the model's prefix; 1.0.0 for the first."""
    bucket, prefix = split_s3_uri(models_uri)
    found: list[tuple[int, int, int]] = []
    try:
        pages = (
            boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
        )
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                match = SEMVER.match(common["Prefix"][len(prefix) :].rstrip("/"))
                if match:
                    found.append((int(match[1]), int(match[2]), int(match[3])))
    except ClientError as error:
        raise PublishError(f"{models_uri}: cannot list versions: {error.response['Error']['Code']}") from None
    except BotoCoreError as error:
        raise PublishError(f"{models_uri}: cannot reach S3: {error}") from None
    if not found:
        return FIRST_VERSION
    major, minor, _ = max(found)
    return f"{major}.{minor + 1}.0"


def ensure_unpublished(models_uri: str, version: str) -> None:
    """Raise PublishError when models_uri/<version>/ already holds a package."""
    bucket, prefix = split_s3_uri(models_uri)
    target = f"{prefix}{version}/"
    uri = f"s3://{bucket}/{target}"
    try:
        boto3.client("s3").head_object(Bucket=bucket, Key=f"{target}{METADATA_FILE}")
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code not in ("404", "NoSuchKey", "NotFound"):
            raise PublishError(f"{uri}: cannot check for an existing package: {code}") from None
    except BotoCoreError as error:
        raise PublishError(f"{uri}: cannot reach S3: {error}") from None
    else:
        raise PublishError(f"{uri}: version {version} is already published; versions are immutable")


def publish_package(package: ModelPackage, models_uri: str) -> str:
    """Upload the package under models_uri/<version>/; returns that URI."""
    ensure_unpublished(models_uri, package.metadata.version)
    bucket, prefix = split_s3_uri(models_uri)
    target = f"{prefix}{package.metadata.version}/"
    uri = f"s3://{bucket}/{target}"
    client = boto3.client("s3")
    for name in (package.metadata.model_file, PROFILE_FILE, METADATA_FILE):
        try:
            client.put_object(
                Bucket=bucket, Key=f"{target}{name}", Body=(package.root / name).read_bytes(), IfNoneMatch="*"
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "error")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise PublishError(
                    f"{uri}{name} already exists; version {package.metadata.version} is already published "
                    "(or being published); versions are immutable"
                ) from None
            raise PublishError(f"{uri}: upload of {name} failed: {code}") from None
        except BotoCoreError as error:
            raise PublishError(f"{uri}: upload failed: {error}") from None
    return uri


def main(argv: list[str] | None = None) -> int:
    """`python -m mlstack_service.publish PACKAGE_DIR s3://bucket/models/<name>/ [...]`: one package, more buckets."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("package", type=Path, help="a package folder written by mlstack_service.train")
    parser.add_argument("models_uris", nargs="+", help="s3://bucket/models/<name>/ prefixes to publish under")
    args = parser.parse_args(argv)
    try:
        package = load_package(str(args.package), args.package)
        for models_uri in args.models_uris:
            print(f"published {publish_package(package, models_uri)}")  # noqa: T201 (a command's result)
    except (PackageError, PublishError) as error:
        print(f"error: {error}", file=sys.stderr)  # noqa: T201 (a command's diagnostic)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
