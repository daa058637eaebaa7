"""The example model package that ships with the service (service/example_model/), published to the model bucket.

A new stack's bucket is empty, yet every pod loads `s3://<bucket>/<prefix><name>/<version>/` before it reports
ready; without a package there, the first `pulumi up` waits for pods that never become ready. So the stack
publishes the bundled package under the configured model name and the package's own version (never relabelled:
a version names one immutable package), and the workloads depend on it.

- Published whenever `service.modelName` is the bundled package's name, whichever version the service runs: a
  model-version pull request must not plan the removal of the package the stable pods still serve and a rollback
  returns to. Retrained versions (retrain.yml, `mlstack_service.publish`) take the next versions, never this one.
- Files go up one object each, metadata.json last (it depends on the others), as `mlstack_service.publish` does:
  a reader that finds metadata.json finds the whole package.
- Retained on delete: neither a destroy nor a program change ever removes a package a pod may load. (A destroy of
  an unprotected stack still empties the bucket through its force_destroy.)
- The content is the commit's: the next `up` changes nothing unless the bundled files change, and then (same
  version, new bytes) it overwrites them; tests/infra/test_bundled_model.py holds the model to its digest.
"""

import base64
import hashlib
import json
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.config import Environment
from infra.storage.model_bucket import ModelBucket

BUNDLED_PACKAGE_DIR = Path(__file__).resolve().parents[2] / "service" / "example_model"
METADATA_FILE = "metadata.json"
PROFILE_FILE = "reference_profile.json"


def bundled_package() -> tuple[str, str, list[str]]:
    """(name, version, files in upload order with metadata.json last) of the bundled package."""
    metadata = json.loads((BUNDLED_PACKAGE_DIR / METADATA_FILE).read_text(encoding="utf-8"))
    return metadata["name"], metadata["version"], [metadata["model_file"], PROFILE_FILE, METADATA_FILE]


def bundled_package_sha256() -> str:
    """The bundled package's digest as the service computes it (mlstack_service.package.package_sha256): the sha256
    of the `sha256sum` listing of the model, metadata.json and reference_profile.json, in that order."""
    _, _, files = bundled_package()
    model_file, profile, metadata = files
    listing = "".join(
        f"{hashlib.sha256((BUNDLED_PACKAGE_DIR / name).read_bytes()).hexdigest()}  {name}\n"
        for name in (model_file, metadata, profile)
    )
    return hashlib.sha256(listing.encode()).hexdigest()


def bundled_folder(env: Environment) -> str | None:
    """The bundled package's folder in the model bucket, when the stack publishes it (see BundledModel)."""
    model_name, version, _ = bundled_package()
    if env.config.service.model_name != model_name:
        return None
    return f"{env.config.model_bucket.model_prefix}{model_name}/{version}/"


def model_sha256_pin(env: Environment) -> str | None:
    """The sha256 the pods hold the served package to (MLSTACK_MODEL_SHA256): `service.modelSha256`, or the bundled
    package's own digest when the stack serves the bundled version; None (unpinned) otherwise."""
    service = env.config.service
    if service.model_sha256:
        return service.model_sha256
    model_name, version, _ = bundled_package()
    if (service.model_name, service.model_version) == (model_name, version):
        return bundled_package_sha256()
    return None


class BundledModel(pulumi.ComponentResource):
    """The bundled package's objects in the model bucket; `objects` is empty when the stack serves another model."""

    objects: list[aws.s3.BucketObjectv2]
    version: str | None

    def __init__(
        self, name: str, env: Environment, bucket: ModelBucket, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlstack:storage:BundledModel", name, None, opts)
        model_name, version, files = bundled_package()
        self.objects = []
        self.version = None
        if env.config.service.model_name == model_name:
            self.version = version
            folder = f"{bucket.model_prefix}{model_name}/{version}/"
            *payload, metadata = files
            for file_name in payload:
                self.objects.append(self._upload(name, bucket, folder, file_name, after=[]))
            self.objects.append(self._upload(name, bucket, folder, metadata, after=list(self.objects)))
        self.register_outputs({})

    def _upload(
        self, name: str, bucket: ModelBucket, folder: str, file_name: str, after: list[aws.s3.BucketObjectv2]
    ) -> aws.s3.BucketObjectv2:
        body = (BUNDLED_PACKAGE_DIR / file_name).read_bytes()
        return aws.s3.BucketObjectv2(
            f"{name}-{file_name.replace('.', '-').replace('_', '-')}",
            bucket=bucket.bucket_name,
            key=f"{folder}{file_name}",
            content_base64=base64.b64encode(body).decode("ascii"),
            content_type="application/json" if file_name.endswith(".json") else "application/octet-stream",
            # After the whole bucket (encryption, TLS-only policy), so the objects are born SSE-KMS.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[bucket, *after], retain_on_delete=True),
        )
