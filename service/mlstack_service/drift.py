"""Drift, measured beside the request path: data drift per feature, prediction drift, and concept drift from labels.

Recording is a copy into fixed-size ring buffers (memory bounded by the window, whatever the traffic);
the statistics are recomputed every `refresh_seconds` by a background task, never while a request waits.
"""

import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mlstack_service.errors import BadRequestError, ServiceError
from mlstack_service.package import ReferenceProfile

EPSILON = 1e-4  # keeps empty bins from dividing by zero in PSI


class UnknownPredictionError(ServiceError):
    status = 404


def population_stability_index(expected: NDArray[np.float64], actual: NDArray[np.float64]) -> float:
    """PSI between two distributions over the same bins: sum((a - e) * ln(a / e))."""
    e = np.clip(expected, EPSILON, None)
    a = np.clip(actual, EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


class RingBuffer:
    """The last `capacity` rows of a fixed width; older rows are overwritten."""

    def __init__(self, capacity: int, width: int) -> None:
        self.data = np.zeros((capacity, width), dtype=np.float32)
        self.capacity = capacity
        self.filled = 0
        self._next = 0

    def extend(self, rows: NDArray[np.float32]) -> None:
        rows = rows[-self.capacity :]
        count = len(rows)
        end = self._next + count
        if end <= self.capacity:
            self.data[self._next : end] = rows
        else:
            first = self.capacity - self._next
            self.data[self._next :] = rows[:first]
            self.data[: count - first] = rows[first:]
        self._next = end % self.capacity
        self.filled = min(self.capacity, self.filled + count)

    def rows(self) -> NDArray[np.float32]:
        return self.data[: self.filled]


@dataclass
class DriftState:
    psi: dict[str, float]
    ks: dict[str, float]
    prediction_psi: float
    class_share: dict[str, float]
    window_fill: float


class DriftMonitor:
    """Compares a sliding window of live requests with the model package's reference profile."""

    def __init__(
        self, profile: ReferenceProfile, feature_names: list[str], class_names: list[str], window: int
    ) -> None:
        self.feature_names = feature_names
        self.class_names = class_names
        self._features = RingBuffer(window, len(feature_names))
        self._scores = RingBuffer(window, 1)
        self._edges = [self._open_edges(profile.features[name].bin_edges) for name in feature_names]
        self._expected = [np.asarray(profile.features[name].proportions, dtype=np.float64) for name in feature_names]
        self._expected_cdf = [np.concatenate([[0.0], np.cumsum(p)]) for p in self._expected]
        self._inner_edges = [np.asarray(profile.features[name].bin_edges, dtype=np.float64) for name in feature_names]
        self._score_edges = self._open_edges(profile.predictions.score_bin_edges)
        self._score_expected = np.asarray(profile.predictions.score_proportions, dtype=np.float64)
        self.state = DriftState(
            dict.fromkeys(feature_names, 0.0),
            dict.fromkeys(feature_names, 0.0),
            0.0,
            dict.fromkeys(class_names, 0.0),
            0.0,
        )

    @staticmethod
    def _open_edges(edges: list[float]) -> NDArray[np.float64]:
        """The reference bins, with the outer edges opened so live values outside the training range still count."""
        opened = np.asarray(edges, dtype=np.float64).copy()
        opened[0], opened[-1] = -np.inf, np.inf
        return opened

    def record(self, rows: NDArray[np.float32], positive_scores: NDArray[np.float32]) -> None:
        """Called per request: two array copies into the ring buffers."""
        self._features.extend(rows)
        self._scores.extend(positive_scores.reshape(-1, 1))

    def refresh(self) -> DriftState:
        window = self._features.rows()
        if len(window) == 0:
            return self.state
        psi, ks = {}, {}
        for index, name in enumerate(self.feature_names):
            column = window[:, index].astype(np.float64)
            counts, _ = np.histogram(column, bins=self._edges[index])
            actual = counts / len(column)
            psi[name] = population_stability_index(self._expected[index], actual)
            # Kolmogorov-Smirnov at the reference's bin edges, where the reference CDF is known exactly.
            live_cdf = np.searchsorted(np.sort(column), self._inner_edges[index], side="right") / len(column)
            ks[name] = float(np.max(np.abs(live_cdf - self._expected_cdf[index])))
        scores = self._scores.rows()[:, 0].astype(np.float64)
        score_counts, _ = np.histogram(scores, bins=self._score_edges)
        positive = float(np.mean(scores >= 0.5))
        self.state = DriftState(
            psi=psi,
            ks=ks,
            prediction_psi=population_stability_index(self._score_expected, score_counts / len(scores)),
            class_share={self.class_names[0]: 1 - positive, self.class_names[1]: positive},
            window_fill=self._features.filled / self._features.capacity,
        )
        return self.state

    def size_bytes(self) -> int:
        return int(self._features.data.nbytes + self._scores.data.nbytes)


class FeedbackTracker:
    """Ground truth for served predictions: rolling accuracy and log loss over the last `window` labelled rows."""

    def __init__(self, max_pending: int, ttl_seconds: float, window: int) -> None:
        # Insertion-ordered: the first key is always the oldest prediction.
        self._pending: dict[str, tuple[float, NDArray[np.float32]]] = {}
        self._labelled: set[str] = set()
        self._labelled_order: deque[str] = deque(maxlen=max_pending)
        self._max_pending = max_pending
        self._ttl = ttl_seconds
        self._correct: deque[int] = deque(maxlen=window)
        self._log_loss: deque[float] = deque(maxlen=window)

    def remember(self, prediction_id: str, positive_scores: NDArray[np.float32]) -> None:
        """Called per request: one dict insert of a compact copy of the positive-class scores."""
        pending = self._pending
        pending.pop(prediction_id, None)  # a reused id moves to the back
        pending[prediction_id] = (time.monotonic(), np.ascontiguousarray(positive_scores))
        if len(pending) > self._max_pending:
            del pending[next(iter(pending))]

    def record(self, prediction_id: str, labels: object) -> bool:
        """True when recorded now, False when this id's labels were already recorded (idempotent)."""
        if prediction_id in self._labelled:
            return False
        entry = self._pending.get(prediction_id)
        if entry is None or time.monotonic() - entry[0] > self._ttl:
            self._pending.pop(prediction_id, None)
            raise UnknownPredictionError(f"prediction id {prediction_id!r} is unknown or expired")
        scores = entry[1]
        if not isinstance(labels, list) or len(labels) != len(scores) or not all(label in (0, 1) for label in labels):
            raise BadRequestError(f"'labels' must be a list of {len(scores)} class indices (0 or 1), one per row")
        truth = np.asarray(labels, dtype=np.int64)
        predicted = (scores >= 0.5).astype(np.int64)
        clipped = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
        losses = -(truth * np.log(clipped) + (1 - truth) * np.log(1 - clipped))
        self._correct.extend((predicted == truth).astype(int).tolist())
        self._log_loss.extend(losses.tolist())
        del self._pending[prediction_id]
        if len(self._labelled_order) == self._labelled_order.maxlen:
            self._labelled.discard(self._labelled_order[0])
        self._labelled_order.append(prediction_id)
        self._labelled.add(prediction_id)
        return True

    @property
    def pending(self) -> int:
        return len(self._pending)

    def accuracy(self) -> float:
        return float(np.mean(self._correct)) if self._correct else math.nan

    def log_loss(self) -> float:
        return float(np.mean(self._log_loss)) if self._log_loss else math.nan

    @property
    def labelled(self) -> int:
        return len(self._correct)
