"""The bundled example package goes to the model bucket before the pods need it, whole and never deleted."""

import base64
import hashlib
import json

from infra.preview.engine import StackRun
from infra.storage.bundled_model import BUNDLED_PACKAGE_DIR, bundled_package
from tests.conftest import RunStack, stack_config

OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"


def test_the_bundled_model_file_is_the_one_its_metadata_names() -> None:
    metadata = json.loads((BUNDLED_PACKAGE_DIR / "metadata.json").read_text())
    model = (BUNDLED_PACKAGE_DIR / metadata["model_file"]).read_bytes()
    assert hashlib.sha256(model).hexdigest() == metadata["sha256"], "same version, new bytes: bump the version"


def test_every_stack_publishes_the_package_metadata_last_and_retains_it(stack_run: StackRun) -> None:
    name, version, files = bundled_package()
    objects = {r.inputs["key"].rsplit("/", 1)[1]: r for r in stack_run.of_type(OBJECT)}
    assert sorted(objects) == sorted(files)
    (bucket,) = [b for b in stack_run.of_type("aws:s3/bucket:Bucket") if b.name == "models-bucket"]
    for file_name, resource in objects.items():
        assert resource.inputs["key"] == f"models/{name}/{version}/{file_name}"
        assert resource.inputs["bucket"] == bucket.id
        assert base64.b64decode(resource.inputs["contentBase64"]) == (BUNDLED_PACKAGE_DIR / file_name).read_bytes()
        assert resource.retain_on_delete, "a destroy or a program change never deletes a package a pod may load"
    others = {objects[f].urn for f in files[:-1]}
    assert others <= set(objects["metadata.json"].dependencies), "metadata.json last: finding it means all is there"
    assert stack_run.outputs["modelUri"].endswith(f"/models/{name}/{version}/")


def test_a_model_version_pull_request_keeps_the_bundled_package(run_stack: RunStack) -> None:
    config = stack_config("prod")
    config["mlstack:service"] = {**config["mlstack:service"], "modelVersion": "1.1.0"}
    run = run_stack("prod", config)
    assert {r.inputs["key"] for r in run.of_type(OBJECT)} == {
        f"models/loan-approval/1.0.0/{f}" for f in bundled_package()[2]
    }, "the stable version's package, and the rollback target, stays published"


def test_a_stack_serving_another_model_publishes_nothing(run_stack: RunStack) -> None:
    config = stack_config("staging")
    config["mlstack:service"] = {"modelName": "churn"}
    assert run_stack("staging", config).of_type(OBJECT) == []
