"""Prometheus metrics for the service, all labelled by model name and version.

The request path updates plain counters and bucket arrays (a few hundred nanoseconds); a collector turns
them into Prometheus families when /metrics is scraped. Every update and every scrape runs on the event
loop's thread, so no locks are needed.
"""

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from mlstack_service.drift import DriftTracking
from mlstack_service.feedback_store import FeedbackStore
from mlstack_service.prediction_log import PredictionLog
from mlstack_service.realized import RealizedPerformance

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MODEL_LABELS = ("model_name", "model_version")


class BucketCounts:
    """A histogram's raw state: count per bucket (the last one is +Inf) and the sum of observations."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        running = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*[str(float(b)) for b in self.bounds], "+Inf"), self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets


class ServiceMetrics(Collector):
    """The service's metrics and their exposition."""

    def __init__(self, model_name: str, model_version: str) -> None:
        self._model = [model_name, model_version]
        self.requests: dict[tuple[str, str, int], int] = {}
        self.request_latency: dict[str, BucketCounts] = {}
        self.inference_latency = BucketCounts(LATENCY_BUCKETS)
        self.rows = BucketCounts(ROW_BUCKETS)
        self.in_flight = 0
        self.ready = 0
        self.predictions: dict[str, int] = {}
        self.drift: DriftTracking | None = None
        self.drift_threshold = 0.0
        self.prediction_log: PredictionLog | None = None
        self.feedback_store: FeedbackStore | None = None
        self.realized: RealizedPerformance | None = None
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def attach_drift(self, drift: DriftTracking, threshold: float) -> None:
        self.drift = drift
        self.drift_threshold = threshold

    def attach_labels(
        self, log: PredictionLog | None, store: FeedbackStore | None, realized: RealizedPerformance | None
    ) -> None:
        self.prediction_log, self.feedback_store, self.realized = log, store, realized

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        latency = self.request_latency.get(route)
        if latency is None:
            latency = self.request_latency[route] = BucketCounts(LATENCY_BUCKETS)
        latency.observe(seconds)

    def observe_inference(self, seconds: float, rows: int, class_counts: dict[str, int]) -> None:
        self.inference_latency.observe(seconds)
        self.rows.observe(rows)
        for name, count in class_counts.items():
            self.predictions[name] = self.predictions.get(name, 0) + count

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        model = self._model
        requests = CounterMetricFamily(
            "mlstack_requests",
            "HTTP requests by route, method and status.",
            labels=("route", "method", "status", *MODEL_LABELS),
        )
        for (route, method, status), count in sorted(self.requests.items()):
            requests.add_metric([route, method, str(status), *model], count)
        yield requests

        request_latency = HistogramMetricFamily(
            "mlstack_request_duration_seconds",
            "Time from request start to response sent, by route.",
            labels=("route", *MODEL_LABELS),
        )
        for route, counts in sorted(self.request_latency.items()):
            request_latency.add_metric([route, *model], counts.cumulative(), counts.total)
        yield request_latency

        predictions = CounterMetricFamily(
            "mlstack_predictions", "Predictions served, by predicted class.", labels=("class_name", *MODEL_LABELS)
        )
        for class_name, count in sorted(self.predictions.items()):
            predictions.add_metric([class_name, *model], count)
        yield predictions

        for name, documentation, counts in (
            ("mlstack_inference_duration_seconds", "Time spent in the model for one request.", self.inference_latency),
            ("mlstack_request_rows", "Rows (examples) per inference request.", self.rows),
        ):
            family = HistogramMetricFamily(name, documentation, labels=MODEL_LABELS)
            family.add_metric(model, counts.cumulative(), counts.total)
            yield family

        yield from self._drift_families(model)
        yield from self._label_families(model)

        for name, documentation, value in (
            ("mlstack_requests_in_flight", "Requests being handled now.", self.in_flight),
            ("mlstack_model_info", "The served model; always 1.", 1),
            ("mlstack_ready", "1 while the server advertises readiness.", self.ready),
        ):
            gauge = GaugeMetricFamily(name, documentation, labels=MODEL_LABELS)
            gauge.add_metric(model, value)
            yield gauge

    def _drift_families(self, model: list[str]) -> Iterator[Metric]:
        if self.drift is None:
            return
        self.drift.flush()  # what the counts below read includes the latest requests
        monitor, feedback = self.drift.monitor, self.drift.feedback
        state = monitor.state
        out_of_range = CounterMetricFamily(
            "mlstack_feature_out_of_range",
            "Rows served with a feature outside the range the model declares (served, not refused), per feature.",
            labels=("feature", *MODEL_LABELS),
        )
        for feature, count in zip(monitor.feature_names, monitor.out_of_range.tolist(), strict=True):
            out_of_range.add_metric([feature, *model], count)
        yield out_of_range
        # Below the minimum sample size the statistics are noise: the families are exported without samples,
        # so nothing can alert on them (a dozen rows give a PSI of 6 or 7).
        ready = monitor.ready
        for name, documentation, values in (
            (
                "mlstack_feature_drift_psi",
                "Population stability index of each feature: live window vs training.",
                state.psi,
            ),
            (
                "mlstack_feature_drift_ks",
                "Kolmogorov-Smirnov statistic of each feature: live window vs training.",
                state.ks,
            ),
            (
                "mlstack_feature_out_of_range_share",
                "Share of the drift window's rows with the feature outside the range the model declares.",
                state.out_of_range_share or {},
            ),
        ):
            family = GaugeMetricFamily(name, documentation, labels=("feature", *MODEL_LABELS))
            for feature, value in values.items() if ready else ():
                family.add_metric([feature, *model], value)
            yield family
        share = GaugeMetricFamily(
            "mlstack_predicted_class_share",
            "Share of each class among predictions in the drift window.",
            labels=("class_name", *MODEL_LABELS),
        )
        for class_name, value in state.class_share.items() if ready else ():
            share.add_metric([class_name, *model], value)
        yield share
        prediction_psi = GaugeMetricFamily(
            "mlstack_prediction_drift_psi", "PSI of the predicted score distribution vs training.", labels=MODEL_LABELS
        )
        if ready:
            prediction_psi.add_metric(model, state.prediction_psi)
        yield prediction_psi
        for name, documentation, value in (
            ("mlstack_drift_window_fill", "How full the drift window is (0 to 1).", state.window_fill),
            ("mlstack_drift_window_rows", "Rows in the drift window at the last refresh.", state.rows),
            (
                "mlstack_drift_min_samples",
                "Rows the drift window must hold before drift statistics are exported.",
                monitor.min_samples,
            ),
            ("mlstack_drift_psi_threshold", "PSI above which a feature counts as drifted.", self.drift_threshold),
            (
                "mlstack_rolling_accuracy",
                "Accuracy over the last labelled predictions (NaN before any label).",
                feedback.accuracy(),
            ),
            ("mlstack_rolling_log_loss", "Log loss over the last labelled predictions.", feedback.log_loss()),
            ("mlstack_feedback_labelled_rows", "Labelled rows in the rolling window.", feedback.labelled),
            ("mlstack_feedback_pending", "Predictions awaiting a label.", feedback.pending),
        ):
            gauge = GaugeMetricFamily(name, documentation, labels=MODEL_LABELS)
            gauge.add_metric(model, value)
            yield gauge

    def _label_families(self, model: list[str]) -> Iterator[Metric]:
        """The prediction log, the shared feedback store and the label join's realized performance (S3)."""
        log, store, realized = self.prediction_log, self.feedback_store, self.realized
        if log is not None:
            rows = CounterMetricFamily(
                "mlstack_prediction_log_rows",
                "Predicted rows offered to the prediction log, by outcome (logged, sampled_out, dropped_rate, "
                "dropped_buffer, failed: an S3 write that failed; the prediction itself was served).",
                labels=("outcome", *MODEL_LABELS),
            )
            for outcome, count in log.counters.rows.items():
                rows.add_metric([outcome, *model], count)
            yield rows
            objects = CounterMetricFamily(
                "mlstack_prediction_log_objects", "Prediction log objects written to S3.", labels=MODEL_LABELS
            )
            objects.add_metric(model, log.counters.objects)
            yield objects
            held = GaugeMetricFamily(
                "mlstack_prediction_log_buffered_rows", "Rows held in memory awaiting upload.", labels=MODEL_LABELS
            )
            held.add_metric(model, log.held_rows)
            yield held
        if store is not None:
            writes = CounterMetricFamily(
                "mlstack_feedback_store_writes",
                "Labels posted to the shared feedback store, by outcome (recorded, duplicate: an earlier label for "
                "the id holds, failed: S3 did not store it and the sender got a 503).",
                labels=("outcome", *MODEL_LABELS),
            )
            for outcome, count in store.outcomes.items():
                writes.add_metric([outcome, *model], count)
            yield writes
        if realized is not None:
            for name, documentation, value in (
                (
                    "mlstack_realized_accuracy",
                    "Accuracy of this model version over every labelled prediction the label join found, fleet-wide "
                    "(the same on every replica: take max, not sum). NaN before the first join.",
                    realized.accuracy,
                ),
                ("mlstack_realized_log_loss", "Log loss over the label join's labelled rows.", realized.log_loss),
                (
                    "mlstack_realized_labelled_rows",
                    "Rows the label join's accuracy is computed over.",
                    realized.labelled_rows,
                ),
                (
                    "mlstack_realized_summary_age_seconds",
                    "Seconds since the label join wrote the summary read last (NaN: none read yet).",
                    realized.age_seconds(),
                ),
            ):
                gauge = GaugeMetricFamily(name, documentation, labels=MODEL_LABELS)
                gauge.add_metric(model, value)
                yield gauge
