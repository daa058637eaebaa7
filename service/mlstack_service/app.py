"""The ASGI application: routes, body limits, metrics, request logs, errors as {"error": ...}.

What a request means is decided in inference.py, shared with gRPC (grpc_service.py); this module only routes, reads
and answers HTTP, and protocol.py decodes and encodes the bodies.

Plain ASGI rather than a framework: the service has seven routes, and the request path is the product
(make bench compares it with a bare FastAPI endpoint and with MLServer).

Two ports, one app: the public port (MLSTACK_PORT) serves inference, model metadata and health; the internal port
(MLSTACK_INTERNAL_PORT) serves /metrics, the feedback route and health, and is never exposed by the load balancer.
Each answers the other's routes with 404. With API keys configured, infer and model metadata need a key, and the
feedback route needs a feedback key (auth.py); health stays open for the load balancer and the kubelet.
"""

import asyncio
import contextlib
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import boto3
import orjson

from mlstack_service.auth import ApiKeys, RateLimiter, presented_key
from mlstack_service.drift import UnknownPredictionError
from mlstack_service.errors import (
    BadRequestError,
    InferenceError,
    MethodNotAllowedError,
    PayloadTooLargeError,
    RateLimitedError,
    RouteNotFoundError,
    ServiceError,
    UnauthorizedError,
)
from mlstack_service.feedback_store import FeedbackStore
from mlstack_service.http_body import DISCARD_LIMIT_FACTOR, discard_body
from mlstack_service.inference import EXTENSIONS, SERVER_NAME, InferenceCore
from mlstack_service.local_objects import LocalObjects
from mlstack_service.logs import RequestLog, log_event
from mlstack_service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from mlstack_service.metrics import ServiceMetrics
from mlstack_service.openapi import openapi_document
from mlstack_service.prediction_ids import PredictionIds
from mlstack_service.prediction_log import PredictionLog
from mlstack_service.protocol import BINARY_CONTENT_TYPE, encode_infer_response, parse_infer_request
from mlstack_service.realized import RealizedPerformance
from mlstack_service.runtime import OnnxModel
from mlstack_service.settings import Settings

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"
REQUEST_ID_HEADER = b"x-request-id"
INFERENCE_HEADER_LENGTH = b"inference-header-content-length"  # the binary tensor extension (protocol.py)
PREDICTION_ID_HEADER = b"x-prediction-id"  # the id feedback refers to: always the server's own, signed
SEQUENCE_KEY = "mlstack.sequence"  # an ASGI scope extension: the sequence number in a generated request id
CLIENT_KEY = "mlstack.client"  # the caller's key name (or address): rate limits and the drift window's sampling
OPEN, API, FEEDBACK = "open", "api", "feedback"  # who may call a route
HEALTH_PATHS = ("/v2/health/live", "/v2/health/ready")
REQUEST_ID_PATTERN = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
PAYLOAD_LOG_BYTES = 1024
# After uvicorn's own grace period, within the pod's: one batch's upload takes well under a second.
PREDICTION_LOG_CLOSE_SECONDS = 5.0
MODEL_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(?:/(ready|infer|feedback))?$")


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: bytes = JSON
    rows: int = 0
    headers: tuple[tuple[bytes, bytes], ...] = ()


class ClientDisconnectedError(Exception):
    """The client went away before sending its whole body."""


class SecondProtocol(Protocol):
    """Another protocol's server (gRPC) that lives and drains with this app."""

    async def start(self) -> None: ...
    def drain(self) -> None: ...
    async def stop(self, grace_seconds: float) -> None: ...


class InferenceApp:
    """Serves one model over OIP v2."""

    def __init__(
        self,
        model: OnnxModel,
        settings: Settings,
        logger: logging.Logger,
        metrics: ServiceMetrics,
        *,
        api_keys: ApiKeys | None = None,
        feedback_keys: ApiKeys | None = None,
    ) -> None:
        self.core = InferenceCore(model, settings, logger, metrics)
        self.model = model
        self.metadata = model.metadata
        self.settings = settings
        self.logger = logger
        self.metrics = metrics
        self._prediction_ids: PredictionIds = self.core.prediction_ids
        self._request_ids = _RequestIds(self._prediction_ids)
        self._internal_port = settings.internal_port
        self._api_keys = api_keys
        self._feedback_keys = feedback_keys if feedback_keys is not None else api_keys
        self._rate_limiter = (
            RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
            if settings.rate_limit_per_second > 0
            else None
        )
        self.drift = self.core.drift
        self._drift_task: asyncio.Task[None] | None = None
        self.grpc: SecondProtocol | None = None
        self._grpc_stopping: asyncio.Future[None] | None = None
        self.startup_failure: str | None = None
        self._build_label_stores(settings)
        # gRPC and REST predictions alike go through the core, which offers them to the log.
        self.core.prediction_log = self.prediction_log
        self.request_log = RequestLog(sys.stdout.buffer)
        self._flusher: asyncio.Task[None] | None = None
        server_version = self.core.server_version
        self._static = {
            "/v2": orjson.dumps(
                {
                    "name": SERVER_NAME,
                    "version": server_version,
                    "extensions": list(EXTENSIONS),
                    # What a deploy's smoke test compares with the commit it deployed.
                    "build": {"commit": settings.build_commit},
                }
            ),
            "/v2/health/live": orjson.dumps({"live": True}),
            "/openapi.json": orjson.dumps(openapi_document(self.metadata, server_version)),
        }
        self._model_metadata = orjson.dumps(self.core.model_metadata())

    def _build_label_stores(self, settings: Settings) -> None:
        """The prediction log, the shared feedback store and the label join's summary, where settings name them."""
        self.prediction_log: PredictionLog | None = None
        self.feedback_store: FeedbackStore | None = None
        self.realized: RealizedPerformance | None = None
        self._realized_task: asyncio.Task[None] | None = None
        self._store_executor: ThreadPoolExecutor | None = None
        uris = (settings.prediction_log_uri, settings.feedback_uri, settings.realized_summary_uri)
        if not any(uris):
            return
        s3 = boto3.client("s3")
        local = LocalObjects(Path("/"))

        def located(uri: str) -> tuple[Any, str, str]:
            """(client, bucket, rest): file:// URIs are host folders (local_objects.py), s3:// ones S3."""
            bucket, _, rest = uri.removeprefix("file://").removeprefix("/").removeprefix("s3://").partition("/")
            return (local if uri.startswith("file://") else s3), bucket, rest

        self._store_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="label-store")
        if settings.prediction_log_uri:
            client, bucket, prefix = located(settings.prediction_log_uri)
            self.prediction_log = PredictionLog(
                client,
                bucket,
                prefix,
                model_name=self.metadata.name,
                model_version=self.metadata.version,
                feature_names=self.metadata.feature_names,
                instance=self._prediction_ids.instance,
                logger=self.logger,
                sample_rate=settings.prediction_log_sample_rate,
                include_features=settings.prediction_log_features,
                batch_rows=settings.prediction_log_batch_rows,
                flush_seconds=settings.prediction_log_flush_seconds,
                max_rows_per_second=settings.prediction_log_max_rows_per_second,
                max_buffered_rows=settings.prediction_log_max_buffered_rows,
            )
        if settings.feedback_uri:
            client, bucket, prefix = located(settings.feedback_uri)
            self.feedback_store = FeedbackStore(client, bucket, prefix)
        if settings.realized_summary_uri:
            client, bucket, key = located(settings.realized_summary_uri)
            self.realized = RealizedPerformance(client, bucket, key, self.metadata.version)
        self.metrics.attach_labels(self.prediction_log, self.feedback_store, self.realized)

    # --- readiness -------------------------------------------------------------------------------

    def begin_drain(self) -> None:
        """SIGTERM: stop advertising readiness on every protocol; in-flight and straggling requests are still served."""
        self.core.begin_drain()
        if self.grpc is not None:
            self.grpc.drain()

    async def stop_second_protocol(self) -> None:
        """Stop accepting gRPC calls and let those in flight finish, when REST stops accepting too."""
        if self.grpc is None:
            return
        if self._grpc_stopping is None:
            self._grpc_stopping = asyncio.ensure_future(self.grpc.stop(self.settings.grace_period_seconds))
        await self._grpc_stopping

    @property
    def ready(self) -> bool:
        return self.core.ready

    @property
    def draining(self) -> bool:
        return self.core.draining

    @property
    def accepting(self) -> bool:
        return self.core.accepting

    # --- ASGI ------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._flusher = asyncio.create_task(self.request_log.flush_periodically())
                if self.drift is not None:
                    self._drift_task = asyncio.create_task(self._refresh_drift())
                if self.grpc is not None:
                    try:
                        await self.grpc.start()
                    except OSError as error:  # a port that cannot be bound: refuse to start, in one line
                        self.startup_failure = str(error)
                        await send({"type": "lifespan.startup.failed", "message": str(error)})
                        return
                if self.prediction_log is not None:
                    self.prediction_log.start()
                if self.realized is not None:
                    self._realized_task = asyncio.create_task(self._refresh_realized())
                self.core.ready = True
                self.metrics.ready = 1
                log_event(
                    self.logger,
                    logging.INFO,
                    "ready",
                    model=self.metadata.name,
                    version=self.metadata.version,
                    providers=self.model.providers,
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop_second_protocol()
                self.core.shut_down()
                if self._drift_task is not None:
                    self._drift_task.cancel()
                if self._realized_task is not None:
                    self._realized_task.cancel()
                if self.prediction_log is not None:  # the drain writes the last partial batch
                    await asyncio.get_running_loop().run_in_executor(
                        None, self.prediction_log.close, PREDICTION_LOG_CLOSE_SECONDS
                    )
                if self._store_executor is not None:  # in-flight feedback was answered before shutdown began
                    self._store_executor.shutdown(wait=False, cancel_futures=True)
                if self._flusher is not None:
                    self._flusher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._flusher
                self.request_log.flush()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = self._request_ids.for_request(scope)
        method: str = scope["method"]
        path: str = scope["path"]
        route = "unmatched"
        metrics = self.metrics
        metrics.in_flight += 1
        server = scope.get("server")
        internal = server is not None and server[1] == self._internal_port
        try:
            route, handler, arguments, access = self._route(method, path, internal)
            if access != OPEN:
                await self._admit(scope, receive, access)
            response = await handler(scope, receive, request_id, *arguments)
        except ServiceError as error:
            response = self._error_response(error, request_id, path)
        except ClientDisconnectedError:
            metrics.in_flight -= 1
            log_event(self.logger, logging.INFO, "client disconnected", request_id=request_id, path=path)
            return
        except Exception as error:
            response = self._error_response(
                InferenceError(f"unexpected {type(error).__name__}"), request_id, path, error
            )
        metrics.in_flight -= 1
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", response.content_type),
                    (b"content-length", str(len(response.body)).encode()),
                    (REQUEST_ID_HEADER, request_id.encode()),
                    *response.headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": response.body})
        elapsed = time.perf_counter() - started
        metrics.observe_request(route, method, response.status, elapsed, "rest")
        if self.logger.isEnabledFor(logging.INFO):
            self.request_log.write(
                {
                    "level": "info",
                    "event": "request",
                    "protocol": "rest",
                    "request_id": request_id,
                    "method": method,
                    "path": path,
                    "route": route,
                    "status": response.status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "rows": response.rows,
                    "client": scope.get(CLIENT_KEY),
                }
            )

    def _error_response(
        self, error: ServiceError, request_id: str, path: str, cause: BaseException | None = None
    ) -> Response:
        if isinstance(error, InferenceError):
            self.logger.error(
                "inference failed",
                exc_info=cause or error.__cause__ or error,
                extra={"fields": {"request_id": request_id, "error_id": error.error_id, "path": path}},
            )
        return Response(error.status, orjson.dumps({"error": str(error)}), headers=error.headers)

    async def _admit(self, scope: Scope, receive: Receive, access: str) -> None:
        """Check the caller's key (where keys are configured) and its rate; raises 401 or 429."""
        try:
            scope[CLIENT_KEY] = self.admit(scope["headers"], _client_address(scope), scope["path"], access)
        except ServiceError:
            await self._refuse_body(receive)
            raise

    def admit(self, headers: list[tuple[bytes, bytes]], address: str, what: str, access: str) -> str:
        """Who the caller is (its key's name, or its address without keys); raises 401 or 429.

        Shared with gRPC, whose metadata carries the same headers.
        """
        keys = self._api_keys if access == API else self._feedback_keys
        client = None
        if keys is not None:
            client = keys.client_for(headers)
            if client is None:
                if presented_key(headers) is None:
                    raise UnauthorizedError(
                        f"{what} needs {'an API' if access == API else 'a feedback'} key: "
                        "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
                    )
                raise UnauthorizedError(f"the key presented for {what} is not valid")
        source = client if client is not None else address
        if access == API and self._rate_limiter is not None:
            retry_after = self._rate_limiter.retry_after(source, time.monotonic())
            if retry_after:
                raise RateLimitedError(
                    f"client {source!r} is over its limit of {self.settings.rate_limit_per_second:g} requests a "
                    f"second; retry after {retry_after} s",
                    retry_after,
                )
        return source

    async def _refuse_body(self, receive: Receive) -> None:
        # Read the refused request's body, so the client gets the answer rather than a connection reset.
        await discard_body(receive, self.settings.max_body_bytes * DISCARD_LIMIT_FACTOR)

    # --- routing ---------------------------------------------------------------------------------

    def _route(
        self, method: str, path: str, internal: bool
    ) -> tuple[str, Callable[..., Awaitable[Response]], tuple[Any, ...], str]:
        """(route template for metrics, handler, handler arguments, who may call); 404/405 for anything else."""
        if path == "/v2/health/ready":
            self._allow(method, "GET")
            return path, self._ready_route, (), OPEN
        if path in HEALTH_PATHS:
            self._allow(method, "GET")
            return path, self._static_route, (path,), OPEN
        if internal:
            return self._internal_route(method, path)
        if path in self._static:
            self._allow(method, "GET")
            return path, self._static_route, (path,), OPEN
        match = MODEL_PATH.match(path)
        if match is None or match.group(3) == "feedback":  # /metrics and feedback live on the internal port only
            raise RouteNotFoundError(f"no route {path}; see /openapi.json")
        name, model_version, action = match.groups()
        template = (
            "/v2/models/{name}" + ("/versions/{version}" if model_version else "") + (f"/{action}" if action else "")
        )
        if action == "infer":
            self._allow(method, "POST")
            return template, self._infer_route, (name, model_version), API
        self._allow(method, "GET")
        if action == "ready":  # a health route: open, like /v2/health/ready
            return template, self._model_ready_route, (name, model_version), OPEN
        return template, self._model_metadata_route, (name, model_version), API

    def _internal_route(
        self, method: str, path: str
    ) -> tuple[str, Callable[..., Awaitable[Response]], tuple[Any, ...], str]:
        if path == "/metrics":
            # Open on this port: only the monitoring namespace reaches it (the NetworkPolicy), never the internet.
            self._allow(method, "GET")
            return path, self._metrics_route, (), OPEN
        match = MODEL_PATH.match(path)
        if match is None or match.group(3) != "feedback":
            raise RouteNotFoundError(
                f"no route {path} on the internal port; it serves /metrics, /v2/models/{{name}}/feedback and health"
            )
        name, model_version, _ = match.groups()
        template = "/v2/models/{name}" + ("/versions/{version}" if model_version else "") + "/feedback"
        self._allow(method, "POST")
        return template, self._feedback_route, (name, model_version), FEEDBACK

    @staticmethod
    def valid_request_id(candidate: bytes) -> bool:
        """Whether a caller's request id is a sane token to echo and log."""
        return REQUEST_ID_PATTERN.match(candidate) is not None

    @staticmethod
    def _allow(method: str, allowed: str) -> None:
        if method != allowed and not (allowed == "GET" and method == "HEAD"):
            raise MethodNotAllowedError(f"{method} is not allowed here; use {allowed}")

    def _check_model(self, name: str, model_version: str | None) -> None:
        self.core.check_model(name, model_version)

    # --- handlers --------------------------------------------------------------------------------

    async def _static_route(self, scope: Scope, receive: Receive, request_id: str, path: str) -> Response:
        return Response(200, self._static[path])

    async def _ready_route(self, scope: Scope, receive: Receive, request_id: str) -> Response:
        if self.accepting:
            return Response(200, b'{"ready":true}')
        return Response(503, orjson.dumps({"ready": False, "error": self.core.not_ready_reason()}))

    async def _metrics_route(self, scope: Scope, receive: Receive, request_id: str) -> Response:
        return Response(200, self.metrics.exposition(), METRICS_CONTENT_TYPE.encode())

    async def _model_metadata_route(
        self, scope: Scope, receive: Receive, request_id: str, name: str, model_version: str | None
    ) -> Response:
        self._check_model(name, model_version)
        return Response(200, self._model_metadata)

    async def _model_ready_route(
        self, scope: Scope, receive: Receive, request_id: str, name: str, model_version: str | None
    ) -> Response:
        self._check_model(name, model_version)
        return await self._ready_route(scope, receive, request_id)

    async def _infer_route(
        self, scope: Scope, receive: Receive, request_id: str, name: str, model_version: str | None
    ) -> Response:
        self._check_model(name, model_version)
        header_length = None
        for header, value in scope["headers"]:
            if header == INFERENCE_HEADER_LENGTH:
                if not value.isdigit():
                    raise BadRequestError("Inference-Header-Content-Length is not a number")
                header_length = int(value)
        body = await self._read_body(scope, receive)
        if self.settings.log_payloads:
            log_event(
                self.logger,
                logging.INFO,
                "payload",
                request_id=request_id,
                body=body[:PAYLOAD_LOG_BYTES].decode(errors="replace"),
            )
        parsed = parse_infer_request(body, self.metadata, self.settings.max_rows, header_length)
        source = scope.get(CLIENT_KEY) or _client_address(scope)
        result = await self.core.infer(parsed.request, request_id, scope.get(SEQUENCE_KEY), source)
        headers: tuple[tuple[bytes, bytes], ...] = ()
        if result.prediction_id is not None:
            headers = ((PREDICTION_ID_HEADER, result.prediction_id.encode()),)
        body, json_length = encode_infer_response(result, self.metadata, parsed.binary_outputs)
        if json_length is None:
            return Response(200, body, rows=result.rows, headers=headers)
        headers = (*headers, (INFERENCE_HEADER_LENGTH, str(json_length).encode()))
        return Response(200, body, BINARY_CONTENT_TYPE, rows=result.rows, headers=headers)

    async def _feedback_route(
        self, scope: Scope, receive: Receive, request_id: str, name: str, model_version: str | None
    ) -> Response:
        """Ground truth for an earlier inference: {"id": "<its X-Prediction-ID>", "labels": [0, 1, ...]}."""
        self._check_model(name, model_version)
        if self.drift is None and self.feedback_store is None:
            raise RouteNotFoundError(
                "feedback is off on this server (MLSTACK_DRIFT_ENABLED=false, no MLSTACK_FEEDBACK_URI)"
            )
        try:
            document = orjson.loads(await self._read_body(scope, receive))
        except orjson.JSONDecodeError as error:
            raise BadRequestError(f"malformed JSON: {error}") from None
        if not isinstance(document, dict) or not isinstance(document.get("id"), str):
            raise BadRequestError("the body must be an object with the infer response's 'id' and the 'labels'")
        prediction_id, labels = document["id"], document.get("labels")
        if self.feedback_store is None:
            assert self.drift is not None
            recorded = self.drift.record_feedback(prediction_id, labels)
            return Response(200, orjson.dumps({"id": prediction_id, "recorded": recorded}))
        # Shared store: any replica's signed id is accepted, and S3 keeps the first label (feedback_store.py).
        if not self._prediction_ids.verify(prediction_id):
            raise UnknownPredictionError(f"prediction id {prediction_id!r} is unknown or expired")
        if (
            not isinstance(labels, list)
            or not 0 < len(labels) <= self.settings.max_rows
            or not all(type(label) is int and 0 <= label < len(self.metadata.class_names) for label in labels)
        ):
            raise BadRequestError(
                f"'labels' must be a list of 1 to {self.settings.max_rows} class indices "
                f"(0 to {len(self.metadata.class_names) - 1}), one per row of the prediction"
            )
        if self.drift is not None:  # this process's own prediction, still in memory: the rolling accuracy
            with contextlib.suppress(UnknownPredictionError):
                self.drift.record_feedback(prediction_id, labels)  # a wrong row count is a 400, before storing
        assert self._store_executor is not None
        loop = asyncio.get_running_loop()
        recorded = await loop.run_in_executor(self._store_executor, self.feedback_store.record, prediction_id, labels)
        return Response(200, orjson.dumps({"id": prediction_id, "recorded": recorded}))

    async def _refresh_drift(self) -> None:
        """Recompute drift statistics off the request path."""
        assert self.drift is not None
        while True:
            await asyncio.sleep(self.settings.drift_refresh_seconds)
            self.drift.refresh()

    async def _refresh_realized(self) -> None:
        """Read the label join's summary off the request path."""
        assert self.realized is not None
        assert self._store_executor is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(self._store_executor, self.realized.refresh)
            except Exception as error:  # a bug here must not end the refreshes for the process's lifetime
                log_event(self.logger, logging.ERROR, "realized summary refresh failed", reason=repr(error))
            await asyncio.sleep(self.settings.realized_refresh_seconds)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.max_body_bytes
        for header, value in scope["headers"]:
            if header == b"content-length":
                if not value.isdigit():
                    raise BadRequestError("Content-Length is not a number")
                if int(value) > limit:
                    await discard_body(receive, limit * DISCARD_LIMIT_FACTOR)
                    raise PayloadTooLargeError(f"the body is {int(value)} bytes; the limit is {limit}")
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnectedError
            chunk = message.get("body", b"")
            total += len(chunk)
            more_body = message.get("more_body", False)
            if total > limit:
                if more_body:
                    await discard_body(receive, limit * DISCARD_LIMIT_FACTOR)
                raise PayloadTooLargeError(f"the body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
            if not more_body:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class _RequestIds:
    """The caller's X-Request-ID when it is a sane token, else a fresh signed prediction id."""

    def __init__(self, ids: PredictionIds) -> None:
        self._ids = ids

    def for_request(self, scope: Scope) -> str:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        for name, value in headers:
            if name == REQUEST_ID_HEADER and REQUEST_ID_PATTERN.match(value):
                return value.decode()
        request_id, sequence = self._ids.issue()
        scope[SEQUENCE_KEY] = sequence
        return request_id
