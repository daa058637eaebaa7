"""The prediction log: a sampled, bounded record of served predictions in S3, for the label join (label_join.py).

Each logged prediction is one JSON line: its id (prediction_ids.py: unique across replicas), the time, the model
version, the scores (one row of class probabilities per input row) and, unless MLSTACK_PREDICTION_LOG_FEATURES is
false, the feature names and rows. Lines are gathered in
memory and written as one gzip object per batch, under

    <prefix><model name>/<yyyy>/<mm>/<dd>/<hhmmss>-<process instance>-<batch number>.jsonl.gz

when a batch reaches `batch_rows` rows, after `flush_seconds`, and on shutdown (SIGTERM's drain). The object name is
unique per process and batch, and written with `If-None-Match: *`, so no replica ever replaces another's batch.

Bounded, whatever the traffic:
- rate: at most `max_rows_per_second` rows enter the log (a token bucket); a sampled request beyond it is dropped;
- memory: at most `max_buffered_rows` rows wait in memory, counting a batch being uploaded; beyond, dropped;
- the request path only samples, counts and appends references to the request's arrays (no copy, no encoding):
  one thread encodes and uploads.
S3 failures never fail a prediction: the batch's rows are counted as failed (mlstack_prediction_log_rows_total
{outcome="failed"}) and logged, and the log goes on with the next batch.
"""

import gzip
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from botocore.exceptions import BotoCoreError, ClientError
from numpy.typing import NDArray

from mlstack_service.logs import log_event

OUTCOMES = ("logged", "sampled_out", "dropped_rate", "dropped_buffer", "failed")
SCORE_DECIMALS = 6


@dataclass(slots=True)
class LogCounters:
    """Rows by outcome, and objects written; read by /metrics."""

    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    objects: int = 0
    last_success: float = 0.0  # unix time of the last object written


@dataclass(slots=True)
class _Entry:
    time: float
    prediction_id: str
    rows: NDArray[np.float32]
    probabilities: NDArray[np.float32]


class PredictionLog:
    """Takes predictions on the event loop's thread (`offer`), writes batches from its own thread."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str,
        *,
        model_name: str,
        model_version: str,
        feature_names: list[str],
        instance: str,
        logger: logging.Logger,
        sample_rate: float = 1.0,
        include_features: bool = True,
        batch_rows: int = 5_000,
        flush_seconds: float = 60.0,
        max_rows_per_second: float = 500.0,
        max_buffered_rows: int = 50_000,
        draw: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        self._model_name = model_name
        self._model_version = model_version
        self._feature_names = list(feature_names)
        self._instance = instance
        self._logger = logger
        self._sample_rate = sample_rate
        self.include_features = include_features
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        self._rate = max_rows_per_second
        # A burst of up to one second's allowance, and at least one request of the largest batch, passes at once.
        self._capacity = max(max_rows_per_second, 1.0)
        self._tokens = self._capacity
        self._refilled = clock()
        self._max_buffered = max_buffered_rows
        self._draw = draw
        self._clock = clock
        self.counters = LogCounters()
        self._pending: list[_Entry] = []
        self._pending_rows = 0
        self._held_rows = 0  # pending plus the batch being uploaded: what memory holds
        self._batches = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._thread: threading.Thread | None = None

    # --- the request path ------------------------------------------------------------------------

    def offer(self, prediction_id: str, rows: NDArray[np.float32], probabilities: NDArray[np.float32]) -> None:
        count = len(rows)
        counters = self.counters.rows
        if self._sample_rate < 1.0 and self._draw() >= self._sample_rate:
            counters["sampled_out"] += count
            return
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._refilled) * self._rate)
            self._refilled = now
            if count > self._tokens:
                counters["dropped_rate"] += count
                return
            if self._held_rows + count > self._max_buffered:
                counters["dropped_buffer"] += count
                return
            self._tokens -= count
            self._pending.append(_Entry(time.time(), prediction_id, rows, probabilities))
            self._pending_rows += count
            self._held_rows += count
            if self._pending_rows >= self._batch_rows:
                self._wake.notify()

    # --- the writer ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def close(self, timeout: float) -> None:
        """Write what is pending and stop; waits up to `timeout` seconds (the drain's grace period)."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self.flush()

    def flush(self) -> None:
        """Write everything pending now, in the caller's thread (tests and close without a thread)."""
        while True:
            with self._lock:
                batch = self._take()
            if not batch:
                return
            self._write(batch)

    def _take(self) -> list[_Entry]:
        """Up to one batch's rows of the pending entries (whole predictions); the lock is held."""
        taken, rows = 0, 0
        for entry in self._pending:
            if rows and rows + len(entry.rows) > self._batch_rows:
                break
            rows += len(entry.rows)
            taken += 1
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        self._pending_rows -= rows
        return batch

    def _run(self) -> None:
        deadline = self._clock() + self._flush_seconds
        while True:
            with self._lock:
                while not self._stopping and self._pending_rows < self._batch_rows:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)
                stopping = self._stopping
                batch = self._take()
            if batch:
                self._write(batch)
            if self._clock() >= deadline:
                deadline = self._clock() + self._flush_seconds
            if stopping:
                self.flush()
                return

    def _write(self, batch: list[_Entry]) -> None:
        rows = sum(len(entry.rows) for entry in batch)
        self._batches += 1
        stamp = datetime.now(UTC)
        key = f"{self.prefix}{self._model_name}/{stamp:%Y/%m/%d/%H%M%S}-{self._instance}-{self._batches:06d}.jsonl.gz"
        try:
            body = gzip.compress(b"".join(self._line(entry) for entry in batch), compresslevel=5)
            self._client.put_object(
                Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", ContentType="application/x-ndjson"
            )
        except (ClientError, BotoCoreError) as error:
            self.counters.rows["failed"] += rows
            code = error.response.get("Error", {}).get("Code", "error") if isinstance(error, ClientError) else error
            log_event(
                self._logger,
                logging.WARNING,
                "prediction log write failed",
                key=f"s3://{self.bucket}/{key}",
                rows=rows,
                reason=str(code),
            )
        else:
            self.counters.rows["logged"] += rows
            self.counters.objects += 1
            self.counters.last_success = time.time()
        finally:
            with self._lock:
                self._held_rows -= rows

    def _line(self, entry: _Entry) -> bytes:
        record: dict[str, Any] = {
            "id": entry.prediction_id,
            "time": round(entry.time, 3),
            "model_version": self._model_version,
            "scores": np.round(entry.probabilities.astype(np.float64), SCORE_DECIMALS).tolist(),
        }
        if self.include_features:
            # The names ride on every line (gzip makes the repeats nearly free): each line stands alone.
            record["feature_names"] = self._feature_names
            record["features"] = entry.rows.tolist()
        return orjson.dumps(record) + b"\n"

    @property
    def held_rows(self) -> int:
        return self._held_rows
