"""Process lifecycle: load and verify the model, warm it up, serve, and drain on SIGTERM.

On SIGTERM readiness turns false at once; the server keeps serving for `drain_seconds` (so load balancers
stop sending), then stops accepting, lets in-flight requests finish within `grace_period_seconds`, and exits 0.
A SIGTERM (or SIGINT) before the model is ready stops the process at once, also with status 0: the load runs
in a worker thread, so the signal is handled even while onnxruntime or an S3 download holds that thread.
"""

import asyncio
import gc
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import NoReturn

import uvicorn
from pydantic import ValidationError

from mlstack_service.app import InferenceApp
from mlstack_service.auth import ApiKeys, KeysFileError
from mlstack_service.grpc_service import GrpcServer
from mlstack_service.logs import configure_logging, log_event
from mlstack_service.metrics import ServiceMetrics
from mlstack_service.package import PackageError, load_package
from mlstack_service.prediction_ids import PredictionIdKeyError
from mlstack_service.runtime import OnnxModel
from mlstack_service.settings import Settings, describe_invalid_settings

EXIT_MODEL_UNUSABLE = 1  # the model or the settings cannot be used: fix them, do not restart
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequestedError(Exception):
    """A stop signal arrived before the server was serving."""


def _stop_requested(sig: int, frame: FrameType | None) -> None:
    raise StopRequestedError(signal.Signals(sig).name)


def stop_on_signals_until_serving() -> None:
    """From here until uvicorn installs its own handlers, SIGTERM and SIGINT raise StopRequestedError.

    Installed first thing in main(): a container's PID 1 that has no handler ignores SIGTERM, and the
    orchestrator would wait out its grace period and kill it.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop_requested)


class DrainingServer(uvicorn.Server):
    """uvicorn, with a drain phase before shutdown and a clean exit status after a SIGTERM."""

    def __init__(self, config: uvicorn.Config, app: InferenceApp, drain_seconds: float) -> None:
        super().__init__(config)
        self._app = app
        self._drain_seconds = drain_seconds
        self._stop_at: float | None = None
        self._grpc_stop: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Unlike uvicorn's own handler this does not re-raise the signal after shutdown: a drained
        # shutdown is a success and exits 0.
        if self._stop_at is not None:
            if sig == signal.SIGINT:
                self.force_exit = True
            return
        self._app.begin_drain()
        self._stop_at = time.monotonic() + self._drain_seconds

    async def on_tick(self, counter: int) -> bool:
        if self._stop_at is not None and time.monotonic() >= self._stop_at:
            self.should_exit = True
            if self._grpc_stop is None:  # gRPC stops accepting when REST does; the lifespan's shutdown awaits it
                self._grpc_stop = asyncio.create_task(self._app.stop_second_protocol())
        return await super().on_tick(counter)


def build_app(settings: Settings, logger: logging.Logger) -> InferenceApp:
    """Load the keys, then load, verify and warm up the model; raises KeysFileError or PackageError."""
    api_keys = ApiKeys.load(settings.api_keys_file) if settings.api_keys_file is not None else None
    feedback_keys = ApiKeys.load(settings.feedback_keys_file) if settings.feedback_keys_file is not None else None
    started = time.perf_counter()
    package = load_package(settings.model_uri, Path(settings.model_cache_dir), settings.model_sha256)
    model = OnnxModel(package, settings)
    model.warm_up()
    log_event(
        logger,
        logging.INFO,
        "model loaded",
        model=package.metadata.name,
        version=package.metadata.version,
        sha256=package.metadata.sha256,
        pinned=settings.model_sha256 is not None,
        api_keys=len(api_keys.entries) if api_keys else 0,
        uri=settings.model_uri,
        providers=model.providers,
        seconds=round(time.perf_counter() - started, 3),
    )
    metrics = ServiceMetrics(package.metadata.name, package.metadata.version)
    return InferenceApp(model, settings, logger, metrics, api_keys=api_keys, feedback_keys=feedback_keys)


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for uvicorn (which listens on it): the public and the internal port share one server."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


class ListenError(Exception):
    """A port the server cannot bind."""


def build_app_interruptibly(settings: Settings, logger: logging.Logger) -> InferenceApp:
    """build_app in a worker thread; the main thread waits where a stop signal's handler can run at once."""
    apps: list[InferenceApp] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            apps.append(build_app(settings, logger))
        except BaseException as error:  # handed to the main thread, which decides
            errors.append(error)

    loader = threading.Thread(target=load, name="model-loader", daemon=True)
    loader.start()
    loader.join()  # a signal handler that raises interrupts this wait
    if errors:
        raise errors[0]
    return apps[0]


def _exit_now(status: int) -> NoReturn:
    """Exit without waiting for the loader thread, which may sit in onnxruntime or a socket for minutes."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def serve(settings: Settings) -> int:
    logger = configure_logging(settings.log_level)
    try:
        app = build_app_interruptibly(settings, logger)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,  # the app logs one structured line per request itself
            proxy_headers=False,  # the app reads no client address; skips a middleware layer per request
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=math.ceil(settings.grace_period_seconds),
            timeout_keep_alive=75,  # longer than an ALB's 60 s idle timeout, so the ALB closes first
        )
        app.grpc = GrpcServer(app, settings.host, settings.grpc_port)
        server = DrainingServer(config, app, settings.drain_seconds)
        sockets = [listening_socket(settings.host, settings.port)]
        sockets.append(listening_socket(settings.host, settings.internal_port))
        # gRPC binds its own port when the app starts; a port in use is found here, before anything is served.
        listening_socket(settings.host, settings.grpc_port).close()
        # Everything allocated so far lives as long as the process: keep the collector from rescanning it.
        gc.freeze()
    except (PackageError, KeysFileError, ListenError, PredictionIdKeyError) as error:
        log_event(logger, logging.ERROR, "refusing to start", reason=str(error))
        return EXIT_MODEL_UNUSABLE
    except StopRequestedError as stop:
        log_event(logger, logging.INFO, "stopped before ready", signal=str(stop))
        _exit_now(0)
    # uvicorn handles the stop signals while it runs (DrainingServer.handle_exit), then puts ours back.
    try:
        server.run(sockets=sockets)
    except StopRequestedError as stop:  # in the moment before uvicorn took the signals over
        log_event(logger, logging.INFO, "stopped before ready", signal=str(stop))
        return 0
    except SystemExit:  # uvicorn's answer to a failed startup: the gRPC port was taken after the check above
        log_event(logger, logging.ERROR, "refusing to start", reason=app.startup_failure or "startup failed")
        return EXIT_MODEL_UNUSABLE
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    log_event(logger, logging.INFO, "stopped")
    return 0


def main() -> None:
    stop_on_signals_until_serving()
    try:
        settings = Settings()
    except ValidationError as error:
        problems = describe_invalid_settings(error, "MLSTACK_", show_values=True)
        log_event(configure_logging("info"), logging.ERROR, "refusing to start", reason=f"invalid settings: {problems}")
        sys.exit(EXIT_MODEL_UNUSABLE)
    sys.exit(serve(settings))
