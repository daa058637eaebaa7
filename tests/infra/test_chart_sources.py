"""Every Helm release of the EKS stacks is a chart we expect, from its own project's chart repository, at an exact
version: stated here rather than read back from infra/versions.py, so a swapped chart or source fails."""

import re

import pytest

from infra import versions
from infra.preview.engine import StackRun
from infra.versions import ChartPin

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
# release name -> (chart, the repository its project publishes it from)
EXPECTED_CHARTS = {
    "argo-rollouts": ("argo-rollouts", "https://argoproj.github.io/argo-helm"),
    "cluster-autoscaler": ("cluster-autoscaler", "https://kubernetes.github.io/autoscaler"),
    "aws-load-balancer-controller": ("aws-load-balancer-controller", "https://aws.github.io/eks-charts"),
    "prometheus-operator-crds": ("prometheus-operator-crds", "https://prometheus-community.github.io/helm-charts"),
    "kube-prometheus-stack": ("kube-prometheus-stack", "https://prometheus-community.github.io/helm-charts"),
    "prometheus-adapter": ("prometheus-adapter", "https://prometheus-community.github.io/helm-charts"),
    "dcgm-exporter": ("dcgm-exporter", "https://nvidia.github.io/dcgm-exporter/helm-charts"),
    "nvidia-device-plugin": ("nvidia-device-plugin", "https://nvidia.github.io/k8s-device-plugin"),
}
EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_every_release_is_an_expected_chart_from_its_projects_repository(
    committed_runs: dict[str, StackRun], stack: str
) -> None:
    releases = {r.inputs["name"]: r.inputs for r in committed_runs[stack].of_type(HELM_RELEASE)}
    # Both stacks have a GPU pool, so both install every chart above.
    assert set(releases) == set(EXPECTED_CHARTS)
    pins = {pin.chart: pin for pin in vars(versions).values() if isinstance(pin, ChartPin)}
    for name, (chart, repository) in EXPECTED_CHARTS.items():
        release = releases[name]
        assert release["chart"] == chart, name
        assert release["repositoryOpts"]["repo"] == repository, name
        assert EXACT_VERSION.match(release["version"]), f"{name}: {release['version']} is not an exact version"
        # ...and the version is the one pin in infra/versions.py, which carries its provenance.
        assert release["version"] == pins[chart].version, name
