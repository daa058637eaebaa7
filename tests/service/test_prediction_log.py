"""The prediction log, the shared feedback store and the label join, against a moto S3 server."""

import gzip
import logging
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from mlstack_service.feedback_store import FeedbackStore, FeedbackStoreUnavailableError
from mlstack_service.label_join import join
from mlstack_service.label_join import main as label_join_main
from mlstack_service.local_objects import LocalObjects
from mlstack_service.prediction_ids import PredictionIdKeyError, PredictionIds, load_key
from mlstack_service.prediction_log import PredictionLog
from mlstack_service.realized import RealizedPerformance
from mlstack_service.synthetic import FEATURE_NAMES, generate_applications
from tests.service.conftest import MotoS3, wait_for

LOGGER = logging.getLogger("test")


@pytest.fixture
def bucket(moto_s3: MotoS3) -> tuple[Any, str]:
    """A bucket of this test's own on the shared moto server."""
    client = moto_s3.client()
    name = f"labels-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return client, name


def _log(client: Any, bucket: str, **options: Any) -> PredictionLog:
    settings: dict[str, Any] = {
        "model_name": "loan-approval",
        "model_version": "1.0.0",
        "feature_names": FEATURE_NAMES,
        "instance": "0123456789ab",
        "logger": LOGGER,
        "flush_seconds": 3600.0,
        "max_rows_per_second": 1e9,
    }
    return PredictionLog(client, bucket, "predictions/", **(settings | options))


def _prediction(rows: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    features, _ = generate_applications(rows, seed)
    positive = np.linspace(0.1, 0.9, rows, dtype=np.float32)
    return features.astype(np.float32), np.column_stack([1 - positive, positive]).astype(np.float32)


def _objects(client: Any, bucket: str, prefix: str = "predictions/") -> list[str]:
    return [entry["Key"] for entry in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def _records(client: Any, bucket: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for key in sorted(_objects(client, bucket)):
        body = gzip.decompress(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        records.extend(orjson.loads(line) for line in body.splitlines())
    return records


def test_full_batches_are_written_at_once_and_the_rest_on_close(bucket: tuple[Any, str]) -> None:
    client, name = bucket
    log = _log(client, name, batch_rows=4)
    log.start()
    rows, probabilities = _prediction(1)
    for number in range(9):
        log.offer(f"id-{number}", rows, probabilities)
    wait_for(lambda: len(_objects(client, name)) == 2, 10, "two full batches of 4 rows")
    assert log.counters.rows["logged"] == 8
    log.close(timeout=10)
    keys = _objects(client, name)
    assert len(keys) == 3, "close writes the partial batch"
    assert all(key.startswith("predictions/loan-approval/") and "-0123456789ab-" in key for key in keys)
    records = _records(client, name)
    assert [record["id"] for record in records] == [f"id-{number}" for number in range(9)]
    first = records[0]
    assert first["model_version"] == "1.0.0"
    assert first["feature_names"] == FEATURE_NAMES
    assert np.allclose(first["features"], rows)
    assert np.allclose(first["scores"], probabilities, atol=1e-6)


def test_a_partial_batch_is_written_after_the_flush_interval(bucket: tuple[Any, str]) -> None:
    client, name = bucket
    log = _log(client, name, batch_rows=1000, flush_seconds=0.2)
    log.start()
    log.offer("only", *_prediction(3))
    wait_for(lambda: len(_objects(client, name)) == 1, 10, "the interval's flush")
    assert log.counters.rows["logged"] == 3
    log.close(timeout=10)


def test_memory_is_bounded_and_what_does_not_fit_is_counted(bucket: tuple[Any, str]) -> None:
    client, name = bucket
    log = _log(client, name, batch_rows=100, max_buffered_rows=5)
    for number in range(4):
        log.offer(f"id-{number}", *_prediction(2))
    assert log.held_rows == 4
    assert log.counters.rows["dropped_buffer"] == 4, "two 2-row predictions did not fit under 5 rows"
    log.flush()
    assert log.held_rows == 0
    log.offer("after", *_prediction(2))
    assert log.held_rows == 2, "a written batch frees its rows"


def test_the_rate_is_bounded_by_a_token_bucket() -> None:
    now = [100.0]
    log = PredictionLog(
        None,
        "unused",
        "predictions/",
        model_name="m",
        model_version="1",
        feature_names=FEATURE_NAMES,
        instance="0123456789ab",
        logger=LOGGER,
        max_rows_per_second=10,
        clock=lambda: now[0],
    )
    log.offer("a", *_prediction(10))
    log.offer("b", *_prediction(1))
    assert log.counters.rows["dropped_rate"] == 1
    now[0] += 0.5
    log.offer("c", *_prediction(5))
    log.offer("d", *_prediction(1))
    assert log.held_rows == 15
    assert log.counters.rows["dropped_rate"] == 2


def test_sampling_keeps_the_share_drawn() -> None:
    draws = iter([0.05, 0.5, 0.09, 0.99])
    log = PredictionLog(
        None,
        "unused",
        "predictions/",
        model_name="m",
        model_version="1",
        feature_names=FEATURE_NAMES,
        instance="0123456789ab",
        logger=LOGGER,
        sample_rate=0.1,
        draw=lambda: next(draws),
    )
    for number in range(4):
        log.offer(f"id-{number}", *_prediction(1))
    assert log.held_rows == 2
    assert log.counters.rows["sampled_out"] == 2


def test_an_s3_failure_is_counted_and_the_log_goes_on(moto_s3: MotoS3) -> None:
    client = moto_s3.client()
    name = f"missing-{uuid.uuid4().hex[:12]}"
    log = _log(client, name, batch_rows=2)
    log.offer("lost", *_prediction(2))
    log.flush()  # the bucket does not exist: NoSuchBucket
    assert log.counters.rows["failed"] == 2
    assert log.held_rows == 0, "a failed batch frees its memory"
    client.create_bucket(Bucket=name)
    log.offer("kept", *_prediction(2))
    log.flush()
    assert log.counters.rows["logged"] == 2
    assert [record["id"] for record in _records(client, name)] == ["kept"]


def test_without_payloads_no_features_are_stored(bucket: tuple[Any, str]) -> None:
    client, name = bucket
    log = _log(client, name, include_features=False)
    log.offer("private", *_prediction(2))
    log.flush()
    (record,) = _records(client, name)
    assert "features" not in record
    assert "feature_names" not in record
    assert len(record["scores"]) == 2


def test_ids_are_unique_across_processes_and_verified_by_any_holder_of_the_key(tmp_path: Any) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("k" * 40 + "\n")
    key = load_key(key_file)
    first, second = PredictionIds(key), PredictionIds(key)
    issued_first = {first.issue()[0] for _ in range(100)}
    issued_second = {second.issue()[0] for _ in range(100)}
    assert not issued_first & issued_second, "the same sequence on two replicas gives two ids"
    one = next(iter(issued_first))
    assert second.verify(one), "a replica with the shared key accepts another's id"
    assert second.sequence_of(one) is None, "but does not look for it in its own memory"
    assert first.sequence_of(one) is not None
    assert not PredictionIds().verify(one), "another key refuses it"
    tampered = one[:-1] + ("0" if one[-1] != "0" else "1")
    assert not second.verify(tampered)
    (tmp_path / "short").write_text("short")
    with pytest.raises(PredictionIdKeyError, match="at least 32"):
        load_key(tmp_path / "short")


def test_the_first_label_wins_and_a_failed_write_is_not_acknowledged(moto_s3: MotoS3) -> None:
    client = moto_s3.client()
    name = f"labels-{uuid.uuid4().hex[:12]}"
    store = FeedbackStore(client, name, "feedback/")
    with pytest.raises(FeedbackStoreUnavailableError, match="was not stored"):
        store.record("some-id", [1])
    client.create_bucket(Bucket=name)
    results: list[bool] = []
    racers = [
        threading.Thread(target=lambda labels=labels: results.append(store.record("id-1", labels)))
        for labels in ([0], [1])
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sorted(results) == [False, True], "two racing replicas: exactly one label is stored"
    stored = orjson.loads(client.get_object(Bucket=name, Key="feedback/id-1.json")["Body"].read())
    assert store.record("id-1", [1 - stored["labels"][0]]) is False
    again = orjson.loads(client.get_object(Bucket=name, Key="feedback/id-1.json")["Body"].read())
    assert again["labels"] == stored["labels"], "a later label never replaces the first"
    assert store.outcomes == {"recorded": 1, "duplicate": 2, "failed": 1}


def test_the_join_writes_the_labelled_rows_and_realized_performance(bucket: tuple[Any, str]) -> None:
    client, name = bucket
    log = _log(client, name)
    store = FeedbackStore(client, name, "feedback/")
    rows, probabilities = _prediction(3)  # positive scores 0.1, 0.5, 0.9: predicted classes 0, 1, 1
    log.offer("a", rows, probabilities)
    log.offer("b", *_prediction(2, seed=2))
    log.offer("c", *_prediction(1, seed=3))
    log.flush()
    store.record("a", [0, 0, 1])  # two of three right
    store.record("b", [1])  # the wrong row count: rejected
    store.record("unlogged", [1])  # a prediction the log did not sample
    result = join(
        client,
        model_name="loan-approval",
        predictions_uri=f"s3://{name}/predictions/",
        feedback_uri=f"s3://{name}/feedback/",
        output_uri=f"s3://{name}/labelled/",
    )
    assert (result.labels, result.logged_predictions, result.joined_predictions, result.rejected_labels) == (3, 3, 1, 1)
    dataset = client.get_object(Bucket=name, Key="labelled/loan-approval/dataset/labelled.csv")["Body"].read()
    lines = dataset.decode().splitlines()
    header = lines[0].split(",")
    assert header[4 : 4 + len(FEATURE_NAMES)] == FEATURE_NAMES
    assert header[-1] == "label"
    assert [line.split(",")[-1] for line in lines[1:]] == ["0", "0", "1"]
    assert np.allclose([[float(v) for v in line.split(",")[4:16]] for line in lines[1:]], rows, rtol=1e-6)
    summary = orjson.loads(client.get_object(Bucket=name, Key="labelled/loan-approval/summary.json")["Body"].read())
    assert summary["unjoined_labels"] == 1
    assert summary["versions"]["1.0.0"]["labelled_rows"] == 3
    assert summary["versions"]["1.0.0"]["accuracy"] == pytest.approx(2 / 3)
    realized = RealizedPerformance(client, name, "labelled/loan-approval/summary.json", "1.0.0")
    realized.refresh()
    assert realized.accuracy == pytest.approx(2 / 3)
    assert realized.labelled_rows == 3


def test_the_join_without_features_measures_but_writes_no_dataset(bucket: tuple[Any, str]) -> None:
    client, name = bucket
    log = _log(client, name, include_features=False)
    log.offer("a", *_prediction(2))
    log.flush()
    FeedbackStore(client, name, "feedback/").record("a", [0, 1])
    result = join(
        client,
        model_name="loan-approval",
        predictions_uri=f"s3://{name}/predictions/",
        feedback_uri=f"s3://{name}/feedback/",
        output_uri=f"s3://{name}/labelled/",
    )
    assert result.joined_predictions == 1
    assert result.rows_without_features == 2
    assert result.dataset_uri is None
    assert _objects(client, name, "labelled/loan-approval/dataset/") == []
    assert result.versions["1.0.0"].rows == 2


def test_a_host_folder_keeps_the_first_label_and_the_log(tmp_path: Path) -> None:
    """file:// stores (the dev host): the same write-once rule as S3, through the same classes."""
    folder = LocalObjects(tmp_path)
    store = FeedbackStore(folder, "labels", "feedback/")
    assert store.record("id-1", [1]) is True
    assert store.record("id-1", [0]) is False
    assert orjson.loads((tmp_path / "labels/feedback/id-1.json").read_bytes())["labels"] == [1]
    log = _log(folder, "labels")
    log.offer("a", *_prediction(2))
    log.flush()
    (written,) = (tmp_path / "labels/predictions").rglob("*.jsonl.gz")
    assert orjson.loads(gzip.decompress(written.read_bytes()))["id"] == "a"
    realized = RealizedPerformance(folder, "labels", "labelled/summary.json", "1.0.0")
    realized.refresh()  # no summary yet: nothing exported, nothing counted as a failure
    assert realized.read_failures == 0


def test_the_join_runs_offline_on_folders_as_the_dev_host_runs_it(tmp_path: Path) -> None:
    """The dev host copies the bucket's log and labels into a folder and joins there with no network (file://)."""
    folder = LocalObjects(tmp_path)
    log = _log(folder, "join")
    rows, probabilities = _prediction(3)  # predicted classes 0, 1, 1
    log.offer("a", rows, probabilities)
    log.flush()
    FeedbackStore(folder, "join", "feedback/").record("a", [0, 1, 0])
    root = f"file://{tmp_path}/join/"
    code = label_join_main(
        [
            "--model-name",
            "loan-approval",
            "--predictions",
            f"{root}predictions/",
            "--feedback",
            f"{root}feedback/",
            "--output",
            f"{root}labelled/",
        ]
    )
    assert code == 0
    dataset = (tmp_path / "join/labelled/loan-approval/dataset/labelled.csv").read_text().splitlines()
    assert [line.split(",")[-1] for line in dataset[1:]] == ["0", "1", "0"]
    summary = orjson.loads((tmp_path / "join/labelled/loan-approval/summary.json").read_bytes())
    assert summary["versions"]["1.0.0"]["accuracy"] == pytest.approx(2 / 3)
    # Mixed schemes are refused: the join reads and writes one kind of store.
    mixed = ["--model-name", "m", "--predictions", f"{root}p/", "--feedback", "s3://b/f/", "--output", f"{root}o/"]
    assert label_join_main(mixed) != 0
