"""The AnalysisTemplate that gates every canary step and the blue-green switch, against the stack's own Prometheus.

It measures the new version's pods only (their names carry the new ReplicaSet's pod-template hash, an argument the
Rollout passes): the 5xx ratio and p99 latency of inference requests against `monitoring.slo`, and, when the new
pods serve another model version than the stable ones, the drift of their predicted scores from the training data.
A measurement fails only on data: a window without requests (a preview Service nobody calls yet) passes, so the
gate never waits on traffic that is not coming. More than `release.analysis.failureLimit` failed measurements fail
the run; the Rollout then aborts, and all traffic returns to the stable version.
"""

from typing import Any

from infra.config import Environment
from infra.workloads.release_tracks import APP

TEMPLATE_NAME = f"{APP}-slo"
INFER_ROUTE = 'route=~"/v2/models/.*infer"'


def prometheus_address() -> str:
    """kube-prometheus-stack's Prometheus Service in the monitoring namespace (the one Prometheus Adapter reads)."""
    # Imported here: the monitoring module imports the model service's names, which import this module.
    from infra.monitoring.kube_prometheus_stack import NAMESPACE, RELEASE  # noqa: PLC0415

    return f"http://{RELEASE}-prometheus.{NAMESPACE}.svc:9090"


def _failure_above(threshold: float) -> str:
    """Fails a measurement that has a value above `threshold`; no series or NaN (no requests) is not a failure."""
    return f"len(result) > 0 && !isNaN(result[0]) && result[0] > {threshold}"


def analysis_template_spec(env: Environment, namespace: str) -> dict[str, Any]:
    """`spec` of the AnalysisTemplate: three Prometheus metrics over the new pods, thresholds from the stack."""
    slo = env.config.monitoring.slo
    analysis = env.config.release.analysis
    window = analysis.interval
    new_pods = f'namespace="{namespace}", pod=~"{APP}-{{{{args.new-hash}}}}-.*"'
    stable_pods = f'namespace="{namespace}", pod=~"{APP}-{{{{args.stable-hash}}}}-.*"'
    queries = {
        "error-ratio": (
            f'sum(rate(mlstack_requests_total{{{new_pods}, {INFER_ROUTE}, status=~"5.."}}[{window}])) / '
            f"sum(rate(mlstack_requests_total{{{new_pods}, {INFER_ROUTE}}}[{window}]))",
            slo.error_ratio,
        ),
        "latency-p99": (
            "histogram_quantile(0.99, sum by (le) "
            f"(rate(mlstack_request_duration_seconds_bucket{{{new_pods}, {INFER_ROUTE}}}[{window}])))",
            slo.latency_p99_seconds,
        ),
        # Only a new model version: series whose model_version the stable pods also serve are dropped (unless).
        "prediction-drift": (
            f"max(max by (model_version) (mlstack_prediction_drift_psi{{{new_pods}}}) "
            f"unless on (model_version) mlstack_model_info{{{stable_pods}}})",
            analysis.max_prediction_drift_psi,
        ),
    }
    metrics = [
        {
            "name": name,
            "interval": analysis.interval,
            "count": analysis.count,
            "failureLimit": analysis.failure_limit,
            "failureCondition": _failure_above(threshold),
            "provider": {"prometheus": {"address": prometheus_address(), "query": query}},
        }
        for name, (query, threshold) in queries.items()
    ]
    return {"args": [{"name": "new-hash"}, {"name": "stable-hash"}], "metrics": metrics}
