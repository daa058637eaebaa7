"""What the stack's model service can serve and what a prediction costs, from the benchmark's requests a second per
core (`service/bench/results.json`), the serving pods' CPU request, their replica floor and ceiling and the prices
of the nodes they run on. A prediction is one row: a 64-row request makes 64.

How node cost is attributed: a Kubernetes pod is charged its CPU request's share of its node's vCPUs (a 500m pod on
a 4-vCPU node pays an eighth of the node's hourly price), whatever else the node runs. The dev host has no
scheduler: its single service container is charged the whole host. Only the serving compute is counted; the
control plane, NAT gateways, load balancers and monitoring are the monthly estimate's, not a prediction's.
"""

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from infra.preview.cost.bench import BenchFigure, BenchResults
from infra.preview.cost.estimate import SPOT_DISCOUNT
from infra.preview.cost.prices import PriceSnapshot
from infra.preview.engine import RecordedResource, StackRun

ROLLOUT = "kubernetes:argoproj.io/v1alpha1:Rollout"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
AUTOSCALER = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
AUTO_SCALING_GROUP = "aws:autoscaling/group:Group"
SERVING_CONTAINER = "model-service"
GPU_RESOURCE = "nvidia.com/gpu"
# The service is one uvicorn process: one event loop and one inference thread with one onnxruntime intra-op thread
# (service/mlstack_service/server.py, settings.intra_op_threads), so it keeps at most about one core busy, which is
# how `make bench` measures it (the server pinned to one core). CPU requested beyond that serves nothing more.
SERVER_PROCESS_CORES = 1.0
SECONDS_PER_HOUR = 3600
MILLION = 1_000_000
# vCPUs of the instance types the price snapshot holds, from Karpenter's generated instance-type reference
# (aws/karpenter-provider-aws, commit 1d927085dd81a9df9301e613f371dac5b4d16bfe, website/content/en/docs/reference/
# instance-types.md, label karpenter.k8s.aws/instance-cpu), which it builds from EC2 DescribeInstanceTypes.
INSTANCE_VCPUS = {
    "t3.medium": 2,
    "t3.large": 2,
    "t3.xlarge": 4,
    "m5.large": 2,
    "m5.xlarge": 4,
    "m6i.large": 2,
    "m6i.xlarge": 4,
    "m6i.2xlarge": 8,
    "m7i.large": 2,
    "m7i.xlarge": 4,
    "c6i.large": 2,
    "c6i.xlarge": 4,
    "r6i.large": 2,
    "r6i.xlarge": 4,
    "g4dn.xlarge": 4,
    "g5.xlarge": 4,
    "g5.2xlarge": 8,
    "g6.xlarge": 4,
    "g6.2xlarge": 8,
}
ASSUMPTIONS = [
    "a prediction is one row; requests a second per core are the bench's (service/bench/results.json), measured on "
    "one pinned core of the machine it names",
    f"a server process keeps at most {SERVER_PROCESS_CORES:g} core busy; capacity counts each replica's CPU request "
    "(up to that) fully used",
    "node cost is attributed by CPU: a pod pays its CPU request's share of its node's vCPUs at the node's on-demand "
    f"price (spot {SPOT_DISCOUNT:.0%} below); the dev host's one container pays the whole host",
    "cost per million: the floor's replicas at the HPA's CPU target utilisation of their request (the dev host, with "
    "no autoscaler, at its whole core); where the HPA's request-rate target is reached first, it adds replicas at a "
    "lower load, shown as the cost where it scales out",
    "serving compute only: not the control plane, NAT gateways, load balancers, monitoring, kubelet reservations or "
    "DaemonSets; burstable (t*) hosts' CPU credits above their baseline are not included",
]
CPU_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")


@dataclass(frozen=True)
class ServingWorkload:
    """The serving replicas and what one of them costs an hour."""

    name: str
    urn: str
    cpu_request: float | None  # cores; None on the dev host, whose container requests none
    cores_per_replica: float  # the cores a busy replica uses: its request, up to what one server process uses
    replicas_floor: int
    replicas_ceiling: int
    cpu_target_utilization: int | None  # percent of the CPU request, from the HPA
    requests_per_second_target: float | None  # per replica, the HPA's Pods metric
    node_instance_type: str
    node_vcpus: int | None
    node_hourly: float | None
    replica_hourly: float | None
    attribution: str


@dataclass(frozen=True)
class ServingFigure:
    protocol: str
    rows_per_request: int
    predictions_per_second_per_core: float
    capacity_at_floor: float  # predictions a second
    capacity_at_ceiling: float
    cost_per_million_at_cpu_target: float | None  # USD, the floor busy at the HPA's CPU target
    cost_per_million_at_scale_out: float | None  # USD, the floor at the load where the HPA first adds a replica
    scales_out_at_per_replica: float | None  # predictions a second per replica where the HPA first adds one


@dataclass
class ServingEstimate:
    bench: BenchResults
    currency: str
    workload: ServingWorkload | None = None
    figures: list[ServingFigure] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)

    def to_plan(self) -> dict[str, Any]:
        return {
            "bench": self.bench.to_plan(),
            "currency": self.currency,
            "workload": None if self.workload is None else asdict(self.workload),
            "figures": [asdict(figure) for figure in self.figures],
            "assumptions": ASSUMPTIONS,
            "unpriced": self.unpriced,
        }


def cpu_cores(quantity: Any) -> float | None:
    """A Kubernetes CPU quantity ("500m", "1", 2) in cores; None when it is not one."""
    match = CPU_QUANTITY.match(str(quantity).strip()) if quantity is not None else None
    if not match:
        return None
    return float(match[1]) / (1000 if match[2] else 1)


def _autoscaler_for(run: StackRun, workload: RecordedResource) -> RecordedResource | None:
    kind = workload.type.rsplit(":", 1)[-1]
    name = (workload.inputs.get("metadata") or {}).get("name")
    for autoscaler in sorted(run.of_type(AUTOSCALER), key=lambda resource: resource.urn):
        target = (autoscaler.inputs.get("spec") or {}).get("scaleTargetRef") or {}
        if target.get("kind") == kind and target.get("name") == name:
            return autoscaler
    return None


def _hpa_targets(autoscaler: RecordedResource) -> tuple[int | None, float | None]:
    """The HPA's CPU utilisation target (percent) and its per-pod request-rate target, where it has them."""
    cpu: int | None = None
    rate: float | None = None
    for metric in (autoscaler.inputs.get("spec") or {}).get("metrics") or []:
        if metric.get("type") == "Resource" and (metric.get("resource") or {}).get("name") == "cpu":
            target = metric["resource"].get("target") or {}
            if target.get("type") == "Utilization" and target.get("averageUtilization") is not None:
                cpu = int(target["averageUtilization"])
        if metric.get("type") == "Pods":
            value = ((metric.get("pods") or {}).get("target") or {}).get("averageValue")
            cores = cpu_cores(value)  # a plain number or a milli-quantity, like a CPU quantity
            if cores is not None:
                rate = cores
    return cpu, rate


class _Serving:
    def __init__(self, run: StackRun, region: str, snapshot: PriceSnapshot, bench: BenchResults) -> None:
        self.run = run
        self.region = region
        self.prices = snapshot.region(region)
        self.estimate = ServingEstimate(bench, snapshot.currency)

    def node_hourly(self, instance_type: str, *, spot: bool) -> float | None:
        price = None if self.prices is None else self.prices["ec2_instance_hour"].get(instance_type)
        if price is None:
            self.estimate.unpriced.append(
                f"instance type {instance_type} in {self.region}: not in the price snapshot, so a prediction is "
                "unpriced"
            )
            return None
        return float(price) * (1 - SPOT_DISCOUNT) if spot else float(price)

    def vcpus(self, instance_type: str) -> int | None:
        vcpus = INSTANCE_VCPUS.get(instance_type)
        if vcpus is None:
            self.estimate.unpriced.append(
                f"instance type {instance_type}: its vCPUs are not in INSTANCE_VCPUS (infra/preview/cost/serving.py), "
                "so a pod's share of it is unknown"
            )
        return vcpus

    def run_all(self) -> ServingEstimate:
        workloads = sorted(
            (resource for resource in self.run.resources if resource.type in (ROLLOUT, DEPLOYMENT)),
            key=lambda resource: resource.urn,
        )
        serving = next((resource for resource in workloads if _serving_container(resource) is not None), None)
        if serving is not None:
            self.estimate.workload = self._kubernetes(serving)
        else:
            self.estimate.workload = self._host()
        if self.estimate.workload is None and not self.estimate.unpriced:
            self.estimate.unpriced.append("no model service: neither a Kubernetes workload nor a dev host serves it")
        if self.estimate.workload is not None:
            self.estimate.figures = [
                self._figure(self.estimate.workload, bench) for bench in self.estimate.bench.headline
            ]
        self.estimate.unpriced.sort()
        return self.estimate

    def _kubernetes(self, workload: RecordedResource) -> ServingWorkload | None:
        container = _serving_container(workload) or {}
        pod = ((workload.inputs.get("spec") or {}).get("template") or {}).get("spec") or {}
        resources = container.get("resources") or {}
        if GPU_RESOURCE in (resources.get("limits") or {}) or GPU_RESOURCE in (resources.get("requests") or {}):
            self.estimate.unpriced.append(
                f"{workload.name}: its pods run on GPUs, and the bench measures serving on CPU cores"
            )
            return None
        request = cpu_cores((resources.get("requests") or {}).get("cpu"))
        if request is None or request <= 0:
            self.estimate.unpriced.append(f"{workload.name}: its {SERVING_CONTAINER} container requests no CPU")
            return None
        autoscaler = _autoscaler_for(self.run, workload)
        if autoscaler is not None:
            spec = autoscaler.inputs.get("spec") or {}
            floor = int(spec.get("minReplicas") or 1)
            ceiling = int(spec.get("maxReplicas") or floor)
            cpu_target, rate_target = _hpa_targets(autoscaler)
        else:
            floor = ceiling = int((workload.inputs.get("spec") or {}).get("replicas") or 1)
            cpu_target, rate_target = None, None
        node_group = self._node_group_for(pod.get("nodeSelector") or {})
        if node_group is None:
            self.estimate.unpriced.append(
                f"{workload.name}: no node group carries the labels its pods select ({pod.get('nodeSelector') or {}})"
            )
            return None
        instance_type = str((node_group.inputs.get("instanceTypes") or ["?"])[0])
        node_hourly = self.node_hourly(instance_type, spot=node_group.inputs.get("capacityType") == "SPOT")
        vcpus = self.vcpus(instance_type)
        replica_hourly = None if node_hourly is None or vcpus is None else node_hourly * request / vcpus
        return ServingWorkload(
            name=workload.name,
            urn=workload.urn,
            cpu_request=request,
            cores_per_replica=min(request, SERVER_PROCESS_CORES),
            replicas_floor=floor,
            replicas_ceiling=ceiling,
            cpu_target_utilization=cpu_target,
            requests_per_second_target=rate_target,
            node_instance_type=instance_type,
            node_vcpus=vcpus,
            node_hourly=_rounded(node_hourly, 5),
            replica_hourly=_rounded(replica_hourly, 6),
            attribution=(
                f"CPU request {request:g} of {vcpus or '?'} vCPUs of a {instance_type} node ({node_group.name})"
            ),
        )

    def _node_group_for(self, selector: dict[str, Any]) -> RecordedResource | None:
        for group in sorted(self.run.of_type(NODE_GROUP), key=lambda resource: resource.urn):
            labels = group.inputs.get("labels") or {}
            if all(labels.get(key) == value for key, value in selector.items()):
                return group
        return None

    def _host(self) -> ServingWorkload | None:
        """The dev host: one container of the service on each instance of its Auto Scaling group."""
        for group in sorted(self.run.of_type(AUTO_SCALING_GROUP), key=lambda resource: resource.urn):
            template_urn = next(iter(group.property_dependencies.get("launchTemplate", [])), None)
            template = self.run.by_urn(template_urn) if template_urn else None
            instance_type = template.inputs.get("instanceType") if template else None
            if not instance_type:
                continue
            node_hourly = self.node_hourly(str(instance_type), spot=False)
            vcpus = self.vcpus(str(instance_type))
            return ServingWorkload(
                name=group.name,
                urn=group.urn,
                cpu_request=None,
                cores_per_replica=min(float(vcpus or SERVER_PROCESS_CORES), SERVER_PROCESS_CORES),
                # The group's maximum leaves room for an instance refresh's replacement; one host serves.
                replicas_floor=1,
                replicas_ceiling=1,
                cpu_target_utilization=None,
                requests_per_second_target=None,
                node_instance_type=str(instance_type),
                node_vcpus=vcpus,
                node_hourly=_rounded(node_hourly, 5),
                replica_hourly=_rounded(node_hourly, 6),
                attribution=f"the whole {instance_type} host ({group.name}): its one service container",
            )
        return None

    def _figure(self, workload: ServingWorkload, bench: BenchFigure) -> ServingFigure:
        per_core = bench.predictions_per_second_per_core
        busy_cores = workload.cores_per_replica
        if workload.cpu_request is not None and workload.cpu_target_utilization is not None:
            busy_cores = min(workload.cpu_request * workload.cpu_target_utilization / 100, SERVER_PROCESS_CORES)
        at_target = busy_cores * per_core  # predictions a second per replica
        scale_out = at_target
        if workload.requests_per_second_target is not None:
            scale_out = min(at_target, workload.requests_per_second_target * bench.rows_per_request)
        return ServingFigure(
            protocol=bench.protocol,
            rows_per_request=bench.rows_per_request,
            predictions_per_second_per_core=round(per_core, 1),
            capacity_at_floor=round(workload.replicas_floor * workload.cores_per_replica * per_core, 1),
            capacity_at_ceiling=round(workload.replicas_ceiling * workload.cores_per_replica * per_core, 1),
            cost_per_million_at_cpu_target=_per_million(workload.replica_hourly, at_target),
            cost_per_million_at_scale_out=_per_million(workload.replica_hourly, scale_out),
            scales_out_at_per_replica=round(scale_out, 1) if scale_out < at_target else None,
        )


def _serving_container(workload: RecordedResource) -> dict[str, Any] | None:
    pod = ((workload.inputs.get("spec") or {}).get("template") or {}).get("spec") or {}
    return next((c for c in pod.get("containers") or [] if c.get("name") == SERVING_CONTAINER), None)


def _per_million(replica_hourly: float | None, predictions_per_second: float) -> float | None:
    """What a million predictions cost when each replica serves `predictions_per_second` (the same for any count
    of replicas: each one adds its cost and its predictions)."""
    if replica_hourly is None or predictions_per_second <= 0:
        return None
    return _significant(replica_hourly * MILLION / (predictions_per_second * SECONDS_PER_HOUR))


def _significant(value: float, digits: int = 4) -> float:
    """Rounded to `digits` significant digits: a cent's fraction keeps its precision, and plans stay identical."""
    return float(f"{value:.{digits}g}")


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def estimate_serving(run: StackRun, region: str, snapshot: PriceSnapshot, bench: BenchResults) -> ServingEstimate:
    return _Serving(run, region, snapshot, bench).run_all()
