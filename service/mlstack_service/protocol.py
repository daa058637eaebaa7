"""Open Inference Protocol v2 (REST) request parsing and response encoding, checked in one place.

Parsing is the hot path: orjson for JSON, numpy for the tensor, and every check a client can fail names
the problem in words the client can act on.
"""

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from mlstack_service.errors import BadRequestError, PayloadTooLargeError
from mlstack_service.package import ModelMetadata
from mlstack_service.runtime import Prediction

ACCEPTED_DATATYPES = ("FP32", "FP64")
NON_FINITE_TOKENS = (b"NaN", b"Infinity")
NUMERIC_KINDS = "fiu"


@dataclass(frozen=True)
class InferRequest:
    rows: NDArray[np.float32]
    request_id: str | None
    outputs: list[dict[str, Any]] | None


def parse_infer_request(body: bytes, metadata: ModelMetadata, max_rows: int) -> InferRequest:
    """The request's rows as a (n, features) float32 array, with the id and outputs it asked for."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        document = _with_non_finite_values(body, error)
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
    outputs = document.get("outputs")
    _check_outputs(outputs, metadata)
    # Scanning for booleans is Python-speed: done only when the body spells one somewhere.
    may_hold_booleans = b"true" in body or b"false" in body
    rows = _tensor_rows(tensor, metadata, max_rows, may_hold_booleans)
    return InferRequest(rows=rows, request_id=request_id, outputs=outputs)


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


def _check_outputs(requested: Any, metadata: ModelMetadata) -> None:
    if requested is None:
        return
    known = (metadata.label_output, metadata.probabilities_output)
    if not isinstance(requested, list) or not all(isinstance(item, dict) for item in requested):
        raise BadRequestError("'outputs' must be a list of objects with a 'name'")
    unknown = [item.get("name") for item in requested if item.get("name") not in known]
    if unknown:
        raise BadRequestError(f"unknown outputs {unknown}; this model produces {list(known)}")


def _tensor_rows(
    tensor: dict[str, Any], metadata: ModelMetadata, max_rows: int, may_hold_booleans: bool
) -> NDArray[np.float32]:
    features = len(metadata.features)
    name, shape, datatype, data = (tensor.get(key) for key in ("name", "shape", "datatype", "data"))
    if name is not None and name != metadata.input_name:
        raise BadRequestError(f"unknown input {name!r}; this model's input is {metadata.input_name!r}")
    if datatype not in ACCEPTED_DATATYPES:
        raise BadRequestError(f"datatype {datatype!r} is not supported; send FP32 (or FP64)")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape)
    ):
        raise BadRequestError(f"shape must be [rows, {features}], got {shape!r}")
    rows, columns = shape
    if rows == 0:
        raise BadRequestError("the input is empty: shape has 0 rows")
    if columns != features:
        raise BadRequestError(
            f"shape {shape} has {columns} features per row; "
            f"this model takes {features}: {', '.join(metadata.feature_names)}"
        )
    if rows > max_rows:
        raise PayloadTooLargeError(f"{rows} rows in one request; the limit is {max_rows}")
    if not isinstance(data, list):
        raise BadRequestError("'data' must be a list of numbers (flat, or one list per row)")
    try:
        array = np.asarray(data)
    except ValueError:
        raise BadRequestError("'data' rows have different lengths") from None
    if array.dtype.kind not in NUMERIC_KINDS or (may_hold_booleans and _holds_a_boolean(data)):
        raise BadRequestError("'data' must hold only numbers (no strings, booleans or nulls)")
    if array.size != rows * columns:
        raise BadRequestError(f"'data' has {array.size} values but shape {shape} needs {rows * columns}")
    with np.errstate(over="ignore"):
        matrix = array.astype(np.float32, copy=False).reshape(rows, columns)
    finite = np.isfinite(matrix)
    if not finite.all():
        row, column = (int(index) for index in np.argwhere(~finite)[0])
        value = float(array.reshape(rows, columns)[row, column])
        raise BadRequestError(
            f"row {row}, feature {metadata.feature_names[column]!r}: {value!r} is not a finite FP32 number"
        )
    return matrix


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
    prediction: Prediction, metadata: ModelMetadata, response_id: str, requested_outputs: list[dict[str, Any]] | None
) -> bytes:
    rows = len(prediction.labels)
    outputs = [
        {"name": metadata.label_output, "shape": [rows], "datatype": "INT64", "data": prediction.labels},
        {
            "name": metadata.probabilities_output,
            "shape": [rows, len(metadata.class_names)],
            "datatype": "FP32",
            "data": prediction.probabilities.ravel(),
        },
    ]
    if requested_outputs:
        wanted = {item["name"] for item in requested_outputs}
        outputs = [output for output in outputs if output["name"] in wanted]
    return orjson.dumps(
        {"model_name": metadata.name, "model_version": metadata.version, "id": response_id, "outputs": outputs},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
