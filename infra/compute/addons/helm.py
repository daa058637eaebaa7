"""Helm releases at the chart versions pinned in infra/versions.py."""

import pulumi
import pulumi_kubernetes as k8s


def pinned_release(
    resource_name: str,
    *,
    release_name: str,
    chart: tuple[str, str, str],
    namespace: str,
    values: dict[str, object],
    opts: pulumi.ResourceOptions,
) -> k8s.helm.v3.Release:
    """`chart` is (repository, chart name, version), as versions.py pins it."""
    repository, chart_name, version = chart
    return k8s.helm.v3.Release(
        resource_name,
        name=release_name,
        chart=chart_name,
        version=version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=repository),
        namespace=namespace,
        values=values,
        opts=opts,
    )
