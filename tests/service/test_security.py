"""Who can call what, against the real service: API keys, internal routes, unguessable prediction ids, rate limits,
and a drift window that one client's burst cannot fill."""

import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlstack_service.auth import MAX_TRACKED_SOURCES, RateLimiter
from mlstack_service.drift import SourceSampler
from mlstack_service.synthetic import FEATURE_NAMES, generate_applications
from tests.service.conftest import ServerProcess, infer_body, post_and_close, start_server, wait_for

INFER = "/v2/models/loan-approval/infer"
FEEDBACK = "/v2/models/loan-approval/feedback"
WINDOW = 2_000
THRESHOLD = 0.2
SHARE = 0.1  # each client may fill a tenth of the window per slice
SOURCES = [f"client-{index}" for index in range(10)]
KEYS = {name: secrets.token_hex(32) for name in [*SOURCES, "stranger", "labeller"]}


def _keys_file(path: Path, names: list[str]) -> Path:
    lines = [f"{name} {hashlib.sha256(KEYS[name].encode()).hexdigest()}" for name in names]
    path.write_text("# client  sha256(key)\n" + "\n".join(lines) + "\n")
    return path


def _as(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def _body(rows: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32", "data": rows.tolist()}]}


def _samples(server: ServerProcess, name: str) -> dict[str, float]:
    values = {}
    for family in text_string_to_metric_families(server.metrics_text()):
        for sample in family.samples:
            if sample.name == name:
                values[sample.labels.get("feature", "")] = float(sample.value)
    return values


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("guarded")
    server = start_server(
        work,
        api_keys_file=str(_keys_file(work / "api-keys", [*SOURCES, "stranger"])),
        feedback_keys_file=str(_keys_file(work / "feedback-keys", ["labeller"])),
        auth_required="true",
        drift_window=str(WINDOW),
        drift_source_share=str(SHARE),
        drift_slice_seconds="3600",  # the whole test runs in one slice
        drift_refresh_seconds="0.1",
        drift_psi_threshold=str(THRESHOLD),
    )
    yield server
    server.stop()
    log = server.log_path.read_text()
    assert not any(key in log for key in KEYS.values()), "no key reaches the log"


def test_a_request_without_a_valid_key_is_refused_and_health_stays_open(guarded: ServerProcess) -> None:
    missing = guarded.client.post(INFER, json=infer_body(1))
    assert missing.status_code == 401
    assert "needs an API key" in missing.json()["error"]
    assert missing.headers["www-authenticate"] == 'Bearer realm="mlstack"'
    wrong = guarded.client.post(INFER, json=infer_body(1), headers={"Authorization": f"Bearer {secrets.token_hex(32)}"})
    assert wrong.status_code == 401
    assert wrong.json() == {"error": f"the key presented for {INFER} is not valid"}
    labeller = guarded.client.post(INFER, json=infer_body(1), headers=_as("labeller"))
    assert labeller.status_code == 401, "a feedback key is not an API key"
    assert guarded.client.get("/v2/models/loan-approval").status_code == 401
    assert guarded.client.get("/v2/models/loan-approval", headers=_as("client-0")).status_code == 200
    assert guarded.client.post(INFER, json=infer_body(1), headers=_as("client-0")).status_code == 200
    by_header = guarded.client.post(INFER, json=infer_body(1), headers={"X-API-Key": KEYS["client-1"]})
    assert by_header.status_code == 200
    for health in ("/v2/health/live", "/v2/health/ready", "/v2/models/loan-approval/ready", "/v2"):
        assert guarded.client.get(health).status_code == 200, health
    refused = post_and_close(guarded.port, INFER, b"x" * 60_000)
    assert refused.startswith(b"HTTP/1.1 401 "), "a refused body is read, so the client sees the 401, not a reset"

    def by_client_1() -> list[dict[str, Any]]:
        return [line for line in guarded.log_lines() if line.get("status") == 200 and line.get("client") == "client-1"]

    wait_for(by_client_1, 5, "the request's log line")
    (logged,) = by_client_1()
    assert logged["route"] == "/v2/models/{name}/infer", "the log names the client, never its key"


def test_metrics_and_feedback_answer_only_on_the_internal_port(guarded: ServerProcess) -> None:
    assert guarded.client.get("/metrics").status_code == 404
    assert guarded.client.post(FEEDBACK, json={"id": "x", "labels": [1]}, headers=_as("labeller")).status_code == 404
    assert guarded.internal.get("/metrics").status_code == 200
    assert guarded.internal.get("/v2/health/ready").status_code == 200
    assert guarded.internal.post(INFER, json=infer_body(1), headers=_as("client-0")).status_code == 404
    assert guarded.internal.get("/openapi.json").status_code == 404


def test_feedback_needs_a_feedback_key_and_a_prediction_id_the_server_issued(guarded: ServerProcess) -> None:
    rows, _ = generate_applications(2, seed=5)
    answer = guarded.client.post(INFER, json=_body(rows), headers={**_as("client-2"), "X-Request-ID": "trace-7"})
    assert answer.headers["x-request-id"] == "trace-7"
    assert answer.json()["id"] == "trace-7", "the caller's id is echoed for tracing"
    prediction_id = answer.headers["x-prediction-id"]
    labels = {"labels": [0, 1]}
    assert guarded.internal.post(FEEDBACK, json={"id": prediction_id, **labels}).status_code == 401
    as_client = guarded.internal.post(FEEDBACK, json={"id": prediction_id, **labels}, headers=_as("client-2"))
    assert as_client.status_code == 401, "an API key cannot label"
    # Another client reuses the same X-Request-ID: it gets its own prediction id, and neither can label by "trace-7".
    other = guarded.client.post(INFER, json=_body(rows), headers={**_as("client-3"), "X-Request-ID": "trace-7"})
    assert other.headers["x-prediction-id"] != prediction_id
    head, _, tag = prediction_id.partition("-")
    instance, _, digits = head.partition(".")
    guesses = [
        "trace-7",
        f"{instance}.{int(digits, 16) + 1:x}-{tag}",
        f"{'0' * len(instance)}.{digits}-{tag}",  # another replica's id with the same sequence
        f"{head}-{secrets.token_hex(16)}",
        f"{head}-{'0' * 32}",
    ]
    for guess in guesses:
        response = guarded.internal.post(FEEDBACK, json={"id": guess, **labels}, headers=_as("labeller"))
        assert response.status_code == 404, guess
        assert "unknown or expired" in response.json()["error"]
    recorded = guarded.internal.post(FEEDBACK, json={"id": prediction_id, **labels}, headers=_as("labeller"))
    assert recorded.json() == {"id": prediction_id, "recorded": True}


def test_one_clients_10000_row_burst_does_not_move_a_features_psi_over_the_threshold(guarded: ServerProcess) -> None:
    calm_rows, _ = generate_applications(WINDOW, seed=4242)
    share = int(WINDOW * SHARE)
    for index, name in enumerate(SOURCES):  # training-like traffic from ten clients fills the window
        chunk = calm_rows[index * share : (index + 1) * share]
        assert guarded.client.post(INFER, json=_body(chunk), headers=_as(name)).status_code == 200

    def window_full() -> bool:
        return _samples(guarded, "mlstack_drift_window_fill").get("", 0.0) >= 1.0

    wait_for(window_full, 30, "a refresh over the full window")
    wait_for(lambda: max(_samples(guarded, "mlstack_feature_drift_psi").values()) > 0, 10, "a refresh")
    calm = _samples(guarded, "mlstack_feature_drift_psi")
    assert max(calm.values()) < THRESHOLD, calm

    # The same shift that, filling the window, takes two features over the threshold (test_drift.py).
    burst, _ = generate_applications(10_000, seed=4343)
    credit, debt = FEATURE_NAMES.index("credit_score"), FEATURE_NAMES.index("debt_to_income")
    burst[:, credit] -= 120
    burst[:, debt] = np.clip(burst[:, debt] * 1.8, 0, 0.8)
    last = None
    for start in range(0, len(burst), 500):
        last = guarded.client.post(INFER, json=_body(burst[start : start + 500]), headers=_as("stranger"))
        assert last.status_code == 200, last.text
    wait_for(lambda: _samples(guarded, "mlstack_feature_drift_psi")["credit_score"] > calm["credit_score"], 15,
             "the burst's admitted share to reach the window")  # fmt: skip
    wait_for(lambda: _samples(guarded, "mlstack_drift_window_fill")[""] >= 1.0, 5, "a refresh")
    shifted = _samples(guarded, "mlstack_feature_drift_psi")
    assert max(shifted.values()) < THRESHOLD, shifted
    # Served and labellable all the same: the burst's last request, whose rows all stayed out of the window.
    assert last is not None
    labels = {"id": last.headers["x-prediction-id"], "labels": [1] * 500}
    assert guarded.internal.post(FEEDBACK, json=labels, headers=_as("labeller")).json()["recorded"] is True


def test_a_client_over_its_rate_gets_429_with_retry_after(tmp_path: Path) -> None:
    """Without keys the limit is per client address; health is never limited."""
    server = start_server(tmp_path, rate_limit_per_second="0.5", rate_limit_burst="3")
    try:
        answers = [server.client.post(INFER, json=infer_body(1)).status_code for _ in range(3)]
        assert answers == [200, 200, 200]
        limited = server.client.post(INFER, json=infer_body(1))
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 2
        assert "over its limit of 0.5 requests a second" in limited.json()["error"]
        assert server.client.get("/v2/health/ready").status_code == 200
        assert server.client.post(INFER, json=infer_body(1), headers={"X-Request-ID": "again"}).status_code == 429
    finally:
        server.stop()


def _refusal(server: ServerProcess) -> str:
    assert server.process.wait(timeout=60) == 1
    (line,) = server.log_path.read_text().splitlines()
    entry = json.loads(line)
    assert (entry["level"], entry["event"]) == ("error", "refusing to start")
    return str(entry["reason"])


def test_a_keys_file_with_a_raw_key_refuses_to_start_without_printing_it(tmp_path: Path) -> None:
    pasted = secrets.token_hex(32)
    keys = tmp_path / "keys"
    keys.write_text(f"orders {hashlib.sha256(b'x').hexdigest()}\nbilling {pasted}x\n")
    reason = _refusal(start_server(tmp_path, wait=False, api_keys_file=str(keys)))
    assert reason == f"{keys}:2: expected '<client name> <sha256 of the key, 64 lowercase hex>'"
    assert pasted not in server_log(tmp_path)


def server_log(tmp_path: Path) -> str:
    return "".join(path.read_text() for path in tmp_path.glob("server-*.log"))


def test_auth_required_without_keys_refuses_to_start(tmp_path: Path) -> None:
    reason = _refusal(start_server(tmp_path, wait=False, auth_required="true"))
    assert reason == "invalid settings: MLSTACK_AUTH_REQUIRED is true but MLSTACK_API_KEYS_FILE is not set"


def test_unauthenticated_callers_cannot_reach_a_guarded_server_through_httpx_defaults(guarded: ServerProcess) -> None:
    """A client library's redirects or retries do not turn a 401 into anything else."""
    with httpx.Client(base_url=guarded.url, follow_redirects=True) as client:
        assert client.post(INFER, json=infer_body(1)).status_code == 401


def test_rate_limiter_refills_and_keeps_memory_bounded_by_active_clients() -> None:
    limiter = RateLimiter(rate=2.0, burst=2)
    assert [limiter.retry_after("a", 100.0) for _ in range(3)] == [0, 0, 1]
    assert limiter.retry_after("a", 100.5) == 0, "half a second at 2/s brings a token back"
    assert limiter.retry_after("b", 100.5) == 0, "clients have their own buckets"
    for index in range(MAX_TRACKED_SOURCES + 5):  # a crowd of addresses, each seen once, long ago
        limiter.retry_after(f"10.0.{index}", 0.0)
    limiter.retry_after("late", 1_000.0)
    assert len(limiter._buckets) < 10, "buckets that refilled are forgotten"


def test_the_sampler_grants_each_source_its_share_per_slice_and_bounds_its_memory() -> None:
    sampler = SourceSampler(budget=100, slice_seconds=3600, max_sources=3)
    assert [sampler.admit("a", 60), sampler.admit("a", 60), sampler.admit("a", 1)] == [60, 40, 0]
    assert sampler.admit("b", 500) == 100
    assert sampler.admit("c", 10) == 10
    # Past max_sources, newcomers share one allowance: a crowd of addresses is one source.
    assert [sampler.admit(f"crowd-{index}", 50) for index in range(4)] == [50, 50, 0, 0]
    fresh = SourceSampler(budget=100, slice_seconds=0.0)  # every call starts a new slice
    assert [fresh.admit("a", 100), fresh.admit("a", 100)] == [100, 100]
