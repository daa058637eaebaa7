"""Labels posted to a second server process are joined: two real servers sharing one (moto) S3 and one id key."""

import csv
import io
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.service.conftest import MotoS3, ServerProcess, infer_body, start_server, wait_for

FEEDBACK = "/v2/models/loan-approval/feedback"
INFER = "/v2/models/loan-approval/infer"


def _settings(bucket: str, key_file: Path, **extra: str) -> dict[str, str]:
    return {
        "prediction_id_key_file": str(key_file),
        "prediction_log_uri": f"s3://{bucket}/predictions/",
        "prediction_log_batch_rows": "1000",
        "prediction_log_flush_seconds": "3600",  # only SIGTERM's drain writes the log: the test decides when
        "feedback_uri": f"s3://{bucket}/feedback/",
        "realized_summary_uri": f"s3://{bucket}/labelled/loan-approval/summary.json",
        "realized_refresh_seconds": "0.2",
        **extra,
    }


def _join(moto_s3: MotoS3, bucket: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mlstack_service.label_join",
            "--model-name",
            "loan-approval",
            "--predictions",
            f"s3://{bucket}/predictions/",
            "--feedback",
            f"s3://{bucket}/feedback/",
            "--output",
            f"s3://{bucket}/labelled/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **moto_s3.env},
    )


def _dataset(client: Any, bucket: str) -> list[dict[str, str]]:
    body = client.get_object(Bucket=bucket, Key="labelled/loan-approval/dataset/labelled.csv")["Body"].read()
    return list(csv.DictReader(io.StringIO(body.decode())))


def _predict(server: ServerProcess, rows: int, seed: int) -> str:
    answer = server.client.post(INFER, json=infer_body(rows, seed=seed))
    assert answer.status_code == 200, answer.text
    prediction_id: str = answer.headers["x-prediction-id"]
    return prediction_id


def _label(server: ServerProcess, prediction_id: str, labels: list[int]) -> Any:
    return server.internal.post(FEEDBACK, json={"id": prediction_id, "labels": labels})


def test_labels_posted_to_a_second_server_process_are_joined(tmp_path: Path, moto_s3: MotoS3) -> None:
    client = moto_s3.client()
    bucket = f"shared-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    key_file = tmp_path / "prediction-id-key"
    key_file.write_text(uuid.uuid4().hex + uuid.uuid4().hex)
    settings = _settings(bucket, key_file)
    serving = start_server(tmp_path, None, True, moto_s3.env, **settings)
    labelling = start_server(tmp_path, None, True, moto_s3.env, **settings)
    try:
        two_rows = _predict(serving, 2, seed=11)
        three_rows = _predict(serving, 3, seed=12)
        unlabelled = _predict(serving, 1, seed=13)
        later = _predict(serving, 1, seed=14)
        assert len({two_rows, three_rows, unlabelled, later}) == 4

        # Process B never saw these predictions: it verifies A's ids by the shared key and stores the labels.
        assert _label(labelling, two_rows, [0, 1]).json() == {"id": two_rows, "recorded": True}
        assert _label(labelling, three_rows, [1, 1, 0]).json() == {"id": three_rows, "recorded": True}
        again = _label(labelling, two_rows, [1, 1])
        assert again.json() == {"id": two_rows, "recorded": False}, "the first label for an id wins"
        forged = _label(labelling, f"{two_rows[:-4]}0000", [0, 1])
        assert forged.status_code == 404, "a guessed id is still refused"
        assert _label(labelling, two_rows, [0, 2]).status_code == 400

        assert serving.stop() == 0  # SIGTERM: the drain writes A's prediction log
        # A restart of B loses no acknowledged label, and the new process accepts A's ids too.
        assert labelling.stop() == 0
        labelling = start_server(tmp_path, None, True, moto_s3.env, **settings)
        assert _label(labelling, later, [1]).json() == {"id": later, "recorded": True}

        joined = _join(moto_s3, bucket)
        assert joined.returncode == 0, joined.stderr
        rows = _dataset(client, bucket)
        by_prediction: dict[str, list[str]] = {}
        for row in rows:
            by_prediction.setdefault(row["prediction_id"], []).append(row["label"])
        assert by_prediction == {two_rows: ["0", "1"], three_rows: ["1", "1", "0"], later: ["1"]}
        assert all(row["model_version"] == "1.0.0" and row["credit_score"] for row in rows)

        wait_for(
            lambda: _sample(labelling, "mlstack_realized_labelled_rows") == 6.0,
            10,
            "process B to re-export the join's realized accuracy over the 6 labelled rows",
        )
        accuracy = _sample(labelling, "mlstack_realized_accuracy")
        assert accuracy is not None
        assert 0.0 <= accuracy <= 1.0
        assert _sample(labelling, "mlstack_feedback_store_writes_total", 'outcome="recorded"') == 1.0
    finally:
        for process in (serving, labelling):
            if process is not None:
                process.stop()


def _sample(server: ServerProcess, name: str, label: str = "") -> float | None:
    """The value of the metric's sample (whose labels include `label`), None when not exported."""
    for line in server.metrics_text().splitlines():
        if line.startswith(name + "{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    return None
