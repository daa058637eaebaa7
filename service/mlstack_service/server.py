"""Process lifecycle: load and verify the model, warm it up, serve, and drain on SIGTERM.

On SIGTERM readiness turns false at once; the server keeps serving for `drain_seconds` (so load balancers
stop sending), then stops accepting, lets in-flight requests finish within `grace_period_seconds`, and exits 0.
"""

import gc
import logging
import math
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import uvicorn
from pydantic import ValidationError

from mlstack_service.app import InferenceApp
from mlstack_service.logs import configure_logging, log_event
from mlstack_service.metrics import ServiceMetrics
from mlstack_service.package import PackageError, load_package
from mlstack_service.runtime import OnnxModel
from mlstack_service.settings import Settings, describe_invalid_settings

EXIT_MODEL_UNUSABLE = 1  # the model or the settings cannot be used: fix them, do not restart


class DrainingServer(uvicorn.Server):
    """uvicorn, with a drain phase before shutdown and a clean exit status after a SIGTERM."""

    def __init__(self, config: uvicorn.Config, app: InferenceApp, drain_seconds: float) -> None:
        super().__init__(config)
        self._app = app
        self._drain_seconds = drain_seconds
        self._stop_at: float | None = None

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
        return await super().on_tick(counter)


def build_app(settings: Settings, logger: logging.Logger) -> InferenceApp:
    """Load, verify and warm up the model; raises PackageError if it cannot be served."""
    started = time.perf_counter()
    package = load_package(settings.model_uri, Path(settings.model_cache_dir))
    model = OnnxModel(package, settings)
    model.warm_up()
    log_event(
        logger,
        logging.INFO,
        "model loaded",
        model=package.metadata.name,
        version=package.metadata.version,
        sha256=package.metadata.sha256,
        uri=settings.model_uri,
        providers=model.providers,
        seconds=round(time.perf_counter() - started, 3),
    )
    metrics = ServiceMetrics(package.metadata.name, package.metadata.version)
    return InferenceApp(model, settings, logger, metrics)


def serve(settings: Settings) -> int:
    logger = configure_logging(settings.log_level)
    try:
        app = build_app(settings, logger)
    except PackageError as error:
        log_event(logger, logging.ERROR, "refusing to start", reason=str(error))
        return EXIT_MODEL_UNUSABLE
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
    server = DrainingServer(config, app, settings.drain_seconds)
    # Everything allocated so far lives as long as the process: keep the collector from rescanning it.
    gc.freeze()
    server.run()
    log_event(logger, logging.INFO, "stopped")
    return 0


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as error:
        problems = describe_invalid_settings(error, "MLSTACK_", show_values=True)
        log_event(configure_logging("info"), logging.ERROR, "refusing to start", reason=f"invalid settings: {problems}")
        sys.exit(EXIT_MODEL_UNUSABLE)
    sys.exit(serve(settings))
