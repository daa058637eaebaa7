"""Deploy-readiness rules: what the real engine, the providers and the cluster will do with the recorded graph on
the first `pulumi up`, which a recording engine that accepts everything and waits for nothing cannot show.

Each rule is a plain function over the run that yields (URN, message) pairs; `check_readiness` turns them into
violations of the same shape as the policy rules'. Ordering is judged on what the engine orders by: a resource
is registered only after everything it depends on (depends_on and input references, as the SDK sends them in
`dependencies`), after its parent (whose own registration waited for the parent's depends_on; the SDK does not
copy a parent's depends_on into its children's `dependencies`) and after its provider. The relation is
transitive.

Sources the rules encode (checked, not remembered):
- pulumi-kubernetes at commit 94977969d64112b04e19945818a7d5d5f38f631d: provider/pkg/kinds/kinds.go
  (`Kind.Namespaced`: the built-in namespaced kinds), provider/pkg/await/await.go (creates and updates are awaited
  10 minutes unless `customTimeouts` or the `pulumi.com/timeoutSeconds` annotation say otherwise; the annotation
  `pulumi.com/skipAwait: "true"` skips the wait), provider/pkg/await/awaiters.go (the awaited kinds: Deployment,
  StatefulSet, DaemonSet, Job, Pod, PersistentVolumeClaim, Service, Ingress, ...).
- The built-in API groups are the ones the installed pulumi_kubernetes SDK ships types for.
- hashicorp/terraform-provider-aws (which pulumi-aws bridges) at af55dfb90500e80afb9d9ba64a76024e500c948a:
  internal/service/acm/certificate_validation.go (a CertificateValidation's create polls the certificate until
  ISSUED; 75 minutes by default).
- NVIDIA/k8s-device-plugin v0.17.1 (f989dcfee6196656b76c6917c0c8f1402f6f8972) and v0.18.2
  (661674626f24212887363fe6fc14f0ae53afe9c0): deployments/helm/nvidia-device-plugin/values.yaml's default
  `affinity` requires node-feature-discovery labels; its templates create no Service.
"""

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pulumi_kubernetes

from infra.policy.rules import MANDATORY, Violation
from infra.preview.engine import RecordedResource, StackRun, unwrap_secret

RELEASE = "kubernetes:helm.sh/v3:Release"
NAMESPACE_TYPE = "kubernetes:core/v1:Namespace"
CRD_TYPES = ("kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition",)
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
KUBERNETES_PROVIDER = "pulumi:providers:kubernetes"
# Namespaces every EKS cluster has before the stack creates anything.
PREEXISTING_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
# pulumi-kubernetes provider/pkg/kinds/kinds.go, Kind.Namespaced(): the built-in kinds that live in a namespace.
NAMESPACED_KINDS = frozenset(
    {
        "Binding", "ConfigMap", "ControllerRevision", "CronJob", "CSIStorageCapacity", "DaemonSet", "Deployment",
        "Endpoints", "EndpointSlice", "Event", "HorizontalPodAutoscaler", "Ingress", "Job", "Lease", "LimitRange",
        "NetworkPolicy", "PersistentVolumeClaim", "Pod", "PodDisruptionBudget", "PodTemplate", "ReplicaSet",
        "ReplicationController", "ResourceQuota", "Role", "RoleBinding", "Secret", "Service", "ServiceAccount",
        "StatefulSet",
    }
)  # fmt: skip
# Modules of the Kubernetes SDK that are Pulumi's own resources, not API groups of the cluster.
PULUMI_MODULES = frozenset({"helm.sh", "yaml", "kustomize"})
# Charts that install the CRDs of these API groups (extend as charts are added).
CHART_CRD_GROUPS: dict[str, frozenset[str]] = {
    "argo-rollouts": frozenset({"argoproj.io"}),
    "kube-prometheus-stack": frozenset({"monitoring.coreos.com"}),
    "prometheus-operator-crds": frozenset({"monitoring.coreos.com"}),
}
LOAD_BALANCER_CONTROLLER_CHART = "aws-load-balancer-controller"
# Charts whose templates create no Service (so the controller's Service webhook never sees them).
CHARTS_WITHOUT_SERVICES = frozenset({"nvidia-device-plugin"})
SERVICE_KINDS = frozenset({"Service", "Ingress"})
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"})
SCALABLE_KINDS = frozenset({"Deployment", "StatefulSet", "ReplicaSet", "Rollout"})
ROLLOUT_GROUP = "argoproj.io"
# Labels every EKS node carries besides the node group's own; values the stack cannot know match anything.
NODE_LABEL_ANY_VALUE = frozenset(
    {"topology.kubernetes.io/zone", "topology.kubernetes.io/region", "kubernetes.io/hostname",
     "eks.amazonaws.com/nodegroup", "eks.amazonaws.com/nodegroup-image", "topology.k8s.aws/zone-id"}
)  # fmt: skip
EKS_TAINT_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
SKIP_AWAIT = "pulumi.com/skipAwait"
TIMEOUT_SECONDS_ANNOTATION = "pulumi.com/timeoutSeconds"
DEFAULT_AWAIT_SECONDS = 600
AWAITED_WORKLOADS = frozenset({"Deployment", "StatefulSet", "ReplicaSet", "Pod"})
# Ingress classes and Service load-balancer classes only a controller's release serves; the provider awaits an
# Ingress until status.loadBalancer has an address (provider/pkg/await/ingress.go), which nothing else writes.
CONTROLLER_CLASSES = {
    "alb": LOAD_BALANCER_CONTROLLER_CHART,
    "service.k8s.aws/nlb": LOAD_BALANCER_CONTROLLER_CHART,
}
NFD_GPU_AFFINITY: dict[str, Any] = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "feature.node.kubernetes.io/pci-10de.present", "operator": "In",
                                       "values": ["true"]}]},
                {"matchExpressions": [{"key": "feature.node.kubernetes.io/cpu-model.vendor_id", "operator": "In",
                                       "values": ["NVIDIA"]}]},
                {"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]},
            ]
        }
    }
}  # fmt: skip


@dataclass(frozen=True)
class ChartPlacement:
    """Where a chart takes nodeSelector, affinity and tolerations for its pods, and its default affinity."""

    value_paths: tuple[str, ...]
    default_affinity: Mapping[str, Any] | None = None
    gpu_only: bool = False


DEVICE_PLUGIN_CHART = "nvidia-device-plugin"
GPU_RESOURCE = "nvidia.com/gpu"
CHART_PLACEMENTS: dict[str, ChartPlacement] = {
    DEVICE_PLUGIN_CHART: ChartPlacement(("",), NFD_GPU_AFFINITY, gpu_only=True),
    "dcgm-exporter": ChartPlacement(("",), gpu_only=True),
}
# Other charts' pod placement values, checked where the stack sets them (top level unless listed here).
# kube-prometheus-stack 78.3.2 (prometheus-community/helm-charts 559054337443e35fd933efe9b2ac066e03e8f05b,
# charts/kube-prometheus-stack/values.yaml).
CHART_PLACEMENT_PATHS: dict[str, tuple[str, ...]] = {
    "kube-prometheus-stack": (
        "prometheus.prometheusSpec",
        "alertmanager.alertmanagerSpec",
        "prometheusOperator",
        "thanosRuler.thanosRulerSpec",
    ),
}
PLACEMENT_KEYS = ("nodeSelector", "affinity", "tolerations")
# Chart values that ask for a volume claim: (path to the claim's spec, path to a switch that must be on, if any).
CHART_CLAIMS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "kube-prometheus-stack": (
        ("prometheus.prometheusSpec.storageSpec.volumeClaimTemplate.spec", None),
        ("alertmanager.alertmanagerSpec.storage.volumeClaimTemplate.spec", None),
        ("grafana.persistence", "grafana.persistence.enabled"),
    ),
    "grafana": (("persistence", "persistence.enabled"),),
}

Finding = tuple[str, str]


@cache
def builtin_groups() -> frozenset[str]:
    """API groups the Kubernetes SDK ships types for ("core" is the empty group)."""
    registry = (Path(pulumi_kubernetes.__file__).parent / "__init__.py").read_text(encoding="utf-8")
    modules = set(re.findall(r'"mod": "([^"/]+)/[^"]+"', registry))
    return frozenset(modules - PULUMI_MODULES)


@dataclass(frozen=True)
class KubeObject:
    """A Kubernetes object the stack registers, with the inputs unwrapped."""

    resource: RecordedResource
    group: str
    kind: str
    inputs: Mapping[str, Any]

    @property
    def urn(self) -> str:
        return self.resource.urn

    @property
    def metadata(self) -> Mapping[str, Any]:
        return _mapping(self.inputs.get("metadata"))

    @property
    def object_name(self) -> str | None:
        name = self.metadata.get("name")
        return name if isinstance(name, str) else None

    @property
    def annotations(self) -> Mapping[str, Any]:
        return _mapping(self.metadata.get("annotations"))

    @property
    def spec(self) -> Mapping[str, Any]:
        return _mapping(self.inputs.get("spec"))

    @property
    def is_builtin(self) -> bool:
        return self.group == "core" or self.group in builtin_groups()


@dataclass(frozen=True)
class Release:
    resource: RecordedResource
    chart: str
    namespace: str
    values: Mapping[str, Any]
    inputs: Mapping[str, Any]

    @property
    def urn(self) -> str:
        return self.resource.urn


@dataclass(frozen=True)
class NodePool:
    name: str
    ami_type: str
    labels: Mapping[str, frozenset[str]]
    taints: list[dict[str, str]]
    desired_size: float | None
    gpu: bool


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _at(values: Mapping[str, Any], path: str) -> Any:
    current: Any = values
    for part in (part for part in path.split(".") if part):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def _has(values: Mapping[str, Any], path: str) -> bool:
    *head, last = path.split(".")
    parent = _at(values, ".".join(head))
    return isinstance(parent, Mapping) and last in parent


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _short(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


class Graph:
    """The run seen as a cluster and its ordering."""

    def __init__(self, run: StackRun) -> None:
        self.run = run
        self._by_urn = {resource.urn: resource for resource in run.resources}
        self._after: dict[str, frozenset[str]] = {}
        self.objects: list[KubeObject] = []
        self.releases: list[Release] = []
        for resource in run.resources:
            if not resource.custom or not resource.type.startswith("kubernetes:"):
                continue
            inputs = {key: unwrap_secret(value) for key, value in resource.inputs.items()}
            if resource.type == RELEASE:
                chart = str(inputs.get("chart") or "").rstrip("/").rsplit("/", 1)[-1]
                namespace = inputs.get("namespace") or self.default_namespace(resource)
                values = _mapping(inputs.get("values"))
                self.releases.append(Release(resource, chart, str(namespace), values, inputs))
                continue
            module, _, kind = resource.type.split(":", 1)[1].partition(":")
            group = module.split("/")[0]
            if group in PULUMI_MODULES:
                continue
            self.objects.append(KubeObject(resource, group, kind, inputs))
        self.pools = [self._pool(resource) for resource in run.resources if resource.type == NODE_GROUP]

    def by_urn(self, urn: str) -> RecordedResource | None:
        return self._by_urn.get(urn)

    def default_namespace(self, resource: RecordedResource) -> str:
        """The namespace the provider puts an object without one into: the provider's `namespace`, or default."""
        provider = self.by_urn(resource.provider.rsplit("::", 1)[0]) if resource.provider else None
        namespace = provider.inputs.get("namespace") if provider and provider.type == KUBERNETES_PROVIDER else None
        return namespace if isinstance(namespace, str) and namespace else "default"

    def ordered_after(self, urn: str) -> frozenset[str]:
        """Every resource the engine registers before `urn`: dependencies, parents and providers, transitively."""
        if urn in self._after:
            return self._after[urn]
        seen: set[str] = set()
        stack = list(self._direct(urn))
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            if current in self._after:
                seen |= self._after[current]
                continue
            stack.extend(self._direct(current))
        self._after[urn] = frozenset(seen)
        return self._after[urn]

    def _direct(self, urn: str) -> list[str]:
        resource = self.by_urn(urn)
        if resource is None:
            return []
        direct = list(resource.dependencies)
        if resource.parent:
            direct.append(resource.parent)
        if resource.provider:
            direct.append(resource.provider.rsplit("::", 1)[0])
        return direct

    def depends_on(self, urn: str, others: Iterable[str]) -> bool:
        after = self.ordered_after(urn)
        return any(other in after for other in others)

    def namespace_of(self, item: KubeObject) -> str | None:
        """The namespace an object lives in, or None for a cluster-scoped one."""
        namespace = item.metadata.get("namespace")
        if item.is_builtin:
            if item.kind not in NAMESPACED_KINDS:
                return None
            return str(namespace) if namespace else self.default_namespace(item.resource)
        # A custom resource's scope is in its CRD; the program names a namespace for every namespaced one.
        return str(namespace) if namespace else None

    @staticmethod
    def _pool(resource: RecordedResource) -> NodePool:
        inputs = {key: unwrap_secret(value) for key, value in resource.inputs.items()}
        labels: dict[str, frozenset[str]] = {
            key: frozenset({str(value)}) for key, value in _mapping(inputs.get("labels")).items()
        }
        ami = str(inputs.get("amiType") or "")
        labels.setdefault("kubernetes.io/os", frozenset({"linux"}))
        labels.setdefault("kubernetes.io/arch", frozenset({"arm64" if "ARM" in ami else "amd64"}))
        labels.setdefault("eks.amazonaws.com/capacityType", frozenset({str(inputs.get("capacityType") or "ON_DEMAND")}))
        instance_types = frozenset(str(name) for name in _list(inputs.get("instanceTypes")))
        if instance_types:
            labels.setdefault("node.kubernetes.io/instance-type", instance_types)
        taints = [
            {
                "key": str(taint.get("key", "")),
                "value": str(taint.get("value") or ""),
                "effect": EKS_TAINT_EFFECTS.get(str(taint.get("effect")), str(taint.get("effect"))),
            }
            for taint in _list(inputs.get("taints"))
            if isinstance(taint, Mapping)
        ]
        desired = _mapping(inputs.get("scalingConfig")).get("desiredSize")
        gpu = "NVIDIA" in ami or "GPU" in ami or any(taint["key"] == "nvidia.com/gpu" for taint in taints)
        return NodePool(
            name=resource.name,
            ami_type=ami,
            labels=labels,
            taints=taints,
            desired_size=float(desired) if isinstance(desired, int | float) else None,
            gpu=gpu,
        )


# ---------------------------------------------------------------------------------------------------------------
# namespace-dependency


def _namespace_creators(graph: Graph) -> dict[str, list[str]]:
    creators: dict[str, list[str]] = {}
    for item in graph.objects:
        if item.resource.type == NAMESPACE_TYPE and item.object_name:
            creators.setdefault(item.object_name, []).append(item.urn)
    for release in graph.releases:
        if _truthy(release.inputs.get("createNamespace")):
            creators.setdefault(release.namespace, []).append(release.urn)
    return creators


def namespace_dependency(graph: Graph) -> Iterator[Finding]:
    creators = _namespace_creators(graph)
    placed: list[tuple[str, str | None]] = [(item.urn, graph.namespace_of(item)) for item in graph.objects]
    placed += [
        (release.urn, release.namespace)
        for release in graph.releases
        if not _truthy(release.inputs.get("createNamespace"))
    ]
    for urn, namespace in placed:
        if namespace is None or namespace in PREEXISTING_NAMESPACES:
            continue
        makers = [maker for maker in creators.get(namespace, []) if maker != urn]
        if not makers:
            yield urn, f"lives in namespace {namespace}, which nothing in the stack creates"
        elif not graph.depends_on(urn, makers):
            names = ", ".join(_short(maker) for maker in makers)
            yield (
                urn,
                (
                    f"lives in namespace {namespace} but does not depend on {names}, which creates it; the create is "
                    "retried for about 30 seconds and then fails"
                ),
            )


# ---------------------------------------------------------------------------------------------------------------
# crd-dependency


def crd_dependency(graph: Graph) -> Iterator[Finding]:
    for item in graph.objects:
        if item.is_builtin:
            continue
        installers = [
            crd.urn
            for crd in graph.objects
            if crd.resource.type in CRD_TYPES
            and crd.spec.get("group") == item.group
            and _mapping(crd.spec.get("names")).get("kind") == item.kind
        ]
        installers += [
            release.urn for release in graph.releases if item.group in CHART_CRD_GROUPS.get(release.chart, ())
        ]
        if not installers:
            yield item.urn, f"is a {item.kind} ({item.group}) but nothing in the stack installs its CRD"
        elif not graph.depends_on(item.urn, installers):
            names = ", ".join(_short(installer) for installer in installers)
            yield item.urn, f"is a {item.kind} ({item.group}) but does not depend on {names}, which installs its CRD"


# ---------------------------------------------------------------------------------------------------------------
# webhook-ordering


def webhook_ordering(graph: Graph) -> Iterator[Finding]:
    controllers = [release.urn for release in graph.releases if release.chart == LOAD_BALANCER_CONTROLLER_CHART]
    if not controllers:
        return
    creates_services = [item.urn for item in graph.objects if item.is_builtin and item.kind in SERVICE_KINDS]
    creates_services += [
        release.urn
        for release in graph.releases
        if release.urn not in controllers and release.chart not in CHARTS_WITHOUT_SERVICES
    ]
    for urn in creates_services:
        if graph.depends_on(urn, controllers):
            continue
        # Created before the controller is installed (the controller waits for it): no webhook yet to race.
        if all(urn in graph.ordered_after(controller) for controller in controllers):
            continue
        names = ", ".join(_short(controller) for controller in controllers)
        yield (
            urn,
            (
                f"creates a Service or Ingress but does not depend on {names}; the controller's webhook "
                "(failurePolicy Fail) rejects it while the controller is not ready"
            ),
        )


# ---------------------------------------------------------------------------------------------------------------
# schedulable


@dataclass(frozen=True)
class Placement:
    node_selector: Mapping[str, Any]
    affinity: Mapping[str, Any]
    tolerations: list[Any]


def pod_spec(item: KubeObject) -> Mapping[str, Any] | None:
    """The pod spec a workload writes (None for objects that have none)."""
    if item.kind == "Pod" and item.is_builtin:
        return item.spec
    if item.kind == "CronJob" and item.is_builtin:
        return _mapping(
            _mapping(_mapping(_mapping(item.spec.get("jobTemplate")).get("spec")).get("template")).get("spec")
        )
    if (item.kind in WORKLOAD_KINDS and item.is_builtin) or (item.kind == "Rollout" and item.group == ROLLOUT_GROUP):
        template = item.spec.get("template")
        return _mapping(_mapping(template).get("spec")) if isinstance(template, Mapping) else None
    return None


def _placement(spec: Mapping[str, Any]) -> Placement:
    return Placement(_mapping(spec.get("nodeSelector")), _mapping(spec.get("affinity")), _list(spec.get("tolerations")))


def _expression_matches(expression: Mapping[str, Any], labels: Mapping[str, frozenset[str]]) -> bool:
    key, operator = str(expression.get("key")), str(expression.get("operator"))
    wanted = {str(value) for value in _list(expression.get("values"))}
    if key in NODE_LABEL_ANY_VALUE:
        return operator != "DoesNotExist"
    have = labels.get(key)
    if operator == "In":
        return bool(have and have & wanted)
    if operator == "NotIn":
        return not have or bool(have - wanted)
    if operator == "Exists":
        return have is not None
    if operator == "DoesNotExist":
        return have is None
    if operator in ("Gt", "Lt") and have and wanted:
        limit = int(next(iter(wanted)))
        numbers = [int(value) for value in have if value.lstrip("-").isdigit()]
        return any(number > limit if operator == "Gt" else number < limit for number in numbers)
    return False


def _selects(placement: Placement, pool: NodePool) -> bool:
    for key, value in placement.node_selector.items():
        if key in NODE_LABEL_ANY_VALUE:
            continue
        if str(value) not in pool.labels.get(key, frozenset()):
            return False
    required = _mapping(
        _mapping(placement.affinity.get("nodeAffinity")).get("requiredDuringSchedulingIgnoredDuringExecution")
    )
    terms = [_mapping(term) for term in _list(required.get("nodeSelectorTerms"))]
    # Terms are ORed, the expressions of a term ANDed; no terms means no constraint.
    return not terms or any(
        all(_expression_matches(_mapping(e), pool.labels) for e in _list(term.get("matchExpressions")))
        for term in terms
    )


def _tolerates(toleration: Mapping[str, Any], taint: Mapping[str, str]) -> bool:
    """Kubernetes' ToleratesTaint: an empty key with Exists tolerates every taint; an empty effect every effect."""
    effect = toleration.get("effect")
    if effect and effect != taint["effect"]:
        return False
    key = toleration.get("key")
    if key and key != taint["key"]:
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return bool(key) and str(toleration.get("value") or "") == taint["value"]


def _fits(placement: Placement, pool: NodePool) -> bool:
    blocking = [taint for taint in pool.taints if taint["effect"] in BLOCKING_EFFECTS]
    tolerated = all(
        any(_tolerates(_mapping(toleration), taint) for toleration in placement.tolerations) for taint in blocking
    )
    return tolerated and _selects(placement, pool)


def _describe(placement: Placement) -> str:
    parts = []
    if placement.node_selector:
        parts.append(f"nodeSelector {json.dumps(dict(placement.node_selector), sort_keys=True)}")
    if _mapping(placement.affinity.get("nodeAffinity")).get("requiredDuringSchedulingIgnoredDuringExecution"):
        parts.append("a required node affinity")
    parts.append(f"{len(placement.tolerations)} toleration(s)")
    return ", ".join(parts)


def chart_placements(release: Release) -> list[Placement]:
    """The pod placements a chart's values ask for, with the chart's default affinity where the stack sets none.

    A null `affinity` (kept by the real SDK and by pulumi-kubernetes since v4.30.0) deletes the chart's default.
    """
    known = CHART_PLACEMENTS.get(release.chart)
    paths = known.value_paths if known else CHART_PLACEMENT_PATHS.get(release.chart, ("",))
    placements = []
    for path in paths:
        values = _mapping(_at(release.values, path)) if path else release.values
        if known is None and not any(key in values for key in PLACEMENT_KEYS):
            continue  # the chart's own defaults, which the stack does not touch
        affinity = values.get("affinity", known.default_affinity if known else None)
        placements.append(
            Placement(_mapping(values.get("nodeSelector")), _mapping(affinity), _list(values.get("tolerations")))
        )
    return placements


def _pod_placements(graph: Graph) -> Iterator[tuple[str, Placement, bool]]:
    """(URN, placement, must reach the GPU pool) of every pod the stack writes or asks a chart for."""
    for item in graph.objects:
        spec = pod_spec(item)
        if spec is not None:
            yield item.urn, _placement(spec), False
    for release in graph.releases:
        known = CHART_PLACEMENTS.get(release.chart)
        for placement in chart_placements(release):
            yield release.urn, placement, bool(known and known.gpu_only)


def _requests_gpu(spec: Mapping[str, Any]) -> bool:
    containers = [*_list(spec.get("containers")), *_list(spec.get("initContainers"))]
    for container in map(_mapping, containers):
        resources = _mapping(container.get("resources"))
        if any(GPU_RESOURCE in _mapping(resources.get(part)) for part in ("limits", "requests")):
            return True
    return False


def _gpu_advertising_pools(graph: Graph) -> set[str]:
    """Pools whose nodes advertise nvidia.com/gpu: those the device plugin's release can land on. The EKS-optimized
    accelerated AMIs carry the driver but not the plugin (awsdocs/amazon-eks-user-guide
    4d52b4d05e3478582e7d10a73cbd9ba9194dd5f7, latest/ug/ml/ml-eks-optimized-ami.adoc)."""
    advertising: set[str] = set()
    for release in graph.releases:
        if release.chart == DEVICE_PLUGIN_CHART:
            for placement in chart_placements(release):
                advertising |= {pool.name for pool in graph.pools if _fits(placement, pool)}
    return advertising


def schedulable(graph: Graph) -> Iterator[Finding]:
    advertising = _gpu_advertising_pools(graph)
    for item in graph.objects:
        spec = pod_spec(item)
        if spec is None or not _requests_gpu(spec):
            continue
        fits = {pool.name for pool in graph.pools if _fits(_placement(spec), pool)}
        if fits and not fits & advertising:
            yield (
                item.urn,
                (
                    f"requests {GPU_RESOURCE}, but no pool it can run on ({', '.join(sorted(fits))}) gets the "
                    "NVIDIA device plugin, so no node advertises a GPU and its pods stay Pending"
                ),
            )
    for urn, placement, gpu_only in _pod_placements(graph):
        fitting = [pool for pool in graph.pools if _fits(placement, pool)]
        if not graph.pools:
            yield urn, "writes pods but the stack has no node pool to run them"
        elif not fitting:
            pools = ", ".join(pool.name for pool in graph.pools)
            yield urn, f"its pods ({_describe(placement)}) match no node pool's labels and taints ({pools})"
        elif gpu_only and any(pool.gpu for pool in graph.pools) and not any(pool.gpu for pool in fitting):
            yield urn, f"must run on the GPU pool, but its pods ({_describe(placement)}) cannot schedule there"


# ---------------------------------------------------------------------------------------------------------------
# storage-class


def _claims(graph: Graph) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """(URN, where, claim spec) of every volume claim the stack writes or asks a chart for."""
    for item in graph.objects:
        if not item.is_builtin:
            continue
        if item.kind == "PersistentVolumeClaim":
            yield item.urn, "the claim", item.spec
        if item.kind == "StatefulSet":
            for template in map(_mapping, _list(item.spec.get("volumeClaimTemplates"))):
                name = _mapping(template.get("metadata")).get("name", "?")
                yield item.urn, f"volumeClaimTemplate {name}", _mapping(template.get("spec"))
    for release in graph.releases:
        for path, switch in CHART_CLAIMS.get(release.chart, ()):
            if not _has(release.values, path) or (switch is not None and not _truthy(_at(release.values, switch))):
                continue
            yield release.urn, f"values {path}", _mapping(_at(release.values, path))


def storage_class(graph: Graph) -> Iterator[Finding]:
    classes = [item for item in graph.objects if item.resource.type == STORAGE_CLASS]
    names = {item.object_name for item in classes if item.object_name}
    default = [item for item in classes if str(item.annotations.get(DEFAULT_CLASS_ANNOTATION)) == "true"]
    for urn, where, spec in _claims(graph):
        name = spec.get("storageClassName")
        if name is None and not default:
            yield (
                urn,
                (
                    f"{where} names no StorageClass and the stack creates no default class "
                    f'({DEFAULT_CLASS_ANNOTATION}: "true"); EKS has none, so the claim stays Pending'
                ),
            )
        elif name is not None and name not in names:
            yield urn, f"{where} names StorageClass {name!r}, which the stack does not create"


# ---------------------------------------------------------------------------------------------------------------
# hpa-field-ownership


def hpa_field_ownership(graph: Graph) -> Iterator[Finding]:
    for hpa in graph.objects:
        if hpa.kind != "HorizontalPodAutoscaler" or not hpa.is_builtin:
            continue
        target = _mapping(hpa.spec.get("scaleTargetRef"))
        namespace = graph.namespace_of(hpa)
        for item in graph.objects:
            if (
                item.kind == target.get("kind")
                and item.kind in SCALABLE_KINDS
                and item.object_name == target.get("name")
                and graph.namespace_of(item) == namespace
                and item.spec.get("replicas") is not None
            ):
                yield (
                    item.urn,
                    (
                        f"sets spec.replicas ({item.spec['replicas']:g}) but HPA {hpa.object_name} scales it; "
                        "server-side apply conflicts with the autoscaler's field manager on the next update"
                    ),
                )


# ---------------------------------------------------------------------------------------------------------------
# await-timeout

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms|us|µs|ns)")
_DURATION_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_SLEEP = re.compile(r"\bsleep\s+(\d+(?:\.\d+)?)([smhd]?)\b")
_SLEEP_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def go_duration_seconds(text: str) -> float | None:
    """A Go duration ("20m", "1h30m") in seconds; None when it does not parse."""
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _DURATION_SECONDS[unit] for number, unit in parts)


def await_seconds(resource: RecordedResource, annotations: Mapping[str, Any], operation: str) -> float:
    """The provider's deadline for `operation`: customTimeouts, else pulumi.com/timeoutSeconds, else 10 minutes."""
    custom = resource.custom_timeouts.get(operation)
    seconds = go_duration_seconds(custom) if custom else None
    if seconds:
        return seconds
    annotated = str(annotations.get(TIMEOUT_SECONDS_ANNOTATION, ""))
    return float(annotated) if annotated.isdigit() else DEFAULT_AWAIT_SECONDS


def _sleep_seconds(container: Mapping[str, Any]) -> float:
    words = [str(word) for word in [*_list(container.get("command")), *_list(container.get("args"))]]
    return sum(float(number) * _SLEEP_SECONDS[unit] for number, unit in _SLEEP.findall(" ".join(words)))


def job_minimum_seconds(spec: Mapping[str, Any]) -> float:
    """The least time a pod of this spec runs: its init containers in turn, then its slowest container."""
    init = sum(_sleep_seconds(_mapping(container)) for container in _list(spec.get("initContainers")))
    main = max((_sleep_seconds(_mapping(container)) for container in _list(spec.get("containers"))), default=0.0)
    return init + main


def _load_balancer_class(item: KubeObject) -> str | None:
    if item.kind == "Ingress":
        name = item.spec.get("ingressClassName") or item.annotations.get("kubernetes.io/ingress.class")
        return str(name) if name else None
    if item.kind == "Service" and item.spec.get("type") == "LoadBalancer":
        name = item.spec.get("loadBalancerClass")
        return str(name) if name else None
    return None


def await_timeout(graph: Graph) -> Iterator[Finding]:
    charts = {release.chart for release in graph.releases}
    for item in graph.objects:
        if not item.is_builtin or _truthy(item.annotations.get(SKIP_AWAIT)):
            continue
        wanted = _load_balancer_class(item)
        controller = CONTROLLER_CLASSES.get(wanted or "")
        if controller is not None and controller not in charts:
            yield (
                item.urn,
                (
                    f"is awaited until it has a load balancer address, but class {wanted!r} is served by "
                    f"{controller}, which the stack does not install"
                ),
            )
        spec = pod_spec(item)
        if spec is None:
            continue
        if item.kind == "Job":
            minimum = job_minimum_seconds(spec)
            deadline = await_seconds(item.resource, item.annotations, "create")
            if minimum >= deadline:
                yield (
                    item.urn,
                    (
                        f"runs at least {minimum:g} s (its command sleeps) but the provider waits {deadline:g} s for a "
                        f'Job to complete; annotate {SKIP_AWAIT}: "true" or set a longer customTimeouts'
                    ),
                )
        elif item.kind in AWAITED_WORKLOADS:
            replicas = item.spec.get("replicas", 1) if item.kind != "Pod" else 1
            if not replicas:
                continue
            placement = _placement(spec)
            fitting = [pool for pool in graph.pools if _fits(placement, pool)]
            empty = [pool for pool in fitting if pool.desired_size == 0]
            if not fitting or len(empty) != len(fitting):
                continue
            deadline = min(await_seconds(item.resource, item.annotations, op) for op in ("create", "update"))
            if deadline <= DEFAULT_AWAIT_SECONDS:
                pools = ", ".join(pool.name for pool in empty)
                yield (
                    item.urn,
                    (
                        f"waits for {replicas:g} ready pod(s) that can only run on {pools}, which starts with 0 nodes; "
                        f"a node must be scaled up, booted and the image pulled within {deadline:g} s. Annotate "
                        f'{SKIP_AWAIT}: "true" or set a longer customTimeouts'
                    ),
                )


# ---------------------------------------------------------------------------------------------------------------
# certificate-issued

ACM_CERTIFICATE = "aws:acm/certificate:Certificate"
ACM_VALIDATION = "aws:acm/certificateValidation:CertificateValidation"
CERTIFICATE_ARN_ANNOTATION = "alb.ingress.kubernetes.io/certificate-arn"


def certificate_issued(graph: Graph) -> Iterator[Finding]:
    """An Ingress that names an ACM certificate the stack requests waits for that certificate's validation.

    A new certificate is PENDING_VALIDATION until ACM sees its DNS record; the controller cannot create an HTTPS
    listener with it, so it never publishes the ALB's address and the provider's Ingress await (10 minutes) fails.
    Taking the ARN from the CertificateValidation (its `certificateArn` output) orders the Ingress after ISSUED.
    """
    requested = {
        str(resource.outputs.get("arn")): resource
        for resource in graph.run.resources
        if resource.type == ACM_CERTIFICATE and resource.outputs.get("arn")
    }
    validations: dict[str, list[str]] = {}
    for resource in graph.run.resources:
        if resource.type == ACM_VALIDATION:
            arn = str(unwrap_secret(resource.inputs).get("certificateArn") or "")
            validations.setdefault(arn, []).append(resource.urn)
    for item in graph.objects:
        if item.kind != "Ingress" or not item.is_builtin:
            continue
        named = str(item.annotations.get(CERTIFICATE_ARN_ANNOTATION) or "")
        for arn in (part.strip() for part in named.split(",") if part.strip()):
            certificate = requested.get(arn)
            if certificate is None:
                continue  # a certificate the stack does not request (given by ARN): issued already
            waits_for = validations.get(arn, [])
            if not waits_for or not graph.depends_on(item.urn, waits_for):
                yield (
                    item.urn,
                    (
                        f"serves ACM certificate {_short(certificate.urn)} before it is issued; take the ARN from "
                        "its CertificateValidation (certificate_arn output), or the HTTPS listener cannot be created "
                        "and the Ingress await times out"
                    ),
                )


# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadinessRule:
    name: str
    description: str
    check: Callable[[Graph], Iterable[Finding]]


READINESS_RULES: tuple[ReadinessRule, ...] = (
    ReadinessRule("namespace-dependency", "Namespaced objects depend on what creates their namespace",
                  namespace_dependency),
    ReadinessRule("crd-dependency", "Custom resources depend on what installs their CRD", crd_dependency),
    ReadinessRule("webhook-ordering", "Services and Ingresses depend on the AWS Load Balancer Controller",
                  webhook_ordering),
    ReadinessRule("schedulable", "Every pod can schedule on a node pool", schedulable),
    ReadinessRule("storage-class", "Every volume claim gets a StorageClass the stack creates", storage_class),
    ReadinessRule("hpa-field-ownership", "Workloads an HPA scales do not set spec.replicas", hpa_field_ownership),
    ReadinessRule("await-timeout", "Awaited objects can finish within the provider's await timeout", await_timeout),
    ReadinessRule("certificate-issued", "Ingresses wait for the ACM certificates they serve to be issued",
                  certificate_issued),
)  # fmt: skip


def check_readiness(run: StackRun, rules: Iterable[ReadinessRule] = READINESS_RULES) -> list[Violation]:
    graph = Graph(run)
    violations = []
    for rule in rules:
        seen: set[tuple[str, str]] = set()
        for urn, message in rule.check(graph):
            if (urn, message) not in seen:
                seen.add((urn, message))
                violations.append(Violation(rule.name, MANDATORY, urn, message))
    return violations
