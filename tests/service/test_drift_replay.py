"""Synthetic traffic replayed through a real server process: the verdicts on /metrics, per scenario.

One server, a window of 10,000 rows and the default false-alarm budget; each scenario arrives as one request, so a
refresh sees either the previous window or the new one, never a mixture.
"""

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlstack_service.synthetic import FEATURE_NAMES, generate_applications
from tests.service.conftest import ServerProcess, predictions_in_process, start_server, wait_for

WINDOW = 10_000
Shift = Callable[[np.ndarray], np.ndarray]


def _family(server: ServerProcess, name: str, key: str = "feature") -> dict[str, float]:
    values = {}
    for family in text_string_to_metric_families(server.metrics_text()):
        for sample in family.samples:
            if sample.name == name:
                values[sample.labels.get(key, "")] = float(sample.value)
    return values


def _send(server: ServerProcess, rows: np.ndarray) -> None:
    body = {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32", "data": rows.tolist()}]}
    response = server.client.post("/v2/models/loan-approval/infer", json=body)
    assert response.status_code == 200, response.text


def _verdicts(server: ServerProcess) -> tuple[set[str], bool]:
    features = {name for name, value in _family(server, "mlstack_feature_drift_detected").items() if value == 1}
    return features, _family(server, "mlstack_prediction_drift_detected")[""] == 1


@pytest.fixture(scope="module")
def replay_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(
        tmp_path_factory.mktemp("replay"),
        drift_window=str(WINDOW),
        drift_min_samples="20",
        drift_refresh_seconds="0.05",
        drift_source_share="1",  # one client replays everything: these tests are about the statistics
        max_rows=str(WINDOW),
        max_body_bytes=str(16 << 20),
    )
    yield server
    server.stop()


def test_no_drift_raises_no_verdict_at_20_100_and_10000_rows(replay_server: ServerProcess) -> None:
    live, _ = generate_applications(WINDOW, seed=777)
    sent = 0
    for rows in (20, 100, 10_000):
        _send(replay_server, live[sent:rows])
        sent = rows
        wait_for(lambda rows=rows: _family(replay_server, "mlstack_drift_window_rows").get("") == rows, 10, "a refresh")
        assert _verdicts(replay_server) == (set(), False), rows
        # The verdicts were judged: every statistic is exported, and each stayed below its critical value.
        statistics = _family(replay_server, "mlstack_feature_drift_statistic")
        critical = _family(replay_server, "mlstack_feature_drift_critical_value")
        assert set(statistics) == set(FEATURE_NAMES)
        assert all(statistics[name] < critical[name] for name in FEATURE_NAMES), (rows, statistics)
    assert _family(replay_server, "mlstack_drift_rows_total")[""] == WINDOW


def _shifted(feature: str, shift: Shift, seed: int) -> np.ndarray:
    rows, _ = generate_applications(WINDOW, seed=seed)
    index = FEATURE_NAMES.index(feature)
    rows[:, index] = shift(rows[:, index])
    return rows


SCENARIOS: list[Any] = [
    # (what, feature, shift, decisions flagged)
    ("60-month loans become 72-month", "loan_term_months", lambda c: np.where(c == 60, 72, c), False),
    (
        "each delinquent applicant has 3 more delinquencies",
        "delinquencies_2y",
        lambda c: np.where(c > 0, c + 3, c),
        True,
    ),
    ("every applicant is 6 years older", "age", lambda c: c + 6, False),
]


@pytest.mark.parametrize(("what", "feature", "shift", "decisions"), SCENARIOS, ids=[s[1] for s in SCENARIOS])
def test_a_shift_is_flagged_naming_its_feature_and_decisions_only_when_they_move(
    replay_server: ServerProcess, what: str, feature: str, shift: Shift, decisions: bool
) -> None:
    _send(replay_server, _shifted(feature, shift, seed=len(what)))
    wait_for(lambda: _verdicts(replay_server) == ({feature}, decisions), 10, f"the verdicts for: {what}")
    p_values = _family(replay_server, "mlstack_feature_drift_p_value")
    assert min(p_values, key=lambda name: p_values[name]) == feature
    approval = _family(replay_server, "mlstack_prediction_drift_statistic", "test")["approval_rate"]
    critical = _family(replay_server, "mlstack_prediction_drift_critical_value", "test")["approval_rate"]
    assert (approval >= critical) is decisions, (what, approval, critical)


def test_the_estimated_accuracy_is_exported_and_its_fall_flags_decisions(
    replay_server: ServerProcess,
) -> None:
    calm, _ = generate_applications(WINDOW, seed=31)
    _send(replay_server, calm)
    wait_for(lambda: _verdicts(replay_server) == (set(), False), 10, "a calm window")
    reference = _family(replay_server, "mlstack_drift_reference_estimated_accuracy")[""]
    assert _family(replay_server, "mlstack_estimated_accuracy")[""] == pytest.approx(reference, abs=0.01)
    # Applicants the model finds hard to call (scores between 0.35 and 0.65), in the proportions the model
    # approves them at in training: the approval rate may hold, but CBPE expects about 55% accuracy.
    pool, _ = generate_applications(8 * WINDOW, seed=32)
    _, probabilities = predictions_in_process(pool)
    ambiguous = pool[np.abs(probabilities[:, 1] - 0.5) < 0.15][:WINDOW]
    _send(replay_server, ambiguous)
    wait_for(lambda: _verdicts(replay_server)[1], 10, "decisions flagged")
    estimated = _family(replay_server, "mlstack_estimated_accuracy")[""]
    assert estimated < reference - 0.1
    assert (
        _family(replay_server, "mlstack_prediction_drift_statistic", "test")["estimated_accuracy"]
        >= (_family(replay_server, "mlstack_prediction_drift_critical_value", "test")["estimated_accuracy"])
    )
