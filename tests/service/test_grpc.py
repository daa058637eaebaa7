"""The service as Triton's own clients meet it: HTTP with JSON, HTTP with binary tensors, and gRPC.

tritonclient is an implementation no one here wrote; every answer is compared with onnxruntime run directly on the
same rows. The malformed-input battery runs over gRPC with its status codes, and gRPC drains on SIGTERM like REST.
Messages are built from tritonclient's own generated classes (its service_pb2), the wire format we must speak.
"""

import hashlib
import json
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2, service_pb2_grpc

from mlstack_service.synthetic import generate_applications
from tests.service.conftest import ServerProcess, infer_body, predictions_in_process, start_server, wait_for
from tests.service.models import package_with_model, slow_model_bytes

MODEL = "loan-approval"


def _rows(count: int, seed: int) -> np.ndarray:
    features, _ = generate_applications(count, seed)
    return features.astype(np.float32)


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as opened:
        yield opened


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> Any:
    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _assert_matches_onnxruntime(rows: np.ndarray, labels: np.ndarray, probabilities: np.ndarray) -> None:
    expected_labels, expected_probabilities = predictions_in_process(rows)
    assert labels.tolist() == expected_labels.tolist()
    assert probabilities.shape == (len(rows), 2)
    np.testing.assert_allclose(probabilities, expected_probabilities, rtol=1e-6)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_triton_http_client_gets_what_onnxruntime_says(server: ServerProcess, binary: bool) -> None:
    rows = _rows(40, seed=11)
    client = triton_http.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_ready()
        assert client.is_model_ready(MODEL)
        tensor = triton_http.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        outputs = [
            triton_http.InferRequestedOutput("label", binary_data=binary),
            triton_http.InferRequestedOutput("probabilities", binary_data=binary),
        ]
        result = client.infer(MODEL, [tensor], outputs=outputs, request_id="triton-http")
        response = result.get_response()
        assert response["id"] == "triton-http"
        sent_binary = {
            output["name"]: "binary_data_size" in output.get("parameters", {}) for output in response["outputs"]
        }
        assert sent_binary == {"label": binary, "probabilities": binary}
        _assert_matches_onnxruntime(rows, result.as_numpy("label"), result.as_numpy("probabilities"))
    finally:
        client.close()


def test_triton_http_client_without_outputs_gets_every_output_as_binary(server: ServerProcess) -> None:
    """With no outputs named, tritonclient asks for all of them as binary data (binary_data_output)."""
    rows = _rows(3, seed=12)
    client = triton_http.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        tensor = triton_http.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        result = client.infer(MODEL, [tensor])
        assert all("binary_data_size" in output["parameters"] for output in result.get_response()["outputs"])
        _assert_matches_onnxruntime(rows, result.as_numpy("label"), result.as_numpy("probabilities"))
    finally:
        client.close()


def test_triton_grpc_client_gets_what_onnxruntime_says(server: ServerProcess) -> None:
    rows = _rows(40, seed=13)
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(MODEL)
        assert client.is_model_ready(MODEL, "1.0.0")
        metadata = client.get_model_metadata(MODEL, as_json=True)
        assert metadata["versions"] == ["1.0.0"]
        assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "12"]}]
        assert "binary_tensor_data" in client.get_server_metadata(as_json=True)["extensions"]
        tensor = triton_grpc.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)  # sent in raw_input_contents
        result = client.infer(MODEL, [tensor], request_id="triton-grpc")
        assert result.get_response().id == "triton-grpc"
        _assert_matches_onnxruntime(rows, result.as_numpy("label"), result.as_numpy("probabilities"))
        only_labels = client.infer(MODEL, [tensor], outputs=[triton_grpc.InferRequestedOutput("label")])
        assert [output.name for output in only_labels.get_response().outputs] == ["label"]
    finally:
        client.close()


def test_grpc_typed_contents_are_answered_in_typed_contents(server: ServerProcess, stub: Any) -> None:
    rows = _rows(5, seed=14)
    request = service_pb2.ModelInferRequest(model_name=MODEL, model_version="1.0.0")
    tensor = request.inputs.add(name="input", datatype="FP64", shape=list(rows.shape))
    tensor.contents.fp64_contents.extend(rows.astype(np.float64).ravel().tolist())
    response, call = stub.ModelInfer.with_call(request, metadata=(("x-request-id", "typed-1"),))
    assert not response.raw_output_contents
    outputs = {output.name: output for output in response.outputs}
    assert list(outputs["probabilities"].shape) == [5, 2]
    labels = np.asarray(outputs["label"].contents.int64_contents)
    probabilities = np.asarray(outputs["probabilities"].contents.fp32_contents, dtype=np.float32).reshape(5, 2)
    _assert_matches_onnxruntime(rows, labels, probabilities)
    trailing = dict(call.trailing_metadata())
    assert trailing["x-request-id"] == "typed-1"
    assert response.id == "typed-1"
    # The server's own signed prediction id: the REST feedback route takes it, since both share one drift tracker.
    feedback = server.internal.post(
        f"/v2/models/{MODEL}/feedback", json={"id": trailing["x-prediction-id"], "labels": labels.tolist()}
    )
    assert feedback.status_code == 200, feedback.text
    assert feedback.json()["recorded"] is True


def _request(rows: int = 2, **tensor: Any) -> Any:
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    fields = {"name": "input", "datatype": "FP32", "shape": [rows, 12], **tensor}
    contents = fields.pop("contents", None)
    added = request.inputs.add(**fields)
    if contents is None:
        request.raw_input_contents.append(_rows(rows, seed=3).tobytes())
    else:
        for name, values in contents.items():
            getattr(added.contents, name).extend(values)
    return request


def _without_inputs() -> Any:
    return service_pb2.ModelInferRequest(model_name=MODEL)


def _two_inputs() -> Any:
    request = _request()
    request.inputs.add(name="input", datatype="FP32", shape=[2, 12])
    request.raw_input_contents.append(_rows(2, seed=3).tobytes())
    return request


def _raw_of_size(size: int) -> Any:
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="input", datatype="FP32", shape=[2, 12])
    request.raw_input_contents.append(b"\0" * size)
    return request


def _raw_with(values: list[float]) -> Any:
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="input", datatype="FP32", shape=[1, 12])
    request.raw_input_contents.append(np.asarray(values, dtype="<f4").tobytes())
    return request


def _contents_and_raw() -> Any:
    request = _request(contents={"fp32_contents": [1.0] * 24})
    request.raw_input_contents.append(_rows(2, seed=3).tobytes())
    return request


def _unknown_output() -> Any:
    request = _request()
    request.outputs.add(name="logits")
    return request


def _for_model(name: str, model_version: str = "") -> Any:
    request = _request()
    request.model_name, request.model_version = name, model_version
    return request


INVALID = grpc.StatusCode.INVALID_ARGUMENT
GRPC_CLIENT_MISTAKES: list[tuple[str, Any, grpc.StatusCode, str]] = [
    ("no inputs", _without_inputs(), INVALID, "takes one input tensor ('input'), got 0"),
    ("two inputs", _two_inputs(), INVALID, "takes one input tensor ('input'), got 2"),
    ("wrong input name", _request(name="features"), INVALID, "unknown input 'features'"),
    ("wrong datatype", _request(datatype="INT8"), INVALID, "datatype 'INT8' is not supported"),
    ("wrong shape rank", _request(shape=[24]), INVALID, "shape must be [rows, 12]"),
    ("wrong feature count", _request(shape=[2, 11]), INVALID, "has 11 features per row; this model takes 12"),
    ("empty input", _request(rows=0, contents={}), INVALID, "the input is empty"),
    (
        "contents and shape disagree",
        _request(shape=[3, 12], contents={"fp32_contents": [1.0] * 24}),
        INVALID,
        "the tensor has 24 values but shape [3, 12] needs 36",
    ),
    ("raw size and shape disagree", _raw_of_size(95), INVALID, "raw_input_contents[0] is 95 bytes but shape [2, 12]"),
    (
        "values in the wrong contents field",
        _request(contents={"int_contents": [1] * 24}),
        INVALID,
        "FP32 values go in contents.fp32_contents; got contents.int_contents",
    ),
    ("contents and raw both", _contents_and_raw(), INVALID, "has both 'contents' and raw_input_contents"),
    (
        "NaN",
        _request(contents={"fp32_contents": [1.0] * 14 + [float("nan")] + [1.0] * 9}),
        INVALID,
        "row 1, feature 'loan_amount': nan is not a finite FP32 number",
    ),
    (
        "Infinity",
        _raw_with([1.0] * 11 + [float("-inf")]),
        INVALID,
        "row 0, feature 'months_since_last_inquiry': -inf is not a finite FP32 number",
    ),
    (
        "FP32 overflow",
        _request(rows=1, datatype="FP64", contents={"fp64_contents": [1.0] * 11 + [1e40]}),
        INVALID,
        "1e+40 is not a finite FP32 number",
    ),
    ("unknown output", _unknown_output(), INVALID, "unknown outputs ['logits']"),
    # Zeros keep 1001 rows (48 KiB raw) under the 64 KiB message limit, so the row limit is what answers.
    (
        "too many rows",
        _request(rows=1001, contents={"fp32_contents": [0.0] * 12_012}),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "1001 rows in one request; the limit is 1000",
    ),
    ("unknown model", _for_model("fraud"), grpc.StatusCode.NOT_FOUND, "model 'fraud' is not served here"),
    ("unknown version", _for_model(MODEL, "9.9"), grpc.StatusCode.NOT_FOUND, "version '9.9' of 'loan-approval'"),
]


@pytest.mark.parametrize(
    ("case", "request_message", "code", "message"), GRPC_CLIENT_MISTAKES, ids=[c[0] for c in GRPC_CLIENT_MISTAKES]
)
def test_grpc_client_mistakes_get_the_status_rest_would_and_name_the_problem(
    stub: Any, case: str, request_message: Any, code: grpc.StatusCode, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(request_message)
    assert raised.value.code() == code, raised.value.details()
    assert message in raised.value.details()


def test_grpc_bytes_that_are_no_message_are_invalid_argument_not_internal(channel: grpc.Channel) -> None:
    infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    with pytest.raises(grpc.RpcError) as raised:
        infer(b"\xff\xff\xff")  # a truncated varint: no protobuf message
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid inference.ModelInferRequest" in raised.value.details()


def test_grpc_message_over_the_body_limit_is_resource_exhausted(stub: Any) -> None:
    oversized = _raw_of_size(70_000)  # the server's body limit is 64 KiB
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(oversized)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_grpc_model_routes_refuse_an_unknown_model(stub: Any) -> None:
    for method, message in (
        (stub.ModelReady, service_pb2.ModelReadyRequest(name="fraud")),
        (stub.ModelMetadata, service_pb2.ModelMetadataRequest(name=MODEL, version="2.0.0")),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            method(message)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_grpc_health_is_serving_once_ready(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "inference.GRPCInferenceService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as raised:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def _sample(server: ServerProcess, name: str, **labels: str) -> float:
    wanted = {"model_name": MODEL, "model_version": "1.0.0", **labels}
    for family in text_string_to_metric_families(server.metrics_text()):
        for metric_sample in family.samples:
            if metric_sample.name == name and wanted.items() <= metric_sample.labels.items():
                return float(metric_sample.value)
    return 0.0


def test_metrics_count_each_protocol_under_the_same_route(server: ServerProcess, stub: Any) -> None:
    route = "/v2/models/{name}/infer"
    counted = {
        (protocol, status): _sample(server, "mlstack_requests_total", route=route, protocol=protocol, status=status)
        for protocol in ("rest", "grpc")
        for status in ("200", "400")
    }
    rows_before = _sample(server, "mlstack_request_rows_sum")
    stub.ModelInfer(_request(rows=4))
    with pytest.raises(grpc.RpcError):
        stub.ModelInfer(_request(name="features"))
    server.client.post(f"/v2/models/{MODEL}/infer", json=infer_body(3))
    assert _sample(server, "mlstack_requests_total", route=route, protocol="grpc", status="200") == (
        counted["grpc", "200"] + 1
    )
    assert _sample(server, "mlstack_requests_total", route=route, protocol="grpc", status="400") == (
        counted["grpc", "400"] + 1
    )
    assert _sample(server, "mlstack_requests_total", route=route, protocol="rest", status="200") == (
        counted["rest", "200"] + 1
    )
    # One drift window, one set of inference metrics: rows from both protocols land in the same histogram.
    assert _sample(server, "mlstack_request_rows_sum") == rows_before + 7
    assert _sample(server, "mlstack_request_duration_seconds_count", route=route, protocol="grpc") >= 2


def test_grpc_with_api_keys_needs_a_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"ci {hashlib.sha256(b'123456').hexdigest()}\n")
    server = start_server(tmp_path, api_keys_file=str(keys))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            keyed = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                keyed.ModelInfer(_request())
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "needs an API key" in raised.value.details()
            answer = keyed.ModelInfer(_request(), metadata=(("authorization", "Bearer 123456"),))
            assert len(answer.outputs) == 2
            # Health stays open, as on REST.
            assert keyed.ServerReady(service_pb2.ServerReadyRequest()).ready
    finally:
        server.stop()


def test_sigterm_drains_grpc_like_rest(tmp_path: Path) -> None:
    """Readiness and health turn at once, a call in flight still finishes, and the process exits 0."""
    package = package_with_model(tmp_path / "slow", slow_model_bytes(layers=400))
    server = start_server(
        tmp_path, model_uri=str(package), inline_rows="0", drain_seconds="2", grace_period_seconds="30"
    )
    result: dict[str, Any] = {}
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        inference = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)

        def slow_call() -> None:
            result["answer"] = inference.ModelInfer(_request(rows=200), timeout=120)

        worker = threading.Thread(target=slow_call)
        worker.start()
        wait_for(lambda: _sample(server, "mlstack_requests_in_flight") >= 2, 30, "the slow call to be in flight")
        server.process.send_signal(signal.SIGTERM)
        wait_for(
            lambda: health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.NOT_SERVING,
            10,
            "gRPC health to turn NOT_SERVING",
        )
        assert not inference.ServerReady(service_pb2.ServerReadyRequest()).ready
        worker.join(timeout=60)
    assert list(result["answer"].outputs[0].shape) == [200]
    assert server.process.wait(timeout=60) == 0


def test_a_grpc_port_in_use_refuses_to_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = start_server(tmp_path, wait=False, grpc_port=str(port))
        assert server.process.wait(timeout=60) == 1
    # Structured lines only (no gRPC or uvicorn text), the last one saying why.
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines()]
    refusal = lines[-1]
    assert (refusal["level"], refusal["event"]) == ("error", "refusing to start")
    assert refusal["reason"] == f"cannot listen on 127.0.0.1:{port}: Address already in use"
