"""The label join: labels (feedback_store.py) joined to logged predictions (prediction_log.py), in S3.

    python -m mlstack_service.label_join --model-name loan-approval \\
        --predictions s3://bucket/predictions/ --feedback s3://bucket/feedback/ --output s3://bucket/labelled/

Writes, under `--output<model name>/`:
- `dataset/labelled.csv`: one row per labelled input row: the prediction's id, row number, model version and time,
  the features under their names, the served score and the `label` column: what `mlstack_service.train --data
  <output><model>/dataset/` trains on (retrain.yml). Predictions logged without features (the service's
  MLSTACK_PREDICTION_LOG_FEATURES=false) are joined for the metrics but can't be retrained on: they are counted,
  not written.
- `summary.json`: realized performance per model version (accuracy and log loss over every joined row), and the
  counts of labels that found no logged prediction (the log is sampled) or did not fit it. The service reads this
  object (realized.py) and re-exports it on /metrics, so the Prometheus that scrapes the service already has it:
  a Job that runs for a minute a day can't be scraped, and a Pushgateway would be one more component to run.

Every run recomputes both from everything the two prefixes hold: labels may arrive months after their prediction,
and the bucket's lifecycle rules (monitoring.predictionLog.*RetentionDays) bound what that is. A label whose row
count differs from its prediction's is rejected (counted), never guessed at.
"""

import argparse
import csv
import gzip
import io
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import orjson
from botocore.exceptions import BotoCoreError, ClientError

from mlstack_service.local_objects import LocalObjects
from mlstack_service.package import split_s3_uri

DATASET_FOLDER = "dataset/"
DATASET_FILE = "labelled.csv"
SUMMARY_FILE = "summary.json"
LABEL_COLUMN = "label"
FETCH_THREADS = 8
EXIT_FAILED = 2


class LabelJoinError(Exception):
    """The join can't run: the message names the S3 location and what went wrong."""


@dataclass
class VersionPerformance:
    predictions: int = 0
    rows: int = 0
    correct: int = 0
    log_loss_sum: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "labelled_predictions": self.predictions,
            "labelled_rows": self.rows,
            "accuracy": self.correct / self.rows if self.rows else None,
            "log_loss": self.log_loss_sum / self.rows if self.rows else None,
        }


@dataclass
class JoinResult:
    labels: int = 0
    logged_predictions: int = 0
    joined_predictions: int = 0
    rejected_labels: int = 0
    rows_without_features: int = 0
    rows_with_other_features: int = 0
    dataset_rows: int = 0
    dataset_uri: str | None = None
    feature_names: list[str] = field(default_factory=list)
    versions: dict[str, VersionPerformance] = field(default_factory=dict)

    def summary(self, model_name: str) -> dict[str, Any]:
        return {
            "model_name": model_name,
            "generated_at": round(time.time(), 3),
            "labels": self.labels,
            "logged_predictions": self.logged_predictions,
            "joined_predictions": self.joined_predictions,
            # Labels for predictions the log did not sample (or whose log expired): expected when sampling.
            "unjoined_labels": self.labels - self.joined_predictions - self.rejected_labels,
            "rejected_labels": self.rejected_labels,
            "rows_without_features": self.rows_without_features,
            "rows_with_other_features": self.rows_with_other_features,
            "dataset": {"uri": self.dataset_uri, "rows": self.dataset_rows, "features": self.feature_names},
            "versions": {version: perf.as_json() for version, perf in sorted(self.versions.items())},
        }


def _split(uri: str) -> tuple[str, str]:
    """s3://bucket/prefix/ or file:///folder/prefix/ -> (bucket or folder, prefix), as LocalObjects reads it."""
    return split_s3_uri("s3://" + uri.removeprefix("file:///").removeprefix("s3://"))


def _keys(client: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            yield entry["Key"]


def _read(client: Any, bucket: str, key: str) -> bytes:
    body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def read_labels(client: Any, feedback_uri: str) -> dict[str, list[int]]:
    """Every stored label, by prediction id."""
    bucket, prefix = _split(feedback_uri)
    keys = [key for key in _keys(client, bucket, prefix) if key.endswith(".json")]
    labels: dict[str, list[int]] = {}
    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        for document in pool.map(lambda key: orjson.loads(_read(client, bucket, key)), keys):
            values = document.get("labels")
            if isinstance(document.get("id"), str) and isinstance(values, list):
                labels[document["id"]] = values
    return labels


def logged_predictions(client: Any, predictions_uri: str, model_name: str) -> Iterator[dict[str, Any]]:
    """Every logged prediction of the model, object by object (one object in memory at a time)."""
    bucket, prefix = _split(predictions_uri)
    for key in sorted(_keys(client, bucket, f"{prefix}{model_name}/")):
        if not key.endswith(".jsonl.gz"):
            continue
        for line in gzip.decompress(_read(client, bucket, key)).splitlines():
            if line:
                yield orjson.loads(line)


def _score(scores: list[list[float]], labels: list[int], performance: VersionPerformance) -> list[float]:
    """Adds the prediction's rows to its version's performance; returns each row's positive-class score."""
    positives: list[float] = []
    for probabilities, label in zip(scores, labels, strict=True):
        # The most probable class; a tie goes to the later class, as the service's 0.5 threshold does (drift.py).
        predicted = max(range(len(probabilities)), key=lambda index: (probabilities[index], index))
        performance.correct += int(predicted == label)
        truth = min(max(probabilities[label], 1e-7), 1 - 1e-7)
        performance.log_loss_sum -= math.log(truth)
        positives.append(probabilities[-1])
    performance.predictions += 1
    performance.rows += len(labels)
    return positives


def join(client: Any, *, model_name: str, predictions_uri: str, feedback_uri: str, output_uri: str) -> JoinResult:
    """Joins, writes the dataset and the summary; returns what it found."""
    result = JoinResult()
    labels = read_labels(client, feedback_uri)
    result.labels = len(labels)
    out_bucket, out_prefix = _split(output_uri)
    target = f"{out_prefix}{model_name}/"
    with tempfile.TemporaryDirectory() as scratch:
        dataset_path = Path(scratch) / DATASET_FILE
        with dataset_path.open("w", newline="") as dataset_file:
            writer = csv.writer(dataset_file)
            for record in logged_predictions(client, predictions_uri, model_name):
                result.logged_predictions += 1
                prediction_id = record.get("id")
                truth = labels.get(prediction_id) if isinstance(prediction_id, str) else None
                if truth is None:
                    continue
                scores = record.get("scores") or []
                if len(truth) != len(scores) or not all(type(v) is int and 0 <= v < len(scores[0]) for v in truth):
                    result.rejected_labels += 1
                    continue
                version = str(record.get("model_version"))
                performance = result.versions.setdefault(version, VersionPerformance())
                positives = _score(scores, truth, performance)
                result.joined_predictions += 1
                names, rows = record.get("feature_names"), record.get("features")
                if not names or not rows:
                    result.rows_without_features += len(truth)
                    continue
                if not result.feature_names:
                    result.feature_names = list(names)
                    writer.writerow(
                        ["prediction_id", "row", "model_version", "predicted_at", *names, "score", LABEL_COLUMN]
                    )
                elif names != result.feature_names:
                    result.rows_with_other_features += len(truth)
                    continue
                for row_number, (row, positive, label) in enumerate(zip(rows, positives, truth, strict=True)):
                    writer.writerow([prediction_id, row_number, version, record.get("time"), *row, positive, label])
                result.dataset_rows += len(truth)
        if result.dataset_rows:
            key = f"{target}{DATASET_FOLDER}{DATASET_FILE}"
            client.upload_file(str(dataset_path), out_bucket, key, ExtraArgs={"ContentType": "text/csv"})
            result.dataset_uri = f"{output_uri.partition('://')[0]}://{out_bucket}/{key}"
    client.put_object(
        Bucket=out_bucket,
        Key=f"{target}{SUMMARY_FILE}",
        Body=orjson.dumps(result.summary(model_name), option=orjson.OPT_INDENT_2),
        ContentType="application/json",
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlstack_service.label_join", description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", required=True, help="the model whose predictions are joined")
    parser.add_argument("--predictions", required=True, help="s3://bucket/prefix/ of the prediction log")
    parser.add_argument("--feedback", required=True, help="s3://bucket/prefix/ of the stored labels")
    parser.add_argument("--output", required=True, help="s3://bucket/prefix/: <model>/dataset/ and <model>/summary")
    args = parser.parse_args(argv)
    uris = (("--predictions", args.predictions), ("--feedback", args.feedback), ("--output", args.output))
    # file:///folder/prefix/ (all three): the dev host's join, on files the host copied from the bucket, offline.
    local = all(uri.startswith("file:///") for _, uri in uris)
    for flag, uri in uris:
        if not (uri.startswith("file:///") if local else uri.startswith("s3://")) or not uri.endswith("/"):
            print(  # noqa: T201
                f"error: {flag} {uri!r} must be an s3://bucket/prefix/ ending in / (or all three file:///folder/prefix/)",
                file=sys.stderr,
            )
            return EXIT_FAILED
    try:
        result = join(
            LocalObjects(Path("/")) if local else boto3.client("s3"),
            model_name=args.model_name,
            predictions_uri=args.predictions,
            feedback_uri=args.feedback,
            output_uri=args.output,
        )
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        print(f"error: S3 refused a request of the label join: {code}", file=sys.stderr)  # noqa: T201
        return EXIT_FAILED
    except (BotoCoreError, orjson.JSONDecodeError, OSError) as error:
        print(f"error: the label join failed: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_FAILED
    summary = result.summary(args.model_name)
    out = io.StringIO()
    out.write(
        f"joined {result.joined_predictions} of {result.labels} labels to {result.logged_predictions} logged "
        f"predictions; {summary['unjoined_labels']} found no logged prediction, {result.rejected_labels} rejected; "
        f"dataset: {result.dataset_rows} rows"
    )
    if result.rows_without_features:
        out.write(f" ({result.rows_without_features} labelled rows were logged without features)")
    for version, performance in summary["versions"].items():
        out.write(f"\n  {version}: accuracy {performance['accuracy']:.4f} over {performance['labelled_rows']} rows")
    print(out.getvalue())  # noqa: T201 (a command's result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
