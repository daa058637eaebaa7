"""Drift in the running service: data drift per feature, prediction drift, and accuracy from fed-back labels."""

import math
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from mlstack_service.drift import DriftMonitor, DriftTracking, FeedbackTracker, RingBuffer, UnknownPredictionError
from mlstack_service.errors import BadRequestError
from mlstack_service.package import FeatureProfile, PredictionProfile, ReferenceProfile, load_package
from mlstack_service.prediction_ids import PredictionIds
from mlstack_service.settings import Settings
from mlstack_service.synthetic import FEATURE_NAMES, generate_applications
from tests.service.conftest import ServerProcess, start_server, wait_for
from tests.service.models import EXAMPLE_PACKAGE

WINDOW = 2_000
THRESHOLD = 0.2
SHIFTED = ("credit_score", "debt_to_income")


def _body(rows: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32", "data": rows.tolist()}]}


def _samples(server: ServerProcess, name: str) -> dict[str, float]:
    """label (feature or class) -> value, for one drift family."""
    values = {}
    for family in text_string_to_metric_families(server.metrics_text()):
        for sample in family.samples:
            if sample.name == name:
                key = sample.labels.get("feature") or sample.labels.get("class_name") or ""
                values[key] = float(sample.value)
    return values


def _send(server: ServerProcess, rows: np.ndarray, batch: int = 200) -> list[str]:
    ids = []
    for start in range(0, len(rows), batch):
        response = server.client.post("/v2/models/loan-approval/infer", json=_body(rows[start : start + batch]))
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    return ids


@pytest.fixture(scope="module")
def drift_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = start_server(
        tmp_path_factory.mktemp("drift"),
        drift_window=str(WINDOW),
        drift_refresh_seconds="0.1",
        drift_psi_threshold=str(THRESHOLD),
        feedback_window="400",
        drift_source_share="1",  # one client may fill the window: these tests are about the statistics
    )
    yield server
    server.stop()


def _window_holds(server: ServerProcess, marker_psi: dict[str, float] | None = None) -> None:
    """Wait until a refresh has seen a full window (and, when given, the PSI has moved from `marker_psi`)."""

    def refreshed() -> bool:
        fill = _samples(server, "mlstack_drift_window_fill").get("", 0.0)
        return fill >= 1.0 and (marker_psi is None or _samples(server, "mlstack_feature_drift_psi") != marker_psi)

    wait_for(refreshed, 30, "a drift refresh over a full window")


def test_training_like_traffic_stays_under_the_threshold_and_two_shifted_features_cross_it(
    drift_server: ServerProcess,
) -> None:
    live, _ = generate_applications(WINDOW, seed=4242)
    _send(drift_server, live)
    _window_holds(drift_server)
    wait_for(lambda: max(_samples(drift_server, "mlstack_feature_drift_psi").values()) > 0, 10, "a refresh")
    calm = _samples(drift_server, "mlstack_feature_drift_psi")
    assert set(calm) == set(FEATURE_NAMES)
    assert max(calm.values()) < THRESHOLD, calm
    assert _samples(drift_server, "mlstack_drift_psi_threshold")[""] == THRESHOLD

    shifted, _ = generate_applications(WINDOW, seed=4343)
    index = {name: FEATURE_NAMES.index(name) for name in SHIFTED}
    shifted[:, index["credit_score"]] -= 120
    shifted[:, index["debt_to_income"]] = np.clip(shifted[:, index["debt_to_income"]] * 1.8, 0, 0.8)
    _send(drift_server, shifted)
    _window_holds(drift_server, calm)
    wait_for(
        lambda: (
            {f for f, v in _samples(drift_server, "mlstack_feature_drift_psi").items() if v > THRESHOLD} == set(SHIFTED)
        ),
        15,
        "exactly the shifted features to cross the threshold",
    )
    ks = _samples(drift_server, "mlstack_feature_drift_ks")
    assert all(ks[name] > ks["age"] for name in SHIFTED)
    # Worse applicants: the model approves fewer, and the prediction distribution drifts with them.
    assert _samples(drift_server, "mlstack_prediction_drift_psi")[""] > THRESHOLD
    calm_share = _approved_share(drift_server, live)
    shifted_share = _approved_share(drift_server, shifted)
    served = _samples(drift_server, "mlstack_predicted_class_share")
    assert served["approved"] == pytest.approx(shifted_share, abs=1e-6)
    assert served["rejected"] == pytest.approx(1 - shifted_share, abs=1e-6)
    assert shifted_share < calm_share - 0.1


def _approved_share(server: ServerProcess, rows: np.ndarray) -> float:
    """The share of rows the model approves, from the model itself (the window holds exactly these rows)."""
    session = ort.InferenceSession(str(EXAMPLE_PACKAGE / "model.onnx"), providers=["CPUExecutionProvider"])
    (scores,) = [output for output in session.run(None, {"input": rows.astype(np.float32)}) if output.ndim == 2]
    return float(np.mean(scores[:, 1] >= 0.5))


def test_contradicting_labels_drop_the_rolling_accuracy(drift_server: ServerProcess) -> None:
    rows, _ = generate_applications(200, seed=77)
    response = drift_server.client.post("/v2/models/loan-approval/infer", json=_body(rows))
    predicted = response.json()["outputs"][0]["data"]
    wrong = [1 - label for label in predicted]
    first = drift_server.internal.post(
        "/v2/models/loan-approval/feedback", json={"id": response.json()["id"], "labels": wrong}
    )
    assert first.json() == {"id": response.json()["id"], "recorded": True}
    assert _samples(drift_server, "mlstack_rolling_accuracy")[""] == 0.0
    again = drift_server.internal.post(
        "/v2/models/loan-approval/feedback", json={"id": response.json()["id"], "labels": wrong}
    )
    assert again.status_code == 200
    assert again.json()["recorded"] is False  # idempotent: counted once
    assert _samples(drift_server, "mlstack_feedback_labelled_rows")[""] == 200

    other = drift_server.client.post("/v2/models/loan-approval/infer", json=_body(rows))
    right = other.json()["outputs"][0]["data"]
    drift_server.internal.post("/v2/models/loan-approval/feedback", json={"id": other.json()["id"], "labels": right})
    assert _samples(drift_server, "mlstack_rolling_accuracy")[""] == pytest.approx(0.5)
    # Log loss over the 400 labelled rows, from the probabilities the service returned for them.
    (probabilities,) = [o["data"] for o in response.json()["outputs"] if o["name"] == "probabilities"]
    approved = np.asarray(probabilities, dtype=np.float64).reshape(-1, 2)[:, 1]
    labels = np.asarray(wrong + right, dtype=np.float64)
    scores = np.clip(np.concatenate([approved, approved]), 1e-7, 1 - 1e-7)
    expected = float(np.mean(-(labels * np.log(scores) + (1 - labels) * np.log(1 - scores))))
    assert _samples(drift_server, "mlstack_rolling_log_loss")[""] == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"id": "never-issued", "labels": [1]}, 404, "unknown or expired"),
        ({"labels": [1]}, 400, "the infer response's 'id'"),
        (["x"], 400, "the infer response's 'id'"),
    ],
)
def test_feedback_mistakes_get_a_4xx(drift_server: ServerProcess, body: Any, status: int, message: str) -> None:
    response = drift_server.internal.post("/v2/models/loan-approval/feedback", json=body)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_feedback_with_the_wrong_number_of_labels_is_a_400(drift_server: ServerProcess) -> None:
    rows, _ = generate_applications(3, seed=1)
    prediction_id = drift_server.client.post("/v2/models/loan-approval/infer", json=_body(rows)).json()["id"]
    response = drift_server.internal.post(
        "/v2/models/loan-approval/feedback", json={"id": prediction_id, "labels": [1]}
    )
    assert response.status_code == 400
    assert "a list of 3 class indices" in response.json()["error"]


def test_feedback_labels_must_be_class_indices_not_booleans(drift_server: ServerProcess) -> None:
    rows, _ = generate_applications(2, seed=2)
    prediction_id = drift_server.client.post("/v2/models/loan-approval/infer", json=_body(rows)).json()["id"]
    response = drift_server.internal.post(
        "/v2/models/loan-approval/feedback", json={"id": prediction_id, "labels": [True, 0]}
    )
    assert response.status_code == 400
    assert "a list of 2 class indices (0 or 1)" in response.json()["error"]
    accepted = drift_server.internal.post(
        "/v2/models/loan-approval/feedback", json={"id": prediction_id, "labels": [1, 0]}
    )
    assert accepted.json()["recorded"] is True


def test_drift_state_is_bounded_by_the_window_after_200000_requests() -> None:
    package = load_package(str(EXAMPLE_PACKAGE), EXAMPLE_PACKAGE)
    monitor = DriftMonitor(package.profile, FEATURE_NAMES, ["rejected", "approved"], window=1_000)
    rows, _ = generate_applications(64, seed=3)
    scores = np.full(64, 0.5, dtype=np.float32)
    feedback = FeedbackTracker(max_pending=500, ttl_seconds=3600, window=100, max_pending_rows=5_000)
    tracking = DriftTracking(monitor, feedback, flush_every=256)
    probabilities = np.column_stack([1 - scores, scores])
    for request in range(2_000):  # warm up: every buffer and slot has been written once
        tracking.observe(rows[: 1 + request % 64], probabilities[: 1 + request % 64], f"s-{request:x}", request)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for request in range(2_000, 200_000):
            count = 1 + request % 64
            tracking.observe(rows[:count], probabilities[:count], f"s-{request:x}", request)
            assert tracking.buffered < 256
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 198,000 requests of up to 64 rows each: one byte kept per request would be 198 KB.
    assert after - before < 64 * 1024
    assert feedback.pending == 500
    assert monitor.refresh().window_fill == 1.0


def test_pending_feedback_is_bounded_and_expires() -> None:
    tracker = FeedbackTracker(max_pending=100, ttl_seconds=3600, window=10)
    for request in range(1_000):
        tracker.remember(f"id-{request}", np.array([0.9], dtype=np.float32))
    assert tracker.pending == 100
    with pytest.raises(UnknownPredictionError):
        tracker.record("id-0", [1])  # evicted long ago
    assert tracker.record("id-999", [1]) is True
    assert tracker.record("id-999", [1]) is False  # idempotent


def test_pending_feedback_is_bounded_by_rows_and_a_reused_id_takes_the_newest_prediction() -> None:
    tracker = FeedbackTracker(max_pending=100, ttl_seconds=3600, window=10, max_pending_rows=10)
    tracker.remember("first", np.array([0.9, 0.8, 0.7, 0.6], dtype=np.float32))
    tracker.remember("second", np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32))
    tracker.remember("third", np.array([0.9, 0.9, 0.9, 0.9], dtype=np.float32))  # wraps over "first"
    assert tracker.size_bytes() == 10 * 4 + 8 * 5 * 100  # the score ring and five 8-byte slot arrays
    with pytest.raises(UnknownPredictionError):
        tracker.record("first", [1, 1, 1, 1])
    tracker.record("third", [1, 1, 1, 0])  # read back across the ring's end
    assert tracker.accuracy() == 0.75
    tracker.remember("second", np.array([0.9], dtype=np.float32))
    with pytest.raises(BadRequestError, match="a list of 1 class"):
        tracker.record("second", [0, 0, 0, 0])
    tracker.record("second", [1])
    assert tracker.accuracy() == 0.8
    assert tracker.pending == 0
    tracker.remember("too-big", np.full(11, 0.9, dtype=np.float32))  # more rows than the ring holds
    assert tracker.pending == 0
    with pytest.raises(UnknownPredictionError):
        tracker.record("too-big", [1] * 11)


def test_the_servers_own_ids_are_found_by_their_sequence_without_a_dict_entry_and_cannot_be_forged() -> None:
    ids = PredictionIds()
    tracker = FeedbackTracker(
        max_pending=4, ttl_seconds=3600, window=10, own_ids=ids.sequence_of, sequences=ids.sequences
    )
    issued = [ids.issue() for _ in range(6)]  # six predictions through four slots: the first two are overwritten
    for prediction_id, sequence in issued:
        tracker.remember(prediction_id, np.array([0.9], dtype=np.float32), sequence)
    assert tracker.pending == 4
    newest, sequence = issued[-1]
    digits, _, tag = newest.partition("-")
    forged = [
        f"{sequence:x}-{'0' * len(tag)}",  # the right sequence, a guessed tag
        f"{sequence - 1:x}-{tag}",  # a pending sequence under another's tag
        f"0{digits}-{tag}",  # another spelling of the same sequence
        newest.upper(),
        f"{digits}-{tag[:-2]}",
        newest + "0",
        "abc-6",
        f"{sequence:x}",
    ]
    for gone in [issued[0][0], issued[1][0], *forged]:
        with pytest.raises(UnknownPredictionError):
            tracker.record(gone, [1])
    assert tracker.pending == 4, "a refused id releases nothing"
    assert tracker.record(newest, [0]) is True
    assert tracker.record(newest, [0]) is False
    assert tracker.accuracy() == 0.0
    assert tracker.pending == 3
    other_process = PredictionIds()
    assert other_process.sequence_of(issued[2][0]) is None, "a restarted process refuses the old ids"


def test_tracking_batches_observations_and_flushes_before_anything_reads_them() -> None:
    package = load_package(str(EXAMPLE_PACKAGE), EXAMPLE_PACKAGE)
    monitor = DriftMonitor(package.profile, FEATURE_NAMES, ["rejected", "approved"], window=1_000)
    # Caller-chosen ids draw sequence numbers from the same counter as the server's own ids (the server shares it).
    ids = PredictionIds()
    feedback = FeedbackTracker(
        max_pending=100, ttl_seconds=3600, window=50, own_ids=ids.sequence_of, sequences=ids.sequences
    )
    tracking = DriftTracking(monitor, feedback, flush_every=8)
    rows, _ = generate_applications(3, seed=4)
    probabilities = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], dtype=np.float32)
    own = [ids.issue() for _ in range(5)]
    for prediction_id, sequence in own:
        tracking.observe(rows, probabilities, prediction_id, sequence)
    tracking.observe(rows[:1], probabilities[:1], "caller-chosen", None)
    assert tracking.buffered == 6
    assert feedback.pending == 0, "nothing reaches the tracker before a flush"
    assert tracking.record_feedback(own[2][0], [1, 0, 0]) is True  # flushes first
    assert tracking.buffered == 0
    assert feedback.accuracy() == pytest.approx(2 / 3)
    assert tracking.record_feedback("caller-chosen", [1]) is True
    assert tracking.refresh().window_fill == (5 * 3 + 1) / 1_000
    for _ in range(8):  # the eighth observation flushes by itself
        tracking.observe(rows, probabilities, *ids.issue())
    assert tracking.buffered == 0
    assert feedback.pending == 4 + 8


def test_pending_feedback_expires() -> None:
    expired = FeedbackTracker(max_pending=10, ttl_seconds=0.000001, window=10)
    expired.remember("old", np.array([0.2], dtype=np.float32))
    with pytest.raises(UnknownPredictionError):
        expired.record("old", [0])


def test_ring_buffer_keeps_the_newest_rows() -> None:
    ring = RingBuffer(capacity=5, width=1)
    for value in range(12):
        ring.extend(np.array([[value]], dtype=np.float32))
    assert sorted(ring.rows()[:, 0].tolist()) == [7, 8, 9, 10, 11]
    ring.extend(np.arange(20, 28, dtype=np.float32).reshape(-1, 1))
    assert sorted(ring.rows()[:, 0].tolist()) == [23, 24, 25, 26, 27]


def test_psi_and_ks_of_a_small_window_match_a_computation_by_hand() -> None:
    """Bins (-inf, 1], (1, 2], (2, inf) hold 50%, 25% and 25% of the training rows; the live window holds four rows.

    The profile is in format 1 (outer edges included, no kinds), as packages trained before format 2 are: it loads,
    its feature counts as continuous."""
    profile = ReferenceProfile(
        rows=4,
        features={"x": FeatureProfile(bin_edges=[0.0, 1.0, 2.0, 3.0], proportions=[0.5, 0.25, 0.25])},
        predictions=PredictionProfile(
            class_proportions={"no": 0.5, "yes": 0.5}, score_bin_edges=[0.0, 0.5, 1.0], score_proportions=[0.5, 0.5]
        ),
    )
    monitor = DriftMonitor(profile, ["x"], ["no", "yes"], window=4)
    live = np.array([[0.2], [1.1], [1.7], [2.9]], dtype=np.float32)  # 25%, 50%, 25% of the rows per bin
    monitor.record(live, np.array([0.1, 0.6, 0.7, 0.8], dtype=np.float32))
    state = monitor.refresh()
    assert monitor.kinds == {"x": "continuous"}
    # PSI = sum((live - train) * ln(live / train)) over the bins, each live count smoothed by half a row.
    live_shares = [1.5 / 5.5, 2.5 / 5.5, 1.5 / 5.5]
    expected_psi = sum((a - e) * math.log(a / e) for a, e in zip(live_shares, [0.5, 0.25, 0.25], strict=True))
    assert state.psi["x"] == pytest.approx(expected_psi)
    # CDFs at the edges 0, 1, 2, 3: training 0, .5, .75, 1; live 0, .25, .75, 1.
    assert state.ks["x"] == pytest.approx(0.25)
    # Scores: one below 0.5 and three above, against half and half (smoothed: 1.5 / 5 and 3.5 / 5).
    assert state.prediction_psi == pytest.approx((0.3 - 0.5) * math.log(0.6) + (0.7 - 0.5) * math.log(1.4))
    assert state.class_share == {"no": 0.25, "yes": 0.75}


def test_drift_is_exported_only_once_the_window_holds_the_minimum_sample(tmp_path: Path) -> None:
    """A dozen rows give a PSI of 6 or 7: no drift gauge may carry such a value, or the alert would retrain."""
    # One client sends every row here: no per-source cap on the window (drift_source_share 1).
    server = start_server(
        tmp_path, drift_window="400", drift_min_samples="300", drift_refresh_seconds="0.1", drift_source_share="1"
    )
    try:
        rows, _ = generate_applications(312, seed=8)
        _send(server, rows[:12])
        wait_for(lambda: _samples(server, "mlstack_drift_window_rows").get("") == 12, 10, "a refresh of 12 rows")
        assert _samples(server, "mlstack_drift_min_samples") == {"": 300}
        for gated in ("mlstack_feature_drift_psi", "mlstack_feature_drift_ks", "mlstack_prediction_drift_psi"):
            assert _samples(server, gated) == {}, gated
        assert _samples(server, "mlstack_predicted_class_share") == {}
        _send(server, rows[12:])
        wait_for(lambda: _samples(server, "mlstack_drift_window_rows").get("") == 312, 10, "a refresh of 312 rows")
        psi = _samples(server, "mlstack_feature_drift_psi")
        assert set(psi) == set(FEATURE_NAMES)
        assert max(psi.values()) < 1, psi  # training-like rows, enough of them: no phantom drift
    finally:
        server.stop()


def test_a_minimum_sample_larger_than_the_window_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"must be at most MLSTACK_DRIFT_WINDOW \(500\)"):
        Settings(drift_window=500, drift_min_samples=600)


def test_values_outside_the_declared_ranges_are_served_and_counted_per_feature(drift_server: ServerProcess) -> None:
    def counted() -> dict[str, float]:
        return _samples(drift_server, "mlstack_feature_out_of_range_total")

    before = counted()
    assert set(before) == set(FEATURE_NAMES)
    rows, _ = generate_applications(5, seed=9)
    rows[:, FEATURE_NAMES.index("age")] = [12, 17, 30, 90, 40]  # the package declares 18 to 85
    rows[0, FEATURE_NAMES.index("credit_score")] = 900  # declared 300 to 850
    response = drift_server.client.post("/v2/models/loan-approval/infer", json=_body(rows))
    assert response.status_code == 200, response.text
    after = counted()
    assert after["age"] == before["age"] + 3
    assert after["credit_score"] == before["credit_score"] + 1
    assert all(after[name] == before[name] for name in FEATURE_NAMES if name not in ("age", "credit_score"))


def test_the_window_share_outside_the_declared_ranges_is_computed_per_feature() -> None:
    profile = ReferenceProfile(
        rows=4,
        features={
            name: FeatureProfile(bin_edges=[0.0, 1.0, 2.0], proportions=[0.5, 0.5]) for name in ("inside", "wide")
        },
        predictions=PredictionProfile(
            class_proportions={"no": 0.5, "yes": 0.5}, score_bin_edges=[0.0, 0.5, 1.0], score_proportions=[0.5, 0.5]
        ),
    )
    monitor = DriftMonitor(profile, ["inside", "wide"], ["no", "yes"], window=4, ranges=[(0, 2), (-10, 10)])
    live = np.array([[-1, 0], [0.5, 11], [3, 1], [1, 1]], dtype=np.float32)
    monitor.record(live, np.array([0.1, 0.6, 0.7, 0.8], dtype=np.float32))
    assert monitor.out_of_range.tolist() == [2, 1]
    assert monitor.refresh().out_of_range_share == {"inside": 0.5, "wide": 0.25}
