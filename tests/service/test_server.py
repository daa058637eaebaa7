"""The model server as a client meets it: a real process, real HTTP, real onnxruntime."""

import json
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlstack_service.synthetic import FEATURE_NAMES
from tests.service.conftest import ServerProcess, infer_body, post_and_close, predictions_in_process, wait_for

INFER = "/v2/models/loan-approval/infer"


def _infer(server: ServerProcess, body: Any, **kwargs: Any) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return server.client.post(INFER, content=content, headers={"content-type": "application/json", **kwargs})


def test_health_routes_answer(server: ServerProcess) -> None:
    assert server.client.get("/v2/health/live").json() == {"live": True}
    assert server.client.get("/v2/health/ready").json() == {"ready": True}
    assert server.client.get("/v2/models/loan-approval/ready").status_code == 200
    assert server.client.get("/v2").json()["name"] == "mlstack-service"


def test_model_metadata_lists_features_in_column_order(server: ServerProcess) -> None:
    metadata = server.client.get("/v2/models/loan-approval").json()
    assert metadata["name"] == "loan-approval"
    assert metadata["versions"] == ["1.0.0"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 12]}]
    assert [feature["name"] for feature in metadata["parameters"]["features"]] == FEATURE_NAMES


@pytest.mark.parametrize("nested", [True, False])
def test_predictions_match_onnxruntime(server: ServerProcess, nested: bool) -> None:
    body = infer_body(25, seed=7, nested=nested)
    response = _infer(server, body)
    assert response.status_code == 200, response.text
    outputs = {output["name"]: output for output in response.json()["outputs"]}
    labels, probabilities = predictions_in_process(np.asarray(infer_body(25, seed=7)["inputs"][0]["data"]))
    assert outputs["label"]["shape"] == [25]
    assert outputs["label"]["datatype"] == "INT64"
    assert outputs["label"]["data"] == labels.tolist()
    assert outputs["probabilities"]["shape"] == [25, 2]
    np.testing.assert_allclose(outputs["probabilities"]["data"], probabilities.ravel(), rtol=1e-6)


def test_versioned_route_and_requested_outputs(server: ServerProcess) -> None:
    response = server.client.post(
        "/v2/models/loan-approval/versions/1.0.0/infer", json=infer_body(2, outputs=[{"name": "label"}])
    )
    assert response.status_code == 200
    assert [output["name"] for output in response.json()["outputs"]] == ["label"]
    wrong_version = server.client.post("/v2/models/loan-approval/versions/9.9/infer", json=infer_body(1))
    assert wrong_version.status_code == 404
    assert "version '9.9'" in wrong_version.json()["error"]
    # The deploy's smoke test relies on this: the versioned ready route answers only for the served version.
    assert server.client.get("/v2/models/loan-approval/versions/1.0.0/ready").status_code == 200
    assert server.client.get("/v2/models/loan-approval/versions/9.9.9/ready").status_code == 404


def test_request_ids_are_honoured_or_generated(server: ServerProcess) -> None:
    response = _infer(server, infer_body(1), **{"x-request-id": "trace-abc.123"})
    assert response.headers["x-request-id"] == "trace-abc.123"
    assert response.json()["id"] == "trace-abc.123"
    own_id = _infer(server, infer_body(1, id="client-id-7"))
    assert own_id.json()["id"] == "client-id-7"
    generated = [_infer(server, infer_body(1)).json()["id"] for _ in range(3)]
    assert len(set(generated)) == 3


def _nested(rows: int = 1) -> dict[str, Any]:
    return infer_body(rows)


def _with_tensor(**changes: Any) -> dict[str, Any]:
    body = infer_body(2)
    body["inputs"][0].update(changes)
    return body


CLIENT_MISTAKES: list[tuple[str, Any, int, str | None]] = [
    ("malformed JSON", b'{"inputs": [', 400, "malformed JSON"),
    ("not an object", b"[1, 2, 3]", 400, "must be a JSON object"),
    ("no inputs", {"id": "x"}, 400, "'inputs' must be a non-empty list"),
    ("two inputs", {"inputs": [infer_body(1)["inputs"][0]] * 2}, 400, "takes one input tensor"),
    ("wrong input name", _with_tensor(name="features"), 400, "unknown input 'features'"),
    ("wrong datatype", _with_tensor(datatype="INT8"), 400, "datatype 'INT8' is not supported"),
    ("wrong shape rank", _with_tensor(shape=[24]), 400, "shape must be [rows, 12]"),
    (
        "wrong feature count",
        {"inputs": [{"name": "input", "shape": [2, 11], "datatype": "FP32", "data": [0.0] * 22}]},
        400,
        "has 11 features per row; this model takes 12",
    ),
    ("shape and data disagree", _with_tensor(shape=[3, 12]), 400, "'data' has 24 values but shape [3, 12] needs 36"),
    (
        "empty input",
        {"inputs": [{"name": "input", "shape": [0, 12], "datatype": "FP32", "data": []}]},
        400,
        "the input is empty",
    ),
    ("strings in data", _with_tensor(data=["1"] * 24), 400, "must hold only numbers"),
    ("nulls in data", _with_tensor(data=[None] * 24), 400, "must hold only numbers"),
    ("booleans in data", _with_tensor(data=[True] * 24), 400, "must hold only numbers"),
    # numpy reads one `true` among numbers as 1.0: it must be refused like a row of them.
    ("one boolean among numbers", _with_tensor(data=[1.5] * 23 + [True]), 400, "must hold only numbers"),
    ("one boolean in a nested row", _with_tensor(data=[[1.5] * 12, [1.5] * 11 + [False]]), 400, "only numbers"),
    ("ragged rows", _with_tensor(data=[[1.0] * 12, [1.0] * 11]), 400, "different lengths"),
    (
        "NaN",
        b'{"inputs":[{"name":"input","shape":[2,12],"datatype":"FP32","data":[[1,1,1,1,1,1,1,1,1,1,1,1],'
        b"[1,1,NaN,1,1,1,1,1,1,1,1,1]]}]}",
        400,
        "row 1, feature 'loan_amount': nan is not a finite FP32 number",
    ),
    (
        "Infinity",
        b'{"inputs":[{"name":"input","shape":[1,12],"datatype":"FP32","data":[1,1,1,1,1,1,1,1,1,1,1,-Infinity]}]}',
        400,
        "row 0, feature 'months_since_last_inquiry': -inf is not a finite FP32 number",
    ),
    ("NaN in a malformed body", b'{"inputs": [NaN', 400, "malformed JSON"),
    (
        "FP32 overflow",
        {"inputs": [{"name": "input", "shape": [1, 12], "datatype": "FP32", "data": [1.0] * 11 + [1e40]}]},
        400,
        "row 0, feature 'months_since_last_inquiry': 1e+40 is not a finite FP32 number",
    ),
    ("id not a string", infer_body(1, id=5), 400, "'id' must be a string"),
    ("unknown output", infer_body(1, outputs=[{"name": "logits"}]), 400, "unknown outputs ['logits']"),
    (
        # Zeros keep 1001 rows under the 64 KiB body limit, so the row limit is what answers.
        "too many rows",
        {"inputs": [{"name": "input", "shape": [1001, 12], "datatype": "FP32", "data": [0] * 12_012}]},
        413,
        "1001 rows in one request; the limit is 1000",
    ),
]


@pytest.mark.parametrize(("case", "body", "status", "message"), CLIENT_MISTAKES, ids=[c[0] for c in CLIENT_MISTAKES])
def test_client_mistakes_get_a_4xx_naming_the_problem(
    server: ServerProcess, case: str, body: Any, status: int, message: str | None
) -> None:
    response = _infer(server, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, str)
    if message:
        assert message in error


def test_unknown_model_route_and_method(server: ServerProcess) -> None:
    unknown_model = server.client.post("/v2/models/fraud/infer", json=infer_body(1))
    assert unknown_model.status_code == 404
    assert unknown_model.json()["error"] == "model 'fraud' is not served here; this server serves 'loan-approval'"
    assert server.client.get("/v3/nothing").status_code == 404
    wrong_method = server.client.get(INFER)
    assert wrong_method.status_code == 405
    assert "use POST" in wrong_method.json()["error"]


def test_body_over_the_limit_gets_413(server: ServerProcess) -> None:
    big = infer_body(900)  # about 120 KiB; this server's limit is 64 KiB
    response = _infer(server, big)
    assert response.status_code == 413
    assert "limit is 65536" in response.json()["error"]


def test_metrics_count_requests_rows_and_latency_by_model(server: ServerProcess) -> None:
    def sample(name: str, **labels: str) -> float:
        wanted = {"model_name": "loan-approval", "model_version": "1.0.0", **labels}
        for family in text_string_to_metric_families(server.metrics_text()):
            for metric_sample in family.samples:
                if metric_sample.name == name and wanted.items() <= metric_sample.labels.items():
                    return float(metric_sample.value)
        return 0.0

    def predictions() -> float:
        return sample("mlstack_predictions_total", class_name="approved") + sample(
            "mlstack_predictions_total", class_name="rejected"
        )

    route = "/v2/models/{name}/infer"
    predictions_before = predictions()
    ok_before = sample("mlstack_requests_total", route=route, status="200")
    bad_before = sample("mlstack_requests_total", route=route, status="400")
    rows_before = sample("mlstack_request_rows_sum")
    durations_before = sample("mlstack_request_duration_seconds_count", route=route)
    inferences_before = sample("mlstack_inference_duration_seconds_count")
    for _ in range(3):
        _infer(server, infer_body(10))
    _infer(server, b"{")
    assert sample("mlstack_requests_total", route=route, status="200") == ok_before + 3
    assert sample("mlstack_requests_total", route=route, status="400") == bad_before + 1
    assert sample("mlstack_request_rows_sum") == rows_before + 30
    assert predictions() == predictions_before + 30
    assert sample("mlstack_request_duration_seconds_count", route=route) == durations_before + 4
    # The malformed body never reaches the model.
    assert sample("mlstack_inference_duration_seconds_count") == inferences_before + 3
    assert sample("mlstack_model_info") == 1
    assert sample("mlstack_ready") == 1
    # The scrape itself is in flight while it is answered.
    assert sample("mlstack_requests_in_flight") == 1


def test_one_json_log_line_per_request_without_payloads(server: ServerProcess) -> None:
    body = infer_body(1, seed=99)
    secret_value = body["inputs"][0]["data"][0][1]  # the applicant's income
    _infer(server, body, **{"x-request-id": "log-check-1"})
    wait_for(lambda: server.logged(request_id="log-check-1"), 5, "the request's log line")
    (line,) = server.logged(request_id="log-check-1")
    assert line["event"] == "request"
    assert line["status"] == 200
    assert line["rows"] == 1
    assert line["route"] == "/v2/models/{name}/infer"
    assert line["duration_ms"] > 0
    assert str(secret_value) not in server.log_path.read_text()


def test_openapi_document_is_served(server: ServerProcess) -> None:
    document = server.client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert "/v2/models/{model_name}/infer" in document["paths"]
    versioned = document["paths"]["/v2/models/{model_name}/versions/{model_version}/infer"]["post"]
    assert [parameter["name"] for parameter in versioned["parameters"]] == ["model_name", "model_version"]
    assert versioned["parameters"][1]["schema"]["enum"] == ["1.0.0"]
    feedback = document["paths"]["/v2/models/{model_name}/feedback"]["post"]
    assert feedback["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FeedbackRequest"
    }
    assert {"200", "400", "404"} <= set(feedback["responses"])
    assert "409" not in document["paths"]["/v2/models/{model_name}/infer"]["post"]["responses"]
    assert "InferenceRequest" in document["components"]["schemas"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_the_limit_with_connection_close_gets_413_not_a_reset(server: ServerProcess, chunked: bool) -> None:
    """The client sends its whole oversized body and then reads: the answer must be the 413, never a reset."""
    answer = post_and_close(server.port, INFER, b"x" * (1 << 20), chunked)  # 1 MiB against a 64 KiB limit
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    assert b"limit" in rest.partition(b"\r\n\r\n")[2]
