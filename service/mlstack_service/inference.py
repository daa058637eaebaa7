"""What an inference request means, whichever protocol carried it.

REST (app.py with protocol.py) and gRPC (grpc_service.py) only decode a request into the pieces below and encode the
answer; the checks on the input tensor, the model call, the metrics of the inference and the drift tracking live
here once. Every check a client can fail raises a ServiceError whose message names the problem; each protocol maps
its status (400, 404, 413, 503) to its own way of saying so.
"""

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mlstack_service.drift import DriftBudget, DriftMonitor, DriftTracking, FeedbackTracker, SourceSampler
from mlstack_service.errors import BadRequestError, ModelNotFoundError, ModelNotReadyError, PayloadTooLargeError
from mlstack_service.logs import log_event
from mlstack_service.metrics import ServiceMetrics
from mlstack_service.package import ModelMetadata
from mlstack_service.prediction_ids import PredictionIds, load_key
from mlstack_service.prediction_log import PredictionLog
from mlstack_service.runtime import OnnxModel, Prediction
from mlstack_service.settings import Settings

SERVER_NAME = "mlstack-service"
ACCEPTED_DATATYPES = ("FP32", "FP64")
# Little-endian, as the binary tensor extension and raw_input_contents define the bytes.
WIRE_DTYPES: dict[str, np.dtype[Any]] = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"), "INT64": np.dtype("<i8")}
# What GET /v2 and ServerMetadata list: the binary tensor extension's name as Triton reports it.
EXTENSIONS = ("binary_tensor_data",)


@dataclass(slots=True)
class InputTensor:
    """The one input tensor's header, as any protocol states it."""

    name: str | None
    datatype: Any
    shape: Any


@dataclass(slots=True)
class InferRequest:
    rows: NDArray[np.float32]
    request_id: str | None
    outputs: tuple[str, ...] | None  # the outputs asked for by name; None: all of them


@dataclass(slots=True)
class OutputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: NDArray[Any]


@dataclass(slots=True)
class InferResult:
    outputs: list[OutputTensor]
    response_id: str  # the caller's id when it gave one, else the server's
    prediction_id: str | None  # what feedback refers to (only with drift tracking)
    rows: int


def check_input(tensor: InputTensor, metadata: ModelMetadata, max_rows: int) -> tuple[int, int]:
    """The (rows, columns) a well-formed input tensor declares; raises 400 or 413 naming what is wrong."""
    features = len(metadata.features)
    if tensor.name is not None and tensor.name != metadata.input_name:
        raise BadRequestError(f"unknown input {tensor.name!r}; this model's input is {metadata.input_name!r}")
    if tensor.datatype not in ACCEPTED_DATATYPES:
        raise BadRequestError(f"datatype {tensor.datatype!r} is not supported; send FP32 (or FP64)")
    shape = tensor.shape
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
    return rows, columns


def rows_from_bytes(
    buffer: bytes | memoryview, datatype: str, shape: tuple[int, int], metadata: ModelMetadata, where: str
) -> NDArray[np.float32]:
    """A tensor sent as raw little-endian bytes; its size must be exactly what the shape and datatype need."""
    rows, columns = shape
    dtype = WIRE_DTYPES[datatype]
    needed = rows * columns * dtype.itemsize
    if len(buffer) != needed:
        raise BadRequestError(
            f"{where} is {len(buffer)} bytes but shape [{rows}, {columns}] of {datatype} needs {needed}"
        )
    return finite_rows(np.frombuffer(buffer, dtype=dtype), rows, columns, metadata)


def finite_rows(array: NDArray[Any], rows: int, columns: int, metadata: ModelMetadata) -> NDArray[np.float32]:
    """The values as a (rows, columns) float32 matrix; a NaN, an infinity or an FP32 overflow names its row."""
    if array.size != rows * columns:
        raise BadRequestError(
            f"the tensor has {array.size} values but shape [{rows}, {columns}] needs {rows * columns}"
        )
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


def check_outputs(names: list[Any], metadata: ModelMetadata) -> tuple[str, ...]:
    known = (metadata.label_output, metadata.probabilities_output)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BadRequestError(f"unknown outputs {unknown}; this model produces {list(known)}")
    return tuple(names)


def output_tensors(
    prediction: Prediction, metadata: ModelMetadata, wanted: tuple[str, ...] | None
) -> list[OutputTensor]:
    """The model's outputs in the model's order (the order of the metadata), or only those asked for."""
    rows = len(prediction.labels)
    outputs = [
        OutputTensor(metadata.label_output, "INT64", (rows,), prediction.labels),
        OutputTensor(
            metadata.probabilities_output, "FP32", (rows, len(metadata.class_names)), prediction.probabilities
        ),
    ]
    if wanted:
        outputs = [output for output in outputs if output.name in wanted]
    return outputs


class InferenceCore:
    """The model, its readiness, the inference metrics and the drift tracking, shared by REST and gRPC."""

    def __init__(self, model: OnnxModel, settings: Settings, logger: logging.Logger, metrics: ServiceMetrics) -> None:
        self.model = model
        self.metadata = model.metadata
        self.settings = settings
        self.logger = logger
        self.metrics = metrics
        self.server_version = version("mlstack-service")
        self.class_names = list(self.metadata.class_names)
        # A key shared by the replicas lets any of them accept feedback for any one's prediction (prediction_ids.py).
        key_file = settings.prediction_id_key_file
        self.prediction_ids = PredictionIds(load_key(key_file) if key_file is not None else None)
        # Set by the REST app once its label stores exist: every scored row, either protocol, is offered to it.
        self.prediction_log: PredictionLog | None = None
        self.drift: DriftTracking | None = None
        if settings.drift_enabled:
            monitor = DriftMonitor(
                model.package.profile,
                self.metadata.feature_names,
                self.class_names,
                settings.drift_window,
                min_samples=settings.drift_min_samples,
                ranges=[(feature.min, feature.max) for feature in self.metadata.features],
                budget=DriftBudget(
                    settings.drift_false_alarm_days, settings.drift_hold_minutes, settings.drift_max_accuracy_drop
                ),
            )
            feedback = FeedbackTracker(
                settings.feedback_max_pending,
                settings.feedback_ttl_seconds,
                settings.feedback_window,
                settings.feedback_max_pending_rows,
                own_ids=self.prediction_ids.sequence_of,
                sequences=self.prediction_ids.sequences,
            )
            sampler = (
                SourceSampler(
                    max(1, int(settings.drift_window * settings.drift_source_share)), settings.drift_slice_seconds
                )
                if settings.drift_source_share < 1
                else None
            )
            self.drift = DriftTracking(monitor, feedback, sampler=sampler)
            metrics.attach_drift(self.drift, settings.drift_psi_threshold)
        self.ready = False
        self.draining = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    # --- readiness -------------------------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        return self.ready and not self.draining

    def not_ready_reason(self) -> str:
        return "shutting down" if self.draining else "the model is loading"

    def begin_drain(self) -> None:
        """SIGTERM: stop advertising readiness; in-flight and straggling requests are still served."""
        self.draining = True
        self.metrics.ready = 0
        log_event(self.logger, logging.INFO, "draining", grace_period_seconds=self.settings.grace_period_seconds)

    def shut_down(self) -> None:
        self.ready = False
        # A request still in the thread finishes (threads cannot be cancelled); queued ones are dropped.
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- what the server and the model are ---------------------------------------------------------

    def check_model(self, name: str, model_version: str | None) -> None:
        if name != self.metadata.name:
            raise ModelNotFoundError(f"model {name!r} is not served here; this server serves {self.metadata.name!r}")
        if model_version is not None and model_version != self.metadata.version:
            raise ModelNotFoundError(
                f"version {model_version!r} of {name!r} is not served here; "
                f"this server serves {self.metadata.version!r}"
            )

    def model_metadata(self) -> dict[str, Any]:
        return {
            "name": self.metadata.name,
            "versions": [self.metadata.version],
            "platform": "onnxruntime",
            "inputs": [{"name": self.metadata.input_name, "datatype": "FP32", "shape": [-1, self.model.feature_count]}],
            "outputs": [
                {"name": self.metadata.label_output, "datatype": "INT64", "shape": [-1]},
                {
                    "name": self.metadata.probabilities_output,
                    "datatype": "FP32",
                    "shape": [-1, len(self.metadata.class_names)],
                },
            ],
            "parameters": {
                "features": [feature.model_dump() for feature in self.metadata.features],
                "class_names": self.metadata.class_names,
                "execution_providers": self.model.providers,
            },
        }

    # --- inference -------------------------------------------------------------------------------

    async def infer(self, request: InferRequest, request_id: str, sequence: int | None, source: str) -> InferResult:
        """Score the rows, count them, track them for drift.

        `request_id` is the transport's id for the request (a caller's trace id, or one the server issued, whose
        `sequence` it then knows); `source` is who sent it (its key's name or its address), for drift sampling.
        """
        if not self.ready:
            raise ModelNotReadyError("the model is still loading")
        rows = len(request.rows)
        started = time.perf_counter()
        if rows <= self.settings.inline_rows:
            prediction = self.model.predict(request.rows)
        else:
            # Large batches run beside the event loop so health checks and small requests are not held up.
            loop = asyncio.get_running_loop()
            prediction = await loop.run_in_executor(self._executor, self.model.predict, request.rows)
        counts = np.bincount(prediction.labels, minlength=len(self.class_names))
        self.metrics.observe_inference(
            time.perf_counter() - started, rows, dict(zip(self.class_names, counts.tolist(), strict=False))
        )
        # A caller's id (X-Request-ID or the body's "id") is echoed for tracing, but feedback refers to the server's
        # own signed id only, so no caller can choose, guess or collide with another's prediction id.
        response_id = request.request_id or request_id
        prediction_id = None
        if self.drift is not None or self.prediction_log is not None:
            if sequence is None:  # the request id is the caller's
                prediction_id, sequence = self.prediction_ids.issue()
            else:
                prediction_id = request_id
            if self.drift is not None:
                self.drift.observe(request.rows, prediction.probabilities, prediction_id, sequence, source)
            if self.prediction_log is not None:
                self.prediction_log.offer(prediction_id, request.rows, prediction.probabilities)
        return InferResult(output_tensors(prediction, self.metadata, request.outputs), response_id, prediction_id, rows)
