"""The binary tensor extension on REST, byte for byte: sizes that disagree are 400s, oversized bodies 413s."""

import json
from typing import Any

import httpx
import numpy as np
import pytest

from mlstack_service.synthetic import generate_applications
from tests.service.conftest import ServerProcess, post_and_close, predictions_in_process

INFER = "/v2/models/loan-approval/infer"


def _rows(count: int) -> np.ndarray:
    features, _ = generate_applications(count, 21)
    return features.astype(np.float32)


def _binary_request(
    rows: np.ndarray, *, size: int | None = None, extra: bytes = b"", header: dict[str, Any] | None = None
) -> tuple[bytes, dict[str, str]]:
    """A request whose input travels as binary data; `size` and `extra` make it lie about its bytes."""
    raw = rows.astype("<f4").tobytes()
    document = header or {
        "inputs": [
            {
                "name": "input",
                "shape": list(rows.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw) if size is None else size},
            }
        ],
        "outputs": [{"name": "label"}, {"name": "probabilities", "parameters": {"binary_data": True}}],
    }
    head = json.dumps(document).encode()
    return head + raw + extra, {
        "inference-header-content-length": str(len(head)),
        "content-type": "application/octet-stream",
    }


def _split(response: httpx.Response) -> tuple[dict[str, Any], bytes]:
    length = int(response.headers["inference-header-content-length"])
    return json.loads(response.content[:length]), response.content[length:]


def test_binary_input_and_output_match_onnxruntime(server: ServerProcess) -> None:
    rows = _rows(16)
    body, headers = _binary_request(rows)
    response = server.client.post(INFER, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    document, tail = _split(response)
    label, probabilities = document["outputs"]
    assert label["data"] == predictions_in_process(rows)[0].tolist()  # asked for as JSON
    assert probabilities["parameters"] == {"binary_data_size": 16 * 2 * 4}
    assert len(tail) == 128
    np.testing.assert_allclose(
        np.frombuffer(tail, dtype="<f4").reshape(16, 2), predictions_in_process(rows)[1], rtol=1e-6
    )


def test_raw_binary_request_is_whole_rows_and_answers_in_binary(server: ServerProcess) -> None:
    rows = _rows(3)
    response = server.client.post(
        INFER, content=rows.astype("<f4").tobytes(), headers={"inference-header-content-length": "0"}
    )
    assert response.status_code == 200, response.text
    document, tail = _split(response)
    assert [output["parameters"]["binary_data_size"] for output in document["outputs"]] == [3 * 8, 3 * 2 * 4]
    assert np.frombuffer(tail[:24], dtype="<i8").tolist() == predictions_in_process(rows)[0].tolist()
    partial = server.client.post(INFER, content=b"\0" * 50, headers={"inference-header-content-length": "0"})
    assert partial.status_code == 400
    assert "whole FP32 rows of 48 bytes; the body is 50 bytes" in partial.json()["error"]


def _shape_lies() -> tuple[bytes, dict[str, str]]:
    body, headers = _binary_request(_rows(2), size=95)
    return body[:-1], headers  # 95 bytes, as it says, but [2, 12] FP32 needs 96


def _header_too_long() -> tuple[bytes, dict[str, str]]:
    body, headers = _binary_request(_rows(2))
    return body, {**headers, "inference-header-content-length": str(len(body) + 1)}


def _header_not_a_number() -> tuple[bytes, dict[str, str]]:
    body, headers = _binary_request(_rows(2))
    return body, {**headers, "inference-header-content-length": "12a"}


def _no_header_length() -> tuple[bytes, dict[str, str]]:
    body, headers = _binary_request(_rows(2))
    head_length = int(headers["inference-header-content-length"])
    return body[:head_length], {"content-type": "application/json"}


def _bytes_without_a_binary_input() -> tuple[bytes, dict[str, str]]:
    head = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 12], "datatype": "FP32", "data": [1.0] * 12}]}
    ).encode()
    return head + b"\0" * 8, {"inference-header-content-length": str(len(head))}


def _binary_flag_not_a_boolean() -> tuple[bytes, dict[str, str]]:
    rows = _rows(1)
    raw = rows.tobytes()
    header = {
        "inputs": [
            {"name": "input", "shape": [1, 12], "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}
        ],
        "outputs": [{"name": "label", "parameters": {"binary_data": "yes"}}],
    }
    return _binary_request(rows, header=header)


BINARY_MISTAKES = [
    ("size disagrees with the shape", _shape_lies(), "inputs[0]'s binary data is 95 bytes but shape [2, 12] of FP32"),
    (
        "size disagrees with the body",
        _binary_request(_rows(2), extra=b"\0\0\0\0"),
        "binary_data_size is 96 but the body has 100 bytes after the JSON header",
    ),
    ("header longer than the body", _header_too_long(), "Inference-Header-Content-Length is"),
    ("header length not a number", _header_not_a_number(), "Inference-Header-Content-Length is not a number"),
    ("binary size without the header", _no_header_length(), "has no Inference-Header-Content-Length"),
    ("bytes nobody claims", _bytes_without_a_binary_input(), "8 bytes after the JSON header, but no input"),
    ("binary_data not a boolean", _binary_flag_not_a_boolean(), "outputs[0]'s 'binary_data' parameter must be a"),
]


@pytest.mark.parametrize(("case", "request_parts", "message"), BINARY_MISTAKES, ids=[c[0] for c in BINARY_MISTAKES])
def test_binary_requests_that_disagree_with_themselves_get_400(
    server: ServerProcess, case: str, request_parts: tuple[bytes, dict[str, str]], message: str
) -> None:
    body, headers = request_parts
    response = server.client.post(INFER, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_binary_body_over_the_limit_gets_413(server: ServerProcess) -> None:
    body, headers = _binary_request(_rows(1400))  # 67 KB of tensor; this server's limit is 64 KiB
    answer = post_and_close(server.port, INFER, body, headers=headers)
    assert answer.startswith(b"HTTP/1.1 413 ")
    rows_over = _binary_request(np.zeros((1001, 12), dtype=np.float32))  # 48 KB: under the body limit
    response = server.client.post(INFER, content=rows_over[0], headers=rows_over[1])
    assert response.status_code == 413
    assert "1001 rows in one request; the limit is 1000" in response.json()["error"]
