"""Prometheus metrics for the service, all labelled by model name and version.

Requests also carry `protocol` (rest or grpc). A gRPC call counts under the route of the REST operation it is
(ModelInfer under /v2/models/{name}/infer) with the HTTP status the same answer has over REST, so every dashboard,
alert and rollout analysis that selects on route and status sees both protocols.

The request path updates plain counters and bucket arrays (a few hundred nanoseconds); a collector turns
them into Prometheus families when /metrics is scraped. Every update and every scrape runs on the event
loop's thread, so no locks are needed.
"""

import math
from bisect import bisect_left
from collections.abc import Iterator

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from mlstack_service.drift import DriftMonitor, DriftTracking
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
        self.requests: dict[tuple[str, str, int, str], int] = {}
        self.request_latency: dict[tuple[str, str], BucketCounts] = {}
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

    def observe_request(self, route: str, method: str, status: int, seconds: float, protocol: str) -> None:
        key = (route, method, status, protocol)
        self.requests[key] = self.requests.get(key, 0) + 1
        latency = self.request_latency.get((route, protocol))
        if latency is None:
            latency = self.request_latency[route, protocol] = BucketCounts(LATENCY_BUCKETS)
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
            "Requests by route, method, status and protocol (rest, grpc).",
            labels=("route", "method", "status", "protocol", *MODEL_LABELS),
        )
        for (route, method, status, protocol), count in sorted(self.requests.items()):
            requests.add_metric([route, method, str(status), protocol, *model], count)
        yield requests

        request_latency = HistogramMetricFamily(
            "mlstack_request_duration_seconds",
            "Time from request start to response sent, by route and protocol.",
            labels=("route", "protocol", *MODEL_LABELS),
        )
        for (route, protocol), counts in sorted(self.request_latency.items()):
            request_latency.add_metric([route, protocol, *model], counts.cumulative(), counts.total)
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
        self.drift.monitor.count_pending()
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
        # Below the minimum sample size the statistics are withheld (a dozen rows give a PSI of 6 or 7); the verdicts
        # are exported always, 0 until the window holds the minimum and the test its own minimum.
        ready = monitor.ready
        yield from _drift_verdicts(monitor, model)
        for name, documentation, values in (
            (
                "mlstack_feature_drift_psi",
                "Population stability index of each feature (an effect size, smoothed): live window vs training.",
                state.psi,
            ),
            (
                "mlstack_feature_drift_ks",
                "Kolmogorov-Smirnov distance of each feature at its profile's bin edges: live window vs training.",
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
        yield from _drift_counters(monitor, model)
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
            (
                "mlstack_drift_psi_threshold",
                "PSI a dashboard marks as large (an effect size; verdicts come from the tests).",
                self.drift_threshold,
            ),
            (
                "mlstack_drift_false_alarm_alpha",
                "Chance of a false verdict per look that each drift alert is allowed (split over its tests).",
                monitor.budget.alpha,
            ),
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


def _drift_verdicts(monitor: DriftMonitor, model: list[str]) -> Iterator[Metric]:
    """Each test's verdict, statistic, critical value, p-value and minimum rows, over this replica's window."""
    state = monitor.state
    ready = monitor.ready
    detected = GaugeMetricFamily(
        "mlstack_feature_drift_detected",
        "1 when the feature's test rejects 'same distribution as training' within the false-alarm budget.",
        labels=("feature", *MODEL_LABELS),
    )
    for feature in monitor.feature_names:
        detected.add_metric([feature, *model], float(monitor.feature_detected(feature)))
    yield detected
    prediction = GaugeMetricFamily(
        "mlstack_prediction_drift_detected",
        "1 when the approval rate, the score distribution or the estimated accuracy moved beyond the budget.",
        labels=MODEL_LABELS,
    )
    prediction.add_metric(model, float(monitor.prediction_detected))
    yield prediction
    for prefix, key, results, what in (
        ("mlstack_feature_drift", "feature", state.features, "the feature's test (KS lambda or chi-square)"),
        ("mlstack_prediction_drift", "test", state.decisions, "the decision test (z or KS lambda)"),
    ):
        labels = (key, *MODEL_LABELS)
        families = {
            "statistic": GaugeMetricFamily(f"{prefix}_statistic", f"Statistic of {what}.", labels=labels),
            "critical": GaugeMetricFamily(
                f"{prefix}_critical_value", f"Value of {what} at its share of the false-alarm budget.", labels=labels
            ),
            "p_value": GaugeMetricFamily(f"{prefix}_p_value", f"p-value of {what}.", labels=labels),
            "min_rows": GaugeMetricFamily(
                f"{prefix}_min_rows", f"Rows {what} needs before its verdict counts.", labels=labels
            ),
        }
        for name, result in results.items():
            families["critical"].add_metric([name, *model], result.critical)
            families["min_rows"].add_metric([name, *model], result.min_rows)
            if ready:
                families["statistic"].add_metric([name, *model], result.statistic)
                families["p_value"].add_metric([name, *model], result.p_value)
        yield from families.values()
    estimated = GaugeMetricFamily(
        "mlstack_estimated_accuracy",
        "Accuracy expected from the window's calibrated scores (CBPE: mean of max(p, 1 - p)); blind to concept drift.",
        labels=MODEL_LABELS,
    )
    if ready:
        estimated.add_metric(model, state.estimated_accuracy)
    yield estimated


def _edge_label(edge: float) -> str:
    return repr(float(edge))


def _drift_counters(monitor: DriftMonitor, model: list[str]) -> Iterator[Metric]:
    """Per-bin counters since start, and the reference they are compared with: what the fleet's recording rules sum
    over their time window (monitoring/rules/drift.rules.yml). KS features and the scores count cumulatively (rows at
    or below each inner edge, like a histogram's `le`); chi-square features count per bin (`le`: the bin's upper edge).
    Series per replica: at most 2 x (20 bins x continuous features + 50 bins x discrete ones + 20 score bins)."""
    by_feature = ("feature", "le", *MODEL_LABELS)
    cumulative = CounterMetricFamily(
        "mlstack_drift_feature_cumulative_rows",
        "Rows whose feature is at or below each inner bin edge of the reference profile (continuous features).",
        labels=by_feature,
    )
    per_bin = CounterMetricFamily(
        "mlstack_drift_feature_bin_rows",
        "Rows per exact-value bin of the reference profile, by the bin's upper edge (discrete and categorical).",
        labels=by_feature,
    )
    reference_cdf = GaugeMetricFamily(
        "mlstack_drift_reference_cdf", "Share of training rows at or below each inner bin edge.", labels=by_feature
    )
    reference_share = GaugeMetricFamily(
        "mlstack_drift_reference_share", "Share of training rows in each exact-value bin.", labels=by_feature
    )
    for feature, bins in monitor.bins.items():
        if bins.test == "ks":
            running = np.cumsum(bins.totals)[:-1]
            for edge, count, share in zip(bins.edges.tolist(), running.tolist(), bins.cdf.tolist(), strict=True):
                cumulative.add_metric([feature, _edge_label(edge), *model], count)
                reference_cdf.add_metric([feature, _edge_label(edge), *model], share)
        else:
            uppers = [_edge_label(edge) for edge in bins.edges.tolist()] + ["+Inf"]
            for upper, count, share in zip(uppers, bins.totals.tolist(), bins.shares.tolist(), strict=True):
                per_bin.add_metric([feature, upper, *model], count)
                reference_share.add_metric([feature, upper, *model], share)
    yield from (cumulative, per_bin, reference_cdf, reference_share)
    scores = monitor.score_bins
    score_cumulative = CounterMetricFamily(
        "mlstack_drift_score_cumulative_rows",
        "Rows whose positive-class score is at or below each inner edge of the training scores' bins.",
        labels=("le", *MODEL_LABELS),
    )
    score_reference = GaugeMetricFamily(
        "mlstack_drift_reference_score_cdf",
        "Share of training predictions at or below each inner score bin edge.",
        labels=("le", *MODEL_LABELS),
    )
    running = np.cumsum(scores.totals)[:-1]
    for edge, count, share in zip(scores.edges.tolist(), running.tolist(), scores.cdf.tolist(), strict=True):
        score_cumulative.add_metric([_edge_label(edge), *model], count)
        score_reference.add_metric([_edge_label(edge), *model], share)
    yield from (score_cumulative, score_reference)
    for name, documentation, value in (
        ("mlstack_drift_rows", "Rows admitted into drift tracking.", monitor.rows_total),
        ("mlstack_drift_positive_rows", "Admitted rows scored positive (approved).", monitor.positive_total),
        (
            "mlstack_drift_estimated_correct_rows",
            "Sum over admitted rows of max(p, 1 - p): the correct predictions CBPE expects.",
            monitor.confidence_total,
        ),
    ):
        counter = CounterMetricFamily(name, documentation, labels=MODEL_LABELS)
        counter.add_metric(model, value)
        yield counter
    reference = monitor.reference_estimated_accuracy
    for name, documentation, value in (
        ("mlstack_drift_reference_rows", "Training rows behind the reference profile.", monitor.reference_rows),
        (
            "mlstack_drift_reference_positive_rate",
            "Share of training predictions scored positive.",
            monitor.reference_positive_rate,
        ),
        (
            "mlstack_drift_reference_estimated_accuracy",
            "CBPE estimated accuracy of the training predictions.",
            math.nan if reference is None else reference,
        ),
        (
            "mlstack_drift_reference_confidence_std",
            "Standard deviation of max(p, 1 - p) over the training predictions.",
            monitor.reference_confidence_std or math.nan,
        ),
        (
            "mlstack_drift_max_accuracy_drop",
            "A fall of the estimated accuracy smaller than this never counts as drift.",
            monitor.budget.max_accuracy_drop,
        ),
    ):
        gauge = GaugeMetricFamily(name, documentation, labels=MODEL_LABELS)
        gauge.add_metric(model, value)
        yield gauge
