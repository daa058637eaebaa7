"""The NVIDIA device plugin (Helm, pinned): advertises nvidia.com/gpu on the GPU pool's nodes."""

import pulumi
import pulumi_kubernetes as k8s

from infra.compute.addons.helm import pinned_release
from infra.compute.node_pools import NodePools, PoolSpec
from infra.compute.taints import tolerations_for
from infra.versions import NVIDIA_DEVICE_PLUGIN_CHART

NAMESPACE = "kube-system"


def pool_affinity(pool: PoolSpec) -> dict[str, object]:
    """A required node affinity that matches exactly the nodes carrying every label of `pool`."""
    expressions = [{"key": key, "operator": "In", "values": [value]} for key, value in sorted(pool.labels.items())]
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": expressions}]}
        }
    }


def device_plugin_values(pool: PoolSpec) -> dict[str, object]:
    """Scheduled on the GPU pool only, tolerating exactly the taints that pool carries.

    The chart (0.20.0 values.yaml) defaults `affinity` to three nodeSelectorTerms on node-feature-discovery labels,
    which EKS nodes do not carry. Helm merges maps but replaces lists, so setting `nodeSelectorTerms` replaces those
    terms with the pool's; `tolerations` likewise replaces the chart's defaults.
    """
    return {
        "tolerations": tolerations_for(pool.taints),
        "nodeSelector": dict(pool.labels),
        "affinity": pool_affinity(pool),
        "priorityClassName": "system-node-critical",
    }


class NvidiaDevicePlugin(pulumi.ComponentResource):
    """A Helm release of the device plugin, derived from the GPU pool's definition."""

    def __init__(
        self, name: str, pool: PoolSpec, provider: k8s.Provider, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlstack:compute:NvidiaDevicePlugin", name, None, opts)
        self.release = pinned_release(
            f"{name}-release",
            release_name="nvidia-device-plugin",
            chart=NVIDIA_DEVICE_PLUGIN_CHART,
            namespace=NAMESPACE,
            values=device_plugin_values(pool),
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        self.register_outputs({})

    @classmethod
    def from_pools(
        cls, name: str, pools: NodePools, provider: k8s.Provider, opts: pulumi.ResourceOptions | None = None
    ) -> "NvidiaDevicePlugin | None":
        """The plugin for the GPU pool, or None when the stack has no GPU pool."""
        gpu = pools.spec("gpu")
        if gpu is None:
            return None
        return cls(name, gpu, provider, pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[pools])))
