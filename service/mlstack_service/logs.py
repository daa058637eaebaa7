"""Structured logs: one JSON object per line on stdout."""

import asyncio
import logging
import sys
import time
from typing import Any, BinaryIO

import orjson

LOGGER_NAME = "mlstack"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str) -> logging.Logger:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


class RequestLog:
    """One JSON line per request, buffered and flushed every `flush_seconds` (or sooner when it fills).

    The request path only appends bytes; the write system call is paid once per batch, not per request.
    """

    def __init__(self, stream: BinaryIO, flush_seconds: float = 0.1, max_lines: int = 512) -> None:
        self._stream = stream
        self._lines: list[bytes] = []
        self.flush_seconds = flush_seconds
        self._max_lines = max_lines
        self._second = -1
        self._second_text = ""

    def write(self, fields: dict[str, Any]) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        fields["ts"] = f"{self._second_text}.{int((now - second) * 1000):03d}Z"
        self._lines.append(orjson.dumps(fields))
        if len(self._lines) >= self._max_lines:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        self._stream.write(b"\n".join(lines) + b"\n")
        self._stream.flush()

    async def flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            self.flush()
