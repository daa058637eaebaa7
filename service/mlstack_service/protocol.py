"""Open Inference Protocol v2 over REST: the request body decoded, the answer encoded; JSON or binary tensors.

Parsing is the hot path: orjson for JSON, numpy for the tensor. What the tensor must be is checked in
inference.py, shared with gRPC. The binary tensor extension (Triton's, which KServe's clients also speak): with the
`Inference-Header-Content-Length` header the body is that many bytes of JSON followed by the tensors' bytes, each
input saying how many in its `binary_data_size` parameter; outputs come back the same way when the request asks
(`binary_data` on an output, `binary_data_output` on the request). A header length of 0 is the extension's raw
binary request: the whole body is the input tensor, and every output comes back binary.
Definition: triton-inference-server/server @ e1db8a603d863b1317ee859bdeea2be19959462e,
docs/protocol/extension_binary_data.md.
"""

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from mlstack_service.errors import BadRequestError
from mlstack_service.inference import (
    WIRE_DTYPES,
    InferRequest,
    InferResult,
    InputTensor,
    check_input,
    check_outputs,
    finite_rows,
    rows_from_bytes,
)
from mlstack_service.package import ModelMetadata

NON_FINITE_TOKENS = (b"NaN", b"Infinity")
NUMERIC_KINDS = "fiu"
BINARY_CONTENT_TYPE = b"application/octet-stream"


@dataclass(slots=True)
class RestInferRequest:
    request: InferRequest
    binary_outputs: frozenset[str]  # outputs the caller wants as binary data


def parse_infer_request(
    body: bytes, metadata: ModelMetadata, max_rows: int, header_length: int | None = None
) -> RestInferRequest:
    """The request's rows as a (n, features) float32 array, with the id and outputs it asked for.

    `header_length` is the Inference-Header-Content-Length header's value when the request has one.
    """
    if header_length == 0:
        return _raw_binary_request(body, metadata, max_rows)
    if header_length is not None and header_length > len(body):
        raise BadRequestError(f"Inference-Header-Content-Length is {header_length} but the body is {len(body)} bytes")
    header = body if header_length is None else body[:header_length]
    try:
        document = orjson.loads(header)
    except orjson.JSONDecodeError as error:
        document = _with_non_finite_values(header, error)
    if not isinstance(document, dict):
        raise BadRequestError("the request body must be a JSON object with an 'inputs' list")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequestError("'inputs' must be a non-empty list of tensors")
    if len(inputs) != 1:
        raise BadRequestError(f"this model takes one input tensor ({metadata.input_name!r}), got {len(inputs)}")
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise BadRequestError("inputs[0] must be an object with name, shape, datatype and data")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequestError("'id' must be a string")
    outputs, binary_outputs = _requested_outputs(document, metadata)
    rows, columns = check_input(
        InputTensor(tensor.get("name"), tensor.get("datatype"), tensor.get("shape")), metadata, max_rows
    )
    binary_size = _parameter(tensor.get("parameters"), "binary_data_size", int, "inputs[0]")
    if binary_size is None:
        if header_length is not None and header_length != len(body):
            raise BadRequestError(
                f"the body has {len(body) - header_length} bytes after the JSON header, "
                "but no input has a 'binary_data_size' parameter"
            )
        # Scanning for booleans is Python-speed: done only when the body spells one somewhere.
        may_hold_booleans = b"true" in header or b"false" in header
        matrix = _json_rows(tensor.get("data"), rows, columns, metadata, may_hold_booleans)
    else:
        if header_length is None:
            raise BadRequestError(
                "inputs[0] has a 'binary_data_size' parameter but the request has no Inference-Header-Content-Length"
            )
        if "data" in tensor:
            raise BadRequestError("inputs[0] has both 'data' and a 'binary_data_size' parameter; send one")
        if binary_size < 0 or header_length + binary_size != len(body):
            raise BadRequestError(
                f"inputs[0]'s binary_data_size is {binary_size} but the body has {len(body) - header_length} bytes "
                "after the JSON header"
            )
        matrix = rows_from_bytes(
            memoryview(body)[header_length:], tensor["datatype"], (rows, columns), metadata, "inputs[0]'s binary data"
        )
    return RestInferRequest(InferRequest(matrix, request_id, outputs), binary_outputs)


def _raw_binary_request(body: bytes, metadata: ModelMetadata, max_rows: int) -> RestInferRequest:
    """Inference-Header-Content-Length: 0: the body is the FP32 input tensor alone, rows inferred from its size."""
    row_bytes = len(metadata.features) * WIRE_DTYPES["FP32"].itemsize
    if not body or len(body) % row_bytes:
        raise BadRequestError(
            f"a raw binary request (Inference-Header-Content-Length: 0) is whole FP32 rows of {row_bytes} bytes; "
            f"the body is {len(body)} bytes"
        )
    shape = [len(body) // row_bytes, len(metadata.features)]
    rows, columns = check_input(InputTensor(None, "FP32", shape), metadata, max_rows)
    matrix = rows_from_bytes(body, "FP32", (rows, columns), metadata, "the body")
    every_output = frozenset((metadata.label_output, metadata.probabilities_output))
    return RestInferRequest(InferRequest(matrix, None, None), every_output)


def _json_rows(data: Any, rows: int, columns: int, metadata: ModelMetadata, may_hold_booleans: bool) -> Any:
    if not isinstance(data, list):
        raise BadRequestError("'data' must be a list of numbers (flat, or one list per row)")
    try:
        array = np.asarray(data)
    except ValueError:
        raise BadRequestError("'data' rows have different lengths") from None
    if array.dtype.kind not in NUMERIC_KINDS or (may_hold_booleans and _holds_a_boolean(data)):
        raise BadRequestError("'data' must hold only numbers (no strings, booleans or nulls)")
    if array.size != rows * columns:
        raise BadRequestError(f"'data' has {array.size} values but shape [{rows}, {columns}] needs {rows * columns}")
    return finite_rows(array, rows, columns, metadata)


def _parameter(parameters: Any, key: str, kind: type, where: str) -> Any:
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise BadRequestError(f"{where}'s 'parameters' must be an object")
    value = parameters.get(key)
    if value is not None and (type(value) is not kind):
        raise BadRequestError(f"{where}'s {key!r} parameter must be {'a boolean' if kind is bool else 'an integer'}")
    return value


def _requested_outputs(
    document: dict[str, Any], metadata: ModelMetadata
) -> tuple[tuple[str, ...] | None, frozenset[str]]:
    """The outputs asked for (None: all) and those of them wanted as binary data."""
    every_output = (metadata.label_output, metadata.probabilities_output)
    all_binary = bool(_parameter(document.get("parameters"), "binary_data_output", bool, "the request"))
    requested = document.get("outputs")
    if requested is None:
        return None, frozenset(every_output if all_binary else ())
    if not isinstance(requested, list) or not all(isinstance(item, dict) for item in requested):
        raise BadRequestError("'outputs' must be a list of objects with a 'name'")
    names = check_outputs([item.get("name") for item in requested], metadata)
    binary = set()
    for index, item in enumerate(requested):
        wanted = _parameter(item.get("parameters"), "binary_data", bool, f"outputs[{index}]")
        if wanted if wanted is not None else all_binary:
            binary.add(item["name"])
    return names, frozenset(binary)


def _with_non_finite_values(body: bytes, error: orjson.JSONDecodeError) -> Any:
    """A body orjson refused: when NaN or Infinity is why, parse it leniently so the error can name the row.

    The slow parser runs only on bodies that are refused anyway; the finite check then names the row and feature.
    """
    if any(token in body for token in NON_FINITE_TOKENS):
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            pass
    raise BadRequestError(f"malformed JSON: {error}") from None


def _holds_a_boolean(data: list[Any]) -> bool:
    """Whether a boolean hides among numbers, which numpy would read as 1 or 0."""
    for item in data:
        if isinstance(item, list):
            if any(type(value) is bool for value in item):
                return True
        elif type(item) is bool:
            return True
    return False


def encode_infer_response(
    result: InferResult, metadata: ModelMetadata, binary_outputs: frozenset[str] = frozenset()
) -> tuple[bytes, int | None]:
    """The response body, and the length of its JSON header when any output travels as binary data."""
    outputs: list[dict[str, Any]] = []
    tensors: list[bytes] = []
    for output in result.outputs:
        if output.name in binary_outputs:
            raw = output.data.astype(WIRE_DTYPES[output.datatype], copy=False).tobytes()
            tensors.append(raw)
            outputs.append(
                {
                    "name": output.name,
                    "shape": output.shape,
                    "datatype": output.datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
            )
        else:
            outputs.append(
                {"name": output.name, "shape": output.shape, "datatype": output.datatype, "data": output.data.ravel()}
            )
    header = orjson.dumps(
        {"model_name": metadata.name, "model_version": metadata.version, "id": result.response_id, "outputs": outputs},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    if not tensors:
        return header, None
    return b"".join((header, *tensors)), len(header)
