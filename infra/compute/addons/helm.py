"""Helm releases at the chart versions pinned in infra/versions.py."""

import pulumi
import pulumi_kubernetes as k8s

from infra.versions import ChartPin

# What pulumi-kubernetes' helm.v3.Release waits for (provider/pkg/provider/helm_release.go, v4.32.0): unless
# skipAwait is set it runs Helm with wait on, so the install blocks until every Deployment, StatefulSet and DaemonSet
# of the chart is ready and every hook Job has run, for `timeout` seconds (300 when unset); then it fails.
DEFAULT_AWAIT_SECONDS = 300


def pinned_release(
    resource_name: str,
    *,
    release_name: str,
    chart: ChartPin,
    namespace: str,
    values: dict[str, object],
    opts: pulumi.ResourceOptions,
    timeout_seconds: int = DEFAULT_AWAIT_SECONDS,
) -> k8s.helm.v3.Release:
    """A release of `chart`; `timeout_seconds` is how long the engine waits for its workloads to become ready."""
    return k8s.helm.v3.Release(
        resource_name,
        name=release_name,
        chart=chart.chart,
        version=chart.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repository),
        namespace=namespace,
        values=values,
        timeout=timeout_seconds,
        opts=opts,
    )
