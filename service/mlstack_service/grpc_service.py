"""OIP v2 over gRPC (inference.GRPCInferenceService) and grpc.health.v1, on MLSTACK_GRPC_PORT.

The server runs on the same event loop as the REST app (grpc.aio) and shares its InferenceCore: one model, one set
of checks, one set of metrics and one drift window. This module only decodes the messages and encodes the answers.
A ServiceError becomes the status code REST's status maps to, so a client's mistake is never INTERNAL.

Tensors arrive as typed `contents` or as `raw_input_contents` (little-endian bytes); the answer uses
`raw_output_contents` when the request sent raw inputs (as Triton's clients do, and read only), typed `contents`
otherwise. API keys and rate limits apply as on REST, read from the call's metadata (`authorization`, `x-api-key`).
The health service answers SERVING for "" and for the inference service once the model is ready, NOT_SERVING before
and while draining, so Kubernetes' native gRPC probes follow the same readiness as /v2/health/ready.

The message classes come from proto/oip_v2_pb2.py (make protos). Triton's client library registers the same
`inference.*` message names from its own file, so the two cannot be imported into one process; the tests talk to the
server process with Triton's client only.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mlstack_service.app import API, OPEN, InferenceApp
from mlstack_service.errors import BadRequestError, InferenceError, ServiceError
from mlstack_service.inference import (
    EXTENSIONS,
    SERVER_NAME,
    WIRE_DTYPES,
    InferenceCore,
    InferRequest,
    InferResult,
    InputTensor,
    check_input,
    check_outputs,
    finite_rows,
    rows_from_bytes,
)
from mlstack_service.proto import oip_v2_pb2 as pb

SERVICE = "inference.GRPCInferenceService"
REQUEST_ID_KEY = "x-request-id"
PREDICTION_ID_KEY = "x-prediction-id"
# The gRPC code for each HTTP status the service answers with (the mapping of grpc/grpc's doc/http-grpc-status-
# mapping.md, read backwards); 413 and 429 are both RESOURCE_EXHAUSTED, as gRPC itself reports an oversized message.
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
# Where each datatype's values go in InferTensorContents.
CONTENTS_FIELDS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents"}
HEALTH_SERVICES = ("", SERVICE)

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class _Health(health.aio.HealthServicer):  # type: ignore[misc]
    """grpc.health.v1 whose Check reads the service's readiness itself, so it turns at the moment readiness does."""

    def __init__(self, core: InferenceCore) -> None:
        super().__init__()
        self._core = core

    async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802 (the RPC's name)
        if request.service in HEALTH_SERVICES:
            serving = self._core.accepting
            return health_pb2.HealthCheckResponse(
                status=health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
            )
        return await super().Check(request, context)


class GrpcServer:
    """The gRPC port's server; started, drained and stopped by the REST app's lifespan (app.SecondProtocol)."""

    def __init__(self, app: InferenceApp, host: str, port: int) -> None:
        self._app = app
        self._core: InferenceCore = app.core
        self._address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._health = _Health(self._core)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self._drain_task: asyncio.Future[None] | None = None
        self._model_metadata = _model_metadata_response(self._core.model_metadata())

    async def start(self) -> None:
        """Listen; raises OSError naming the address when the port cannot be bound."""
        # Made here, not in __init__: a grpc.aio server belongs to the loop running when it is made (uvicorn's).
        self._loop = asyncio.get_running_loop()
        self._server = grpc.aio.server(
            options=[
                # The same body limit as REST; gRPC answers a larger message with RESOURCE_EXHAUSTED itself.
                ("grpc.max_receive_message_length", self._app.settings.max_body_bytes),
                # A second server on the same port would otherwise share it silently (SO_REUSEPORT).
                ("grpc.so_reuseport", 0),
            ]
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, self._handlers()),))
        try:
            bound = self._server.add_insecure_port(self._address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise OSError(f"cannot listen for gRPC on {self._address}")
        for service in HEALTH_SERVICES:  # what Watch streams report; Check reads the readiness itself
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        await self._server.start()

    def drain(self) -> None:
        """SIGTERM (called from the signal handler, on the loop's thread): Watch streams hear NOT_SERVING."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._announce_drain)

    def _announce_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._health.enter_graceful_shutdown())

    async def stop(self, grace_seconds: float) -> None:
        """Refuse new calls, let those in flight finish within the grace period."""
        if self._server is not None:
            await self._server.stop(grace_seconds)

    # --- the service's methods -------------------------------------------------------------------

    def _handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        methods: list[tuple[str, Any, Any, Handler]] = [
            ("ServerLive", pb.ServerLiveRequest, pb.ServerLiveResponse, self._server_live),
            ("ServerReady", pb.ServerReadyRequest, pb.ServerReadyResponse, self._server_ready),
            ("ServerMetadata", pb.ServerMetadataRequest, pb.ServerMetadataResponse, self._server_metadata),
            ("ModelReady", pb.ModelReadyRequest, pb.ModelReadyResponse, self._model_ready),
            ("ModelMetadata", pb.ModelMetadataRequest, pb.ModelMetadataResponse, self._model_metadata_call),
            ("ModelInfer", pb.ModelInferRequest, pb.ModelInferResponse, self._model_infer),
        ]
        # Messages are decoded in the handler, not by grpc's request_deserializer, whose failure grpc reports as
        # INTERNAL: bytes that are not the message are the client's mistake.
        return {
            name: grpc.unary_unary_rpc_method_handler(
                _decoding(request, handler), response_serializer=response.SerializeToString
            )
            for name, request, response, handler in methods
        }

    async def _server_live(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self._answer(context, "/v2/health/live", OPEN, lambda _: pb.ServerLiveResponse(live=True))

    async def _server_ready(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self._answer(
            context, "/v2/health/ready", OPEN, lambda _: pb.ServerReadyResponse(ready=self._core.accepting)
        )

    async def _server_metadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self._answer(
            context,
            "/v2",
            OPEN,
            lambda _: pb.ServerMetadataResponse(
                name=SERVER_NAME, version=self._core.server_version, extensions=list(EXTENSIONS)
            ),
        )

    async def _model_ready(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def ready(_: str) -> Any:
            self._core.check_model(request.name, request.version or None)
            return pb.ModelReadyResponse(ready=self._core.accepting)

        return await self._answer(context, _route(request.version, "/ready"), OPEN, ready)

    async def _model_metadata_call(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def metadata(_: str) -> Any:
            self._core.check_model(request.name, request.version or None)
            return self._model_metadata

        return await self._answer(context, _route(request.version, ""), API, metadata)

    async def _model_infer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        route = _route(request.model_version, "/infer")
        invocation = context.invocation_metadata() or ()
        request_id, sequence = self._request_id(invocation)
        # Until answered: a call the client cancels ends here (asyncio.CancelledError) and counts as nginx's 499,
        # client closed, which no error-rate rule reads as the server's failure.
        status, rows = 499, 0
        self._core.metrics.in_flight += 1
        try:
            source = self._app.admit(_headers(invocation), _peer_address(context), f"{SERVICE}/ModelInfer", API)
            self._core.check_model(request.model_name, request.model_version or None)
            infer_request, raw = decode_infer_request(request, self._core)
            result = await self._core.infer(infer_request, request_id, sequence, source)
            rows = result.rows
            trailing = [(REQUEST_ID_KEY, request_id)]
            if result.prediction_id is not None:
                trailing.append((PREDICTION_ID_KEY, result.prediction_id))
            context.set_trailing_metadata(tuple(trailing))
            response = encode_infer_response(result, self._core, raw)
            status = 200
            return response
        except ServiceError as error:
            status = error.status
            await self._abort(context, error, request_id, route)
        except Exception as error:
            status = 500
            await self._abort(context, InferenceError(f"unexpected {type(error).__name__}"), request_id, route, error)
        finally:
            self._core.metrics.in_flight -= 1
            self._observe(route, status, started, request_id, rows)
        raise AssertionError("unreachable: abort raises")

    # --- shared plumbing -------------------------------------------------------------------------

    async def _answer(
        self, context: grpc.aio.ServicerContext, route: str, access: str, answer: Callable[[str], Any]
    ) -> Any:
        started = time.perf_counter()
        request_id, _ = self._request_id(context.invocation_metadata() or ())
        status = 200
        try:
            if access == API:
                self._app.admit(_headers(context.invocation_metadata() or ()), _peer_address(context), route, access)
            return answer(request_id)
        except ServiceError as error:
            status = error.status
            await self._abort(context, error, request_id, route)
        finally:
            self._observe(route, status, started, request_id, 0)
        raise AssertionError("unreachable: abort raises")

    def _request_id(self, invocation: Any) -> tuple[str, int | None]:
        for key, value in invocation:
            if key == REQUEST_ID_KEY and isinstance(value, str):
                candidate = value.encode()
                if self._app.valid_request_id(candidate):
                    return value, None
        request_id, sequence = self._core.prediction_ids.issue()
        return request_id, sequence

    async def _abort(
        self,
        context: grpc.aio.ServicerContext,
        error: ServiceError,
        request_id: str,
        route: str,
        cause: BaseException | None = None,
    ) -> None:
        if isinstance(error, InferenceError):
            self._core.logger.error(
                "inference failed",
                exc_info=cause or error.__cause__ or error,
                extra={"fields": {"request_id": request_id, "error_id": error.error_id, "path": route}},
            )
        trailing = [(REQUEST_ID_KEY, request_id)]
        trailing += [(name.decode(), value.decode()) for name, value in error.headers]
        await context.abort(STATUS_CODES.get(error.status, grpc.StatusCode.INTERNAL), str(error), tuple(trailing))

    def _observe(self, route: str, status: int, started: float, request_id: str, rows: int) -> None:
        elapsed = time.perf_counter() - started
        self._core.metrics.observe_request(route, "POST", status, elapsed, "grpc")
        if self._core.logger.isEnabledFor(logging.INFO):
            self._app.request_log.write(
                {
                    "level": "info",
                    "event": "request",
                    "protocol": "grpc",
                    "request_id": request_id,
                    "method": "POST",
                    "path": route,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "rows": rows,
                }
            )


def _decoding(message_type: Any, handler: Handler) -> Handler:
    async def decode_then_handle(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            request = message_type.FromString(raw)
        except DecodeError:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {message_type.DESCRIPTOR.full_name}"
            )
        return await handler(request, context)

    return decode_then_handle


def decode_infer_request(message: Any, core: InferenceCore) -> tuple[InferRequest, bool]:
    """The request's rows, id and outputs, and whether its tensor came as raw bytes; raises 400 or 413."""
    metadata = core.metadata
    if len(message.inputs) != 1:
        raise BadRequestError(f"this model takes one input tensor ({metadata.input_name!r}), got {len(message.inputs)}")
    tensor = message.inputs[0]
    rows, columns = check_input(
        InputTensor(tensor.name or None, tensor.datatype, list(tensor.shape)), metadata, core.settings.max_rows
    )
    raw = len(message.raw_input_contents) > 0
    filled = [field.name for field, _ in tensor.contents.ListFields()]
    if raw:
        if len(message.raw_input_contents) != 1:
            raise BadRequestError(
                f"raw_input_contents has {len(message.raw_input_contents)} entries; send one per input (1)"
            )
        if filled:
            raise BadRequestError("inputs[0] has both 'contents' and raw_input_contents; send one")
        matrix = rows_from_bytes(
            message.raw_input_contents[0], tensor.datatype, (rows, columns), metadata, "raw_input_contents[0]"
        )
    else:
        expected = CONTENTS_FIELDS[tensor.datatype]
        if filled and filled != [expected]:
            raise BadRequestError(f"{tensor.datatype} values go in contents.{expected}; got contents.{filled[0]}")
        values = getattr(tensor.contents, expected)
        array = np.asarray(values, dtype=np.float32 if tensor.datatype == "FP32" else np.float64)
        matrix = finite_rows(array, rows, columns, metadata)
    outputs = check_outputs([output.name for output in message.outputs], metadata) if message.outputs else None
    return InferRequest(matrix, message.id or None, outputs), raw


def encode_infer_response(result: InferResult, core: InferenceCore, raw: bool) -> Any:
    response = pb.ModelInferResponse(
        model_name=core.metadata.name, model_version=core.metadata.version, id=result.response_id
    )
    for output in result.outputs:
        tensor = response.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        if raw:
            response.raw_output_contents.append(output.data.astype(WIRE_DTYPES[output.datatype], copy=False).tobytes())
        else:
            getattr(tensor.contents, CONTENTS_FIELDS[output.datatype]).extend(output.data.ravel().tolist())
    return response


def _model_metadata_response(document: dict[str, Any]) -> Any:
    def tensors(items: list[dict[str, Any]]) -> list[Any]:
        return [
            pb.ModelMetadataResponse.TensorMetadata(name=item["name"], datatype=item["datatype"], shape=item["shape"])
            for item in items
        ]

    return pb.ModelMetadataResponse(
        name=document["name"],
        versions=document["versions"],
        platform=document["platform"],
        inputs=tensors(document["inputs"]),
        outputs=tensors(document["outputs"]),
    )


def _route(model_version: str, action: str) -> str:
    """The REST route template of the same operation: what the request metrics are labelled with."""
    return "/v2/models/{name}" + ("/versions/{version}" if model_version else "") + action


def _headers(invocation: Any) -> list[tuple[bytes, bytes]]:
    return [(key.encode(), value.encode()) for key, value in invocation if isinstance(value, str)]


def _peer_address(context: grpc.aio.ServicerContext) -> str:
    """ipv4:10.0.0.1:5000 -> 10.0.0.1; ipv6:[::1]:5000 -> ::1."""
    peer: str = context.peer() or "unknown"
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rpartition("]")[0].lstrip("[") or rest
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return peer
