"""Retraining from a labelled dataset in S3 and publishing the package to S3, against a real moto server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from mlstack_service.package import METADATA_FILE, PROFILE_FILE, load_package, sha256_of
from mlstack_service.synthetic import FEATURE_NAMES, generate_applications
from tests.service.conftest import MotoS3

MODELS = "s3://models/models/loan-approval/"


def _labelled(rows: int, seed: int) -> pa.Table:
    features, labels = generate_applications(rows, seed)
    columns = {name: features[:, index] for index, name in enumerate(FEATURE_NAMES)}
    return pa.table({**columns, "label": labels})


def _train(*args: str, env: dict[str, str], summary: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--summary-json", str(summary)] if summary else []
    return subprocess.run(
        [sys.executable, "-m", "mlstack_service.train", *args, *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_training_from_s3_publishes_a_verified_package_and_numbers_versions(
    tmp_path: Path, moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="models")
    pq.write_table(_labelled(3_000, seed=11), tmp_path / "week1.parquet")
    week2 = _labelled(2_000, seed=12)
    credit = ["n/a"] * 5 + [str(value) for value in week2.column("credit_score").to_pylist()[5:]]
    week2 = week2.set_column(week2.column_names.index("credit_score"), "credit_score", pa.array(credit))
    pa_csv.write_csv(week2, tmp_path / "week2.csv")
    s3.upload_file(str(tmp_path / "week1.parquet"), "models", "datasets/loan-approval/week1.parquet")
    s3.upload_file(str(tmp_path / "week2.csv"), "models", "datasets/loan-approval/week2.csv")
    data = "s3://models/datasets/loan-approval/"

    first = _train(
        "--data", data, "--out", str(tmp_path / "p1"), "--publish", MODELS, "--version", "next",
        env=moto_s3.env, summary=tmp_path / "first.json",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "read 4995 rows from 2 file(s); dropped 5" in first.stderr
    summary = json.loads((tmp_path / "first.json").read_text())
    assert (summary["version"], summary["uri"]) == ("1.0.0", f"{MODELS}1.0.0/")
    assert summary["holdout"]["rows"] == 999
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket="models", Prefix="models/")["Contents"]}
    assert keys == {f"models/loan-approval/1.0.0/{name}" for name in ("model.onnx", METADATA_FILE, PROFILE_FILE)}

    # The published package loads through the service's own S3 path, checksum verified.
    for key, value in moto_s3.env.items():
        monkeypatch.setenv(key, value)
    published = load_package(summary["uri"], tmp_path / "cache")
    assert published.metadata.sha256 == sha256_of(tmp_path / "p1" / "model.onnx") == summary["sha256"]

    second = _train(
        "--data", data, "--out", str(tmp_path / "p2"), "--publish", MODELS, "--version", "next", env=moto_s3.env
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert f"published to {MODELS}1.1.0/" in second.stdout
    assert load_package(str(tmp_path / "p2"), tmp_path / "p2").metadata.version == "1.1.0"

    # The same package into a second environment's bucket, under the same version.
    s3.create_bucket(Bucket="prod-models")
    copy = subprocess.run(
        [sys.executable, "-m", "mlstack_service.publish", str(tmp_path / "p2"), "s3://prod-models/models/loan-approval/"],
        capture_output=True, text=True, env=moto_s3.env, check=False,
    )  # fmt: skip
    assert copy.returncode == 0, copy.stderr
    assert copy.stdout.strip() == "published s3://prod-models/models/loan-approval/1.1.0/"
    body = s3.get_object(Bucket="prod-models", Key="models/loan-approval/1.1.0/model.onnx")["Body"].read()
    assert body == (tmp_path / "p2" / "model.onnx").read_bytes()

    again = _train("--data", data, "--out", str(tmp_path / "p3"), "--publish", MODELS, "--version", "1.1.0",
                   env=moto_s3.env)  # fmt: skip
    assert again.returncode == 2
    assert again.stderr.strip() == f"error: {MODELS}1.1.0/: version 1.1.0 is already published; versions are immutable"


def test_a_model_below_the_accuracy_floor_is_not_published(tmp_path: Path, moto_s3: MotoS3) -> None:
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="floor")
    pq.write_table(_labelled(1_000, seed=13), tmp_path / "data.parquet")
    result = _train(
        "--data", str(tmp_path / "data.parquet"), "--out", str(tmp_path / "p"),
        "--publish", "s3://floor/models/loan-approval/", "--version", "next", "--min-accuracy", "0.999",
        env=moto_s3.env,
    )  # fmt: skip
    assert result.returncode == 2
    assert "is below --min-accuracy 0.999; 1.0.0 was not published" in result.stderr
    assert s3.list_objects_v2(Bucket="floor").get("KeyCount") == 0


def test_bad_datasets_are_named_with_the_file_and_column(tmp_path: Path) -> None:
    pq.write_table(_labelled(100, seed=14).drop_columns(["label"]), tmp_path / "unlabelled.parquet")
    unlabelled = _train("--data", str(tmp_path / "unlabelled.parquet"), "--out", str(tmp_path / "p"), env=_plain_env())
    assert unlabelled.returncode == 2
    assert f"{tmp_path / 'unlabelled.parquet'}: missing columns ['label']" in unlabelled.stderr

    table = _labelled(100, seed=15)
    table = table.set_column(table.column_names.index("label"), "label", pa.array([0, 1, 2, 3] * 25))
    pq.write_table(table, tmp_path / "classes.parquet")
    classes = _train("--data", str(tmp_path / "classes.parquet"), "--out", str(tmp_path / "p"), env=_plain_env())
    assert classes.returncode == 2
    assert "column 'label' must hold 0 or 1; found [2.0, 3.0]" in classes.stderr

    nothing = _train("--version", "next", "--out", str(tmp_path / "p"), env=_plain_env())
    assert nothing.returncode == 2
    assert "--version next picks one above the published versions, so it needs --publish" in nothing.stderr
    assert not (tmp_path / "p").exists()


def _plain_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
