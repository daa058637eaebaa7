"""Argo Rollouts (Helm, pinned): the controller that carries out the model service's canary and blue-green releases.

The chart renders its CRDs as templates behind `installCRDs` (argo-helm, charts/argo-rollouts/templates/crds/), not
from a `crds/` folder Helm installs once and never upgrades: so a chart bump in infra/versions.py upgrades the
Rollout and AnalysisTemplate schemas with the controller. `keepCRDs` marks them `helm.sh/resource-policy: keep`, so
removing the release never deletes the CRDs and, with them, every Rollout in the cluster.
"""

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.compute.addons.helm import pinned_release
from infra.compute.eks_cluster import EksCluster
from infra.compute.node_pools import POOL_LABEL
from infra.versions import ARGO_ROLLOUTS_CHART
from infra.workloads.objects import create

NAMESPACE = "argo-rollouts"
RELEASE = "argo-rollouts"


def argo_rollouts_values() -> dict[str, Any]:
    """Every key exists in the pinned chart's values.yaml (argo-helm tag argo-rollouts-2.41.0)."""
    return {
        "installCRDs": True,
        "keepCRDs": True,
        "controller": {
            # Two replicas with leader election: a node drain never stalls a release in progress.
            "replicas": 2,
            "nodeSelector": {POOL_LABEL: "cpu"},
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
            "pdb": {"enabled": True, "minAvailable": 1},
        },
        "dashboard": {"enabled": False},
    }


class ArgoRollouts(pulumi.ComponentResource):
    """The controller's namespace and Helm release; `release` is what a Rollout or AnalysisTemplate depends on."""

    release: k8s.helm.v3.Release

    def __init__(
        self,
        name: str,
        *,
        cluster: EksCluster,
        depends_on: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:workloads:ArgoRollouts", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=depends_on)
        namespace = create(
            k8s.core.v1.Namespace,
            f"{name}-namespace",
            metadata={"name": NAMESPACE, "labels": {"app.kubernetes.io/name": RELEASE}},
            opts=k8s_opts,
        )
        self.release = pinned_release(
            f"{name}-release",
            release_name=RELEASE,
            chart=ARGO_ROLLOUTS_CHART,
            namespace=NAMESPACE,
            values=argo_rollouts_values(),
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[namespace])),
        )
        self.register_outputs({})
