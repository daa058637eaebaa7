"""Drift, measured beside the request path: data drift per feature, prediction drift, and concept drift from labels.

Recording is a copy into fixed-size ring buffers (memory bounded by the window, whatever the traffic);
the statistics are recomputed every `refresh_seconds` by a background task, never while a request waits.
"""

import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from mlstack_service import drift_stats as stats
from mlstack_service.errors import BadRequestError, ServiceError
from mlstack_service.package import ReferenceProfile

DECISION_TESTS = ("approval_rate", "score_distribution", "estimated_accuracy")


class UnknownPredictionError(ServiceError):
    status = 404


class RingBuffer:
    """The last `capacity` rows (of `width` columns, or scalars when `width` is 0); older rows are overwritten."""

    def __init__(self, capacity: int, width: int) -> None:
        shape = (capacity, width) if width else (capacity,)
        self.data = np.zeros(shape, dtype=np.float32)
        self.capacity = capacity
        self.filled = 0
        self._next = 0

    def extend(self, rows: NDArray[np.float32]) -> None:
        count = len(rows)
        start = self._next
        end = start + count
        if end < self.capacity:  # the common case, kept to one slice copy: this runs on every request
            self.data[start:end] = rows
            self._next = end
            if self.filled < self.capacity:
                self.filled = min(self.capacity, self.filled + count)
            return
        rows = rows[-self.capacity :]
        count = len(rows)
        end = start + count
        if end <= self.capacity:
            self.data[start:end] = rows
        else:
            first = self.capacity - start
            self.data[start:] = rows[:first]
            self.data[: count - first] = rows[first:]
        self._next = end % self.capacity
        self.filled = min(self.capacity, self.filled + count)

    def rows(self) -> NDArray[np.float32]:
        return self.data[: self.filled]

    def latest(self, count: int) -> NDArray[np.float32]:
        """The last `count` rows written (at most `filled`), oldest first."""
        count = min(count, self.filled)
        return self.data[(np.arange(self._next - count, self._next)) % self.capacity]


@dataclass(frozen=True)
class DriftBudget:
    """At most one false alarm per `false_alarm_days` of no-drift traffic, per alert, where an alert fires only
    after its verdict has held for `hold_minutes`.

    An alert that fires inside the look interval [j*h, (j+1)*h) (h = hold_minutes) held its verdict at j*h, so
    P(a false alarm starts in that interval) <= P(verdict at j*h) <= alpha; over D days there are D*1440/h intervals,
    so the expected number of false alarms is at most D*1440/h * alpha. alpha = h / (D * 1440) makes that one,
    whatever the traffic and however the windows overlap. The alpha of one alert is split evenly (Bonferroni) over
    its tests: each feature's for the feature alert, the three decision tests for the retraining one.
    Defaults: 60 / (90 * 1440) = 4.6e-4 per alert; 3.9e-5 per feature (12 of them); 1.5e-4 per decision test.
    """

    false_alarm_days: float = 90.0
    hold_minutes: float = 60.0
    max_accuracy_drop: float = 0.03

    @property
    def alpha(self) -> float:
        return self.hold_minutes / (self.false_alarm_days * 1440.0)


@dataclass
class Verdict:
    statistic: float  # KS: Stephens' lambda; chi-square: Pearson's statistic; z tests: z
    critical: float  # the statistic's value at the test's share of the alpha
    p_value: float
    min_rows: int  # rows the test needs before its verdict counts
    detected: bool

    @property
    def ratio(self) -> float:
        """statistic / critical: 1 or more is a detection (once min_rows are in); how features are ranked."""
        return self.statistic / self.critical if self.critical > 0 else 0.0


@dataclass
class DriftState:
    psi: dict[str, float]
    ks: dict[str, float]
    prediction_psi: float
    class_share: dict[str, float]
    window_fill: float
    rows: int = 0  # rows in the window when these statistics were computed
    out_of_range_share: dict[str, float] | None = None  # per feature: share of the window outside its declared range
    features: dict[str, Verdict] = field(default_factory=dict)
    decisions: dict[str, Verdict] = field(default_factory=dict)
    estimated_accuracy: float = math.nan

    @property
    def prediction_drift_detected(self) -> bool:
        return any(result.detected for result in self.decisions.values())


@dataclass
class FeatureBins:
    """One feature's (or the scores') reference bins and the test that compares live counts with them."""

    test: str  # "ks" or "chi2"
    edges: NDArray[np.float64]
    shares: NDArray[np.float64]
    cdf: NDArray[np.float64]  # the reference CDF at each edge
    totals: NDArray[np.int64]  # live rows per bin since start: the counters the fleet's rules add up

    @classmethod
    def of(cls, test: str, edges: list[float], proportions: list[float]) -> "FeatureBins":
        shares = np.asarray(proportions, dtype=np.float64)
        shares = shares / shares.sum()
        return cls(
            test,
            np.asarray(edges, dtype=np.float64),
            shares,
            np.cumsum(shares)[:-1],
            np.zeros(len(shares), dtype=np.int64),
        )

    def min_rows(self) -> int:
        if self.test == "ks":
            return 1
        return math.ceil(stats.MIN_EXPECTED / float(self.shares[self.shares > 0].min()))

    def judge(self, counts: NDArray[np.int64], reference_rows: float, alpha: float) -> Verdict:
        n = float(counts.sum())
        min_rows = self.min_rows()
        if self.test == "ks":
            statistic = stats.ks_lambda(stats.ks_distance(counts, self.cdf), n, reference_rows)
            critical, p_value = stats.ks_critical(alpha), stats.kolmogorov_sf(statistic)
        else:
            df = max(1, len(self.shares) - 1)
            statistic = stats.chi2_homogeneity(counts, self.shares, reference_rows)
            critical, p_value = stats.chi2_critical(alpha, df), stats.chi2_sf(statistic, df)
        return Verdict(statistic, critical, p_value, min_rows, n >= min_rows and statistic >= critical)


class DriftMonitor:
    """Compares a sliding window of live requests with the model package's reference profile, and counts every
    admitted row into per-bin counters that never reset (the fleet's rules judge their sum over a time window).

    Each feature is tested by its kind (drift_stats): continuous ones by KS, discrete and categorical ones by a
    chi-square over exact-value bins; decisions by the approval rate, the score distribution (KS) and the CBPE
    estimated accuracy. Verdicts hold the false-alarm `budget` at any fill. Statistics count only once the window holds
    `min_samples` rows: `ready` says whether the last refresh had that many. Values outside the ranges the model
    declares (`ranges`: per feature, (min, max)) are counted per feature, never refused.
    """

    def __init__(
        self,
        profile: ReferenceProfile,
        feature_names: list[str],
        class_names: list[str],
        window: int,
        *,
        min_samples: int = 1,
        ranges: list[tuple[float, float]] | None = None,
        budget: DriftBudget | None = None,
    ) -> None:
        self.feature_names = feature_names
        self.class_names = class_names
        self.min_samples = min_samples
        self.budget = budget or DriftBudget()
        self.reference_rows = float(profile.rows)
        bounds = np.asarray(ranges or [(-np.inf, np.inf)] * len(feature_names), dtype=np.float32)
        self._lower, self._upper = bounds[:, 0], bounds[:, 1]
        self.out_of_range = np.zeros(len(feature_names), dtype=np.int64)  # rows ever seen outside, per feature
        self._features = RingBuffer(window, len(feature_names))
        self._scores = RingBuffer(window, 0)
        self.bins = {
            name: FeatureBins.of(
                profile.features[name].test, profile.features[name].bin_edges, profile.features[name].proportions
            )
            for name in feature_names
        }
        self.kinds = {name: profile.features[name].kind for name in feature_names}
        predictions = profile.predictions
        self.score_bins = FeatureBins.of("ks", predictions.score_bin_edges, predictions.score_proportions)
        self.reference_positive_rate = (
            predictions.positive_rate
            if predictions.positive_rate is not None
            else predictions.class_proportions.get(class_names[1], 0.5)
        )
        self.reference_estimated_accuracy = predictions.estimated_accuracy
        self.reference_confidence_std = predictions.confidence_std
        self.feature_alpha = self.budget.alpha / len(feature_names)
        self.decision_alpha = self.budget.alpha / len(DECISION_TESTS)
        # Counters since start, of admitted rows: all rows, rows scored positive, and the sum of confidences.
        self._uncounted = 0  # rows recorded but not yet counted per bin: the newest of the window
        self.rows_total = 0
        self.positive_total = 0
        self.confidence_total = 0.0
        self.state = DriftState(
            dict.fromkeys(feature_names, 0.0),
            dict.fromkeys(feature_names, 0.0),
            0.0,
            dict.fromkeys(class_names, 0.0),
            0.0,
        )

    def record(self, rows: NDArray[np.float32], positive_scores: NDArray[np.float32]) -> None:
        """Rows and their scores (a batch of requests') into the window: two slice copies and a count."""
        self._features.extend(rows)
        self._scores.extend(positive_scores)
        self._uncounted += len(rows)
        self.out_of_range += np.count_nonzero((rows < self._lower) | (rows > self._upper), axis=0)

    def count_pending(self) -> None:
        """The window's rows recorded since the last count into the per-bin counters, at each refresh and scrape.

        When more than a window's worth arrived in between, only the newest window-full is counted: the counters then
        hold a sample of the traffic (a window every `refresh_seconds`, 1,000 rows/s per replica with the defaults),
        which the fleet's tests judge like any sample, as `mlstack_drift_rows_total` counts the same rows. Binning
        every row cost about 1.2 us, a third more CPU per row on 64-row requests (README, bench)."""
        count = min(self._uncounted, self._features.filled)
        if count > 0:
            self._count(self._features.latest(count), self._scores.latest(count))
        self._uncounted = 0

    def _count(self, rows: NDArray[np.float32], positive_scores: NDArray[np.float32]) -> None:
        for index, bins in enumerate(self.bins.values()):
            bins.totals += stats.bin_counts(rows[:, index].astype(np.float64), bins.edges)
        scores = positive_scores.astype(np.float64)
        self.score_bins.totals += stats.bin_counts(scores, self.score_bins.edges)
        self.rows_total += len(scores)
        self.positive_total += int(np.count_nonzero(scores >= 0.5))
        self.confidence_total += float(np.maximum(scores, 1 - scores).sum())

    def refresh(self) -> DriftState:
        self.count_pending()
        window = self._features.rows()
        if len(window) == 0:
            return self.state
        n = len(window)
        psi, ks, results = {}, {}, {}
        for index, (name, bins) in enumerate(self.bins.items()):
            counts = stats.bin_counts(window[:, index].astype(np.float64), bins.edges)
            psi[name] = stats.psi(bins.shares, counts)
            ks[name] = stats.ks_distance(counts, bins.cdf)
            results[name] = bins.judge(counts, self.reference_rows, self.feature_alpha)
        scores = self._scores.rows().astype(np.float64)
        score_counts = stats.bin_counts(scores, self.score_bins.edges)
        positive = float(np.mean(scores >= 0.5))
        estimated_accuracy = float(np.maximum(scores, 1 - scores).mean())
        decisions = {
            "approval_rate": self._approval_test(positive, n),
            "score_distribution": self.score_bins.judge(score_counts, self.reference_rows, self.decision_alpha),
        }
        accuracy = self._accuracy_test(estimated_accuracy, n)
        if accuracy is not None:
            decisions["estimated_accuracy"] = accuracy
        outside = np.count_nonzero((window < self._lower) | (window > self._upper), axis=0) / n
        self.state = DriftState(
            psi=psi,
            ks=ks,
            prediction_psi=stats.psi(self.score_bins.shares, score_counts),
            class_share={self.class_names[0]: 1 - positive, self.class_names[1]: positive},
            window_fill=self._features.filled / self._features.capacity,
            rows=n,
            out_of_range_share=dict(zip(self.feature_names, outside.tolist(), strict=True)),
            features=results,
            decisions=decisions,
            estimated_accuracy=estimated_accuracy,
        )
        return self.state

    def _approval_test(self, positive: float, n: int) -> Verdict:
        """Two-sided two-proportion z test of the live approval rate against the training predictions'."""
        p0 = min(max(self.reference_positive_rate, 1e-6), 1 - 1e-6)
        z = abs(positive - p0) / math.sqrt(p0 * (1 - p0) * (1 / n + 1 / self.reference_rows))
        critical = stats.normal_critical(self.decision_alpha / 2)
        min_rows = math.ceil(stats.MIN_EXPECTED_CLASS / min(p0, 1 - p0))
        return Verdict(z, critical, 2 * stats.normal_sf(z), min_rows, n >= min_rows and z >= critical)

    def _accuracy_test(self, estimated: float, n: int) -> Verdict | None:
        """One-sided z test that the CBPE estimated accuracy fell, counted only when it fell by `max_accuracy_drop`
        too (a significant but tiny fall is not worth a retraining). None for a profile without the reference."""
        reference, spread = self.reference_estimated_accuracy, self.reference_confidence_std
        if reference is None or not spread:
            return None
        z = (reference - estimated) / (spread * math.sqrt(1 / n + 1 / self.reference_rows))
        critical = stats.normal_critical(self.decision_alpha)
        drop = reference - estimated
        statistic = min(z, critical * drop / self.budget.max_accuracy_drop)  # ratio >= 1 only when both hold
        min_rows = math.ceil(stats.MIN_EXPECTED_CLASS / max(1e-6, 1 - reference))
        return Verdict(statistic, critical, stats.normal_sf(z), min_rows, n >= min_rows and statistic >= critical)

    @property
    def ready(self) -> bool:
        """Whether the last refresh saw enough rows for its statistics to mean something."""
        return self.state.rows >= self.min_samples

    def feature_detected(self, name: str) -> bool:
        result = self.state.features.get(name)
        return bool(self.ready and result is not None and result.detected)

    @property
    def prediction_detected(self) -> bool:
        return self.ready and self.state.prediction_drift_detected

    def size_bytes(self) -> int:
        return int(self._features.data.nbytes + self._scores.data.nbytes)


class FeedbackTracker:
    """Ground truth for served predictions: rolling accuracy and log loss over the last `window` labelled rows.

    Every prediction has a sequence number and lives in slot `sequence % max_pending` of preallocated arrays; its
    scores go into one flat ring. The server's own ids carry their sequence under a MAC (`own_ids` checks the MAC
    and returns it: prediction_ids.PredictionIds.sequence_of), so they need no dict entry and no object per
    prediction (measured: a dict and boxed floats per request cost 8% of requests/s on 64-row
    requests); ids chosen by callers get a fresh sequence and a dict entry. Predictions arrive in batches
    (`remember_batch`), written with a few vectorised stores. A prediction is forgotten when its slot is reused,
    when its scores are overwritten in the ring (`max_pending_rows` rows later) or after `ttl_seconds`.
    """

    def __init__(
        self,
        max_pending: int,
        ttl_seconds: float,
        window: int,
        max_pending_rows: int = 100_000,
        *,
        own_ids: Callable[[str], int | None] | None = None,
        sequences: Iterator[int] | None = None,
    ) -> None:
        self._own_ids = own_ids
        self._sequences = sequences if sequences is not None else itertools.count(1)
        self._slot_sequence = np.full(max_pending, -1, dtype=np.int64)  # which prediction holds the slot; -1: none
        self._times = np.zeros(max_pending, dtype=np.float64)
        self._starts = np.zeros(max_pending, dtype=np.int64)  # absolute row numbers in the score ring
        self._counts = np.zeros(max_pending, dtype=np.int64)
        self._foreign_ids: list[str | None] = [None] * max_pending
        self._foreign_sequence: dict[str, int] = {}
        self._scores = np.zeros(max_pending_rows, dtype=np.float32)
        self._rows_written = 0
        self._max_pending = max_pending
        self._ttl = ttl_seconds
        self._labelled: set[str] = set()
        self._labelled_order: deque[str] = deque(maxlen=max_pending)
        self._correct: deque[int] = deque(maxlen=window)
        self._log_loss: deque[float] = deque(maxlen=window)

    def remember(self, prediction_id: str, positive_scores: NDArray[np.float32], sequence: int | None = None) -> None:
        """One prediction; `sequence` is given when the id is the server's own (issued with that sequence)."""
        counts = np.array([len(positive_scores)], dtype=np.int64)
        self.remember_batch([prediction_id], positive_scores, counts, [sequence])

    def remember_batch(
        self, ids: list[str], scores: NDArray[np.float32], counts: NDArray[np.int64], sequences: list[int | None]
    ) -> None:
        """Predictions in order: `scores` holds their rows one after another, `counts[i]` of them for `ids[i]`."""
        capacity = len(self._scores)
        if counts.size and counts.max() > capacity:  # a prediction larger than the ring can never be labelled
            keep = counts <= capacity
            scores = scores[np.repeat(keep, counts)]
            ids = [prediction_id for prediction_id, kept in zip(ids, keep, strict=True) if kept]
            sequences = [sequence for sequence, kept in zip(sequences, keep, strict=True) if kept]
            counts = counts[keep]
        if not ids:
            return
        foreign = [index for index, sequence in enumerate(sequences) if sequence is None]
        numbered = list(sequences)
        for index in foreign:
            numbered[index] = next(self._sequences)
        sequence_array = np.asarray(numbered, dtype=np.int64)
        slots = sequence_array % self._max_pending
        for slot in slots.tolist() if self._foreign_sequence else ():
            self._drop_foreign(slot)
        total = len(scores)
        starts = self._rows_written + np.cumsum(counts) - counts
        written = scores[-capacity:]
        positions = (self._rows_written + np.arange(total - len(written), total)) % capacity
        self._scores[positions] = written
        self._rows_written += total
        self._slot_sequence[slots] = sequence_array
        self._times[slots] = time.monotonic()
        self._starts[slots] = starts
        self._counts[slots] = counts
        for index in foreign:
            prediction_id, sequence = ids[index], int(sequence_array[index])
            self._labelled.discard(prediction_id)  # a new prediction under a labelled id takes its own labels
            previous = self._foreign_sequence.get(prediction_id)
            if previous is not None:  # a reused id points at its newest prediction only
                self._release(previous % self._max_pending)
            slot = sequence % self._max_pending
            if self._slot_sequence[slot] == sequence:
                self._foreign_ids[slot] = prediction_id
                self._foreign_sequence[prediction_id] = sequence

    def _drop_foreign(self, slot: int) -> None:
        foreign = self._foreign_ids[slot]
        if foreign is not None:
            if self._foreign_sequence.get(foreign) == self._slot_sequence[slot]:
                del self._foreign_sequence[foreign]
            self._foreign_ids[slot] = None

    def _release(self, slot: int) -> None:
        self._drop_foreign(slot)
        self._slot_sequence[slot] = -1

    def _sequence_of(self, prediction_id: str) -> int | None:
        sequence = self._foreign_sequence.get(prediction_id)
        if sequence is not None:
            return sequence
        return self._own_ids(prediction_id) if self._own_ids is not None else None

    def _pending_scores(self, prediction_id: str) -> tuple[int, NDArray[np.float32]] | None:
        """The prediction's slot and scores, or None when it is unknown, overwritten or expired."""
        sequence = self._sequence_of(prediction_id)
        if sequence is None or sequence < 0:
            return None
        slot = sequence % self._max_pending
        if self._slot_sequence[slot] != sequence or self._foreign_ids[slot] not in (None, prediction_id):
            return None
        start, count, capacity = int(self._starts[slot]), int(self._counts[slot]), len(self._scores)
        if time.monotonic() - self._times[slot] > self._ttl or start < self._rows_written - capacity:
            self._release(slot)
            return None
        positions = np.arange(start, start + count) % capacity
        return slot, self._scores[positions]

    def record(self, prediction_id: str, labels: object) -> bool:
        """True when recorded now, False when this id's labels were already recorded (idempotent)."""
        if prediction_id in self._labelled:
            return False
        pending = self._pending_scores(prediction_id)
        if pending is None:
            raise UnknownPredictionError(f"prediction id {prediction_id!r} is unknown or expired")
        slot, scores = pending
        if (
            not isinstance(labels, list)
            or len(labels) != len(scores)
            or not all(type(label) is int and label in (0, 1) for label in labels)  # true is not a class index
        ):
            raise BadRequestError(f"'labels' must be a list of {len(scores)} class indices (0 or 1), one per row")
        truth = np.asarray(labels, dtype=np.int64)
        predicted = (scores >= 0.5).astype(np.int64)
        clipped = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
        losses = -(truth * np.log(clipped) + (1 - truth) * np.log(1 - clipped))
        self._correct.extend((predicted == truth).astype(int).tolist())
        self._log_loss.extend(losses.tolist())
        self._release(slot)
        if len(self._labelled_order) == self._labelled_order.maxlen:
            self._labelled.discard(self._labelled_order[0])
        self._labelled_order.append(prediction_id)
        self._labelled.add(prediction_id)
        return True

    @property
    def pending(self) -> int:
        return int(np.count_nonzero(self._slot_sequence >= 0))

    @property
    def max_pending(self) -> int:
        return self._max_pending

    def size_bytes(self) -> int:
        """The preallocated state; caller-chosen id strings come on top, at most `max_pending` of them."""
        arrays = (self._scores, self._slot_sequence, self._times, self._starts, self._counts)
        return sum(int(a.nbytes) for a in arrays) + 8 * len(self._foreign_ids)

    def accuracy(self) -> float:
        return float(np.mean(self._correct)) if self._correct else math.nan

    def log_loss(self) -> float:
        return float(np.mean(self._log_loss)) if self._log_loss else math.nan

    @property
    def labelled(self) -> int:
        return len(self._correct)


class SourceSampler:
    """How many of a request's rows its source may still put into the drift window in this time slice.

    Each source (a client's name, or its address where the service has no API keys) may add at most `budget` rows
    per `slice_seconds`; the rest of a burst is served and can be labelled, but stays out of the window. So one
    client cannot fill the window alone: with the defaults (5% of the window a minute) a single steady client still
    fills it in twenty minutes, while a burst moves at most 5% of it. The counts are forgotten each slice, and
    sources past `max_sources` in one slice share one allowance, so memory stays bounded whoever calls.
    """

    def __init__(self, budget: int, slice_seconds: float, max_sources: int = 10_000) -> None:
        self.budget = budget
        self.slice_seconds = slice_seconds
        self.max_sources = max_sources
        self._admitted: dict[str, int] = {}
        self._slice_ends = -math.inf

    def admit(self, source: str, rows: int) -> int:
        now = time.monotonic()
        if now >= self._slice_ends:
            self._admitted.clear()
            self._slice_ends = now + self.slice_seconds
        admitted = self._admitted
        if source not in admitted and len(admitted) >= self.max_sources:
            source = "(other sources)"
        used = admitted.get(source, 0)
        granted = min(rows, self.budget - used)
        if granted <= 0:
            return 0
        admitted[source] = used + granted
        return granted


class DriftTracking:
    """What the server calls per inference: `observe`, one list append.

    Every `flush_every` inferences, and before anything reads the state (a refresh, a label, a scrape), the batch
    goes into the drift window and the pending predictions in a few vectorised copies. Per request that is a tuple
    and an append instead of two ring copies and four array stores: measured in `make bench`, that took drift
    tracking's cost from 8% to a few percent of requests/s on one-row requests. The batch holds at most
    `flush_every` requests' arrays.
    """

    def __init__(
        self,
        monitor: DriftMonitor,
        feedback: FeedbackTracker,
        flush_every: int = 256,
        sampler: SourceSampler | None = None,
    ) -> None:
        self.monitor = monitor
        self.feedback = feedback
        self.sampler = sampler
        # No more predictions in a batch than the tracker has slots: consecutive ones cannot evict each other.
        self._flush_every = min(flush_every, feedback.max_pending)
        self._batch: list[tuple[NDArray[np.float32], NDArray[np.float32], str, int | None, int]] = []
        self._sampled = False  # whether some request in the batch keeps rows out of the window

    def observe(
        self,
        rows: NDArray[np.float32],
        probabilities: NDArray[np.float32],
        prediction_id: str,
        sequence: int | None,
        source: str = "",
    ) -> None:
        count = len(rows)
        admitted = count if self.sampler is None else self.sampler.admit(source, count)
        if admitted < count:
            self._sampled = True
        batch = self._batch
        batch.append((rows, probabilities, prediction_id, sequence, admitted))
        if len(batch) >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        batch = self._batch
        if not batch:
            return
        self._batch = []
        positives = np.concatenate([probabilities for _, probabilities, *_ in batch])[:, 1]
        counts = np.fromiter((len(request_rows) for request_rows, *_ in batch), dtype=np.int64, count=len(batch))
        if self._sampled:  # only the admitted head of each request's rows enters the window
            self._sampled = False
            rows = np.concatenate([request_rows[:admitted] for request_rows, *_, admitted in batch])
            window_positives = np.concatenate([probabilities[:admitted, 1] for _, probabilities, *_, admitted in batch])
            self.monitor.record(rows, window_positives)
        else:
            self.monitor.record(np.concatenate([request_rows for request_rows, *_ in batch]), positives)
        self.feedback.remember_batch(
            [prediction_id for _, _, prediction_id, _, _ in batch],
            positives,
            counts,
            [sequence for _, _, _, sequence, _ in batch],
        )

    @property
    def buffered(self) -> int:
        return len(self._batch)

    def refresh(self) -> DriftState:
        self.flush()
        return self.monitor.refresh()

    def record_feedback(self, prediction_id: str, labels: object) -> bool:
        self.flush()
        return self.feedback.record(prediction_id, labels)
