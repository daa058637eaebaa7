"""Line items of a stack's monthly cost, read from the resources its preview registered.

What is priced, at the desired sizes the stack file sets: EC2 hosts and node pools (instances and their gp3 root
volumes), the EKS control plane, NAT gateways and their public IPv4 addresses, application load balancers (the
dev host's, and one per Ingress the AWS Load Balancer Controller turns into an ALB), KMS keys, CloudWatch log
groups (ingestion and storage) and Prometheus's volume. Usage-driven charges (data processed, requests, S3 and ECR
storage) depend on traffic and are left out; the assumptions are listed with the estimate. An instance type or
region that the snapshot does not price is reported as unpriced, never counted as free.
"""

import re
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from infra.preview.cost.prices import PriceSnapshot
from infra.preview.engine import RecordedResource, StackRun
from infra.versions import KUBERNETES_RELEASES

# An EKS cluster on a Kubernetes version past its end of standard support pays this per cluster-hour instead of the
# standard rate (USD, the same in every commercial region): "a total of $0.60 per cluster per hour", AWS Containers
# blog, "Amazon EKS extended support for Kubernetes versions pricing"
# (https://aws.amazon.com/blogs/containers/amazon-eks-extended-support-for-kubernetes-versions-pricing/).
EKS_EXTENDED_SUPPORT_CLUSTER_HOUR = 0.60
SPOT_DISCOUNT = 0.6  # spot capacity assumed 60% below on-demand
ALB_LCUS = 1.0  # average load-balancer capacity units per ALB
LOG_GB_PER_MONTH = {"flow": 5.0, "control-plane": 2.0}  # by log group purpose; others DEFAULT_LOG_GB_PER_MONTH
DEFAULT_LOG_GB_PER_MONTH = 1.0
MAX_STORED_MONTHS = 12
ASSUMPTIONS = [
    "730 hours a month; on-demand prices; instances at the desired size the stack file sets",
    "the EKS control plane at the extended-support rate when its Kubernetes version is past the end of standard "
    "support on the date the prices are as of",
    f"spot capacity {SPOT_DISCOUNT:.0%} below on-demand",
    "a node pool with several instance types is priced at its first",
    f"{ALB_LCUS:g} load-balancer capacity unit per ALB on average",
    f"log ingestion: flow logs {LOG_GB_PER_MONTH['flow']:g} GB, EKS control-plane logs "
    f"{LOG_GB_PER_MONTH['control-plane']:g} GB, other log groups {DEFAULT_LOG_GB_PER_MONTH:g} GB a month; storage "
    f"holds up to {MAX_STORED_MONTHS} months of it within the retention",
    "not included: data processed by NAT gateways and load balancers, S3 and ECR storage and requests, data transfer",
]
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Gi|G|Ti|T)?$")


@dataclass(frozen=True)
class LineItem:
    item: str
    urn: str
    quantity: float
    unit: str
    unit_price: float | None
    monthly: float | None
    note: str = ""
    # A pool that autoscales: what it costs a month with every instance its maximum size allows.
    monthly_at_max: float | None = None
    max_count: int | None = None


@dataclass
class CostEstimate:
    currency: str
    prices_as_of: str
    region: str
    items: list[LineItem] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)

    @property
    def priced_subtotal(self) -> float:
        return round(sum(item.monthly for item in self.items if item.monthly is not None), 2)

    @property
    def total_at_max(self) -> float | None:
        """The total with every autoscaling pool at its maximum size; None when nothing autoscales or unpriced."""
        if self.monthly_total is None or all(item.monthly_at_max is None for item in self.items):
            return None
        return round(
            sum(item.monthly_at_max if item.monthly_at_max is not None else item.monthly or 0.0 for item in self.items),
            2,
        )

    @property
    def monthly_total(self) -> float | None:
        """None while anything is unpriced: a partial sum would read as the whole bill."""
        return None if self.unpriced else self.priced_subtotal

    def to_plan(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "monthly_total": self.monthly_total,
            "priced_subtotal": self.priced_subtotal,
            "items": [asdict(item) for item in self.items],
            "monthly_total_at_max": self.total_at_max,
            "prices_as_of": self.prices_as_of,
            "region": self.region,
            "assumptions": ASSUMPTIONS,
            "unpriced": self.unpriced,
        }


class _Estimator:
    def __init__(self, run: StackRun, region: str, snapshot: PriceSnapshot) -> None:
        self.run = run
        self.hours = snapshot.hours_per_month
        self.prices = snapshot.region(region)
        self.estimate = CostEstimate(snapshot.currency, snapshot.as_of, region)
        if self.prices is None:
            known = ", ".join(sorted(snapshot.regions))
            self.estimate.unpriced.append(f"region {region}: not in the price snapshot (it has {known})")

    def add(
        self, item: str, resource: RecordedResource, quantity: float, unit: str, price_key: str, *, note: str = ""
    ) -> None:
        price = None if self.prices is None else self.prices.get(price_key)
        self._add(item, resource, quantity, unit, price, note=note)

    def _add(
        self,
        item: str,
        resource: RecordedResource,
        quantity: float,
        unit: str,
        price: float | None,
        *,
        note: str = "",
        max_quantity: float | None = None,
        max_count: int | None = None,
    ) -> None:
        monthly = None if price is None else round(quantity * price, 2)
        at_max = None if price is None or max_quantity is None else round(max_quantity * price, 2)
        self.estimate.items.append(
            LineItem(item, resource.urn, round(quantity, 3), unit, price, monthly, note, at_max, max_count)
        )

    def instance_price(self, instance_type: str, resource: RecordedResource) -> float | None:
        if self.prices is None:
            return None
        price: float | None = self.prices["ec2_instance_hour"].get(instance_type)
        if price is None:
            self.estimate.unpriced.append(
                f"{resource.name}: instance type {instance_type} is not in the price snapshot for "
                f"{self.estimate.region}; run `mlstack cost refresh` or add it"
            )
        return price

    def launch_template(self, resource: RecordedResource) -> RecordedResource | None:
        for urn in resource.property_dependencies.get("launchTemplate", []):
            return self.run.by_urn(urn)
        return None

    def instances(
        self,
        label: str,
        resource: RecordedResource,
        count: int,
        instance_type: str,
        *,
        spot: bool,
        max_count: int | None = None,
    ) -> None:
        price = self.instance_price(instance_type, resource)
        note = ""
        if spot and price is not None:
            price = round(price * (1 - SPOT_DISCOUNT), 5)
            note = f"spot, assumed {SPOT_DISCOUNT:.0%} below on-demand"
        if count == 0:
            note = "scales from zero: nothing runs at the desired size"
        kind = "spot" if spot else "on-demand"
        scales = max_count is not None and max_count > count
        self._add(
            f"{label}: {count} x {instance_type} ({kind})",
            resource,
            count * self.hours,
            "instance-hours",
            price,
            note=note,
            max_quantity=max_count * self.hours if scales and max_count is not None else None,
            max_count=max_count if scales else None,
        )
        template = self.launch_template(resource)
        gigabytes = sum(
            float((mapping.get("ebs") or {}).get("volumeSize") or 0)
            for mapping in ((template.inputs.get("blockDeviceMappings") or []) if template else [])
        )
        if gigabytes:
            self._add(
                f"{label}: root volumes ({count} x {gigabytes:g} GB gp3)",
                resource,
                count * gigabytes,
                "GB-month",
                None if self.prices is None else self.prices.get("ebs_gp3_gb_month"),
                max_quantity=max_count * gigabytes if scales and max_count is not None else None,
                max_count=max_count if scales else None,
            )

    def run_all(self) -> CostEstimate:
        handlers = {
            "aws:eks/cluster:Cluster": self._cluster,
            "aws:eks/nodeGroup:NodeGroup": self._node_group,
            "aws:autoscaling/group:Group": self._auto_scaling_group,
            "aws:ec2/natGateway:NatGateway": self._nat_gateway,
            "aws:ec2/eip:Eip": self._elastic_ip,
            "aws:lb/loadBalancer:LoadBalancer": self._load_balancer,
            "aws:kms/key:Key": self._kms_key,
            "aws:cloudwatch/logGroup:LogGroup": self._log_group,
            HELM_RELEASE: self._helm_release,
        }
        # In a fixed order (handler, then URN): the engine registers resources in whatever order their inputs
        # resolve, and plan.json must come out byte-identical from two previews of the same stack.
        order = list(handlers)
        wanted = [resource for resource in self.run.resources if resource.type in handlers]
        for resource in sorted(wanted, key=lambda resource: (order.index(resource.type), resource.urn)):
            handlers[resource.type](resource)
        self._load_balancers_from_ingresses()
        self.estimate.unpriced.sort()
        return self.estimate

    def _cluster(self, resource: RecordedResource) -> None:
        version = str(resource.inputs.get("version") or "")
        release = KUBERNETES_RELEASES.get(version)
        if release is None:
            self.estimate.unpriced.append(
                f"{resource.name}: Kubernetes {version or '(unset)'} has no known end of standard support in "
                "infra/versions.py KUBERNETES_RELEASES, so standard or extended pricing cannot be told apart"
            )
            return
        priced_on = date.fromisoformat(self.estimate.prices_as_of)
        if priced_on >= release.end_of_standard_support:
            self._add(
                f"EKS control plane (Kubernetes {version}, extended support)",
                resource,
                self.hours,
                "hours",
                None if self.prices is None else EKS_EXTENDED_SUPPORT_CLUSTER_HOUR,
                note=f"standard support ended {release.end_of_standard_support.isoformat()}; upgrade to avoid this",
            )
            return
        self.add(
            f"EKS control plane (Kubernetes {version})",
            resource,
            self.hours,
            "hours",
            "eks_cluster_hour",
            note=f"standard support until {release.end_of_standard_support.isoformat()}",
        )

    def _node_group(self, resource: RecordedResource) -> None:
        scaling = resource.inputs.get("scalingConfig") or {}
        types = resource.inputs.get("instanceTypes") or []
        spot = resource.inputs.get("capacityType") == "SPOT"
        desired = int(scaling.get("desiredSize") or 0)
        ceiling = int(scaling.get("maxSize") or desired)
        self.instances(f"Node pool {resource.name}", resource, desired, types[0], spot=spot, max_count=ceiling)

    def _auto_scaling_group(self, resource: RecordedResource) -> None:
        template = self.launch_template(resource)
        instance_type = template.inputs.get("instanceType") if template else None
        if instance_type:
            count = int(resource.inputs.get("desiredCapacity") or resource.inputs.get("minSize") or 0)
            ceiling = int(resource.inputs.get("maxSize") or count)
            self.instances(
                f"EC2 hosts {resource.name}", resource, count, str(instance_type), spot=False, max_count=ceiling
            )

    def _nat_gateway(self, resource: RecordedResource) -> None:
        self.add(
            f"NAT gateway {resource.name}",
            resource,
            self.hours,
            "hours",
            "nat_gateway_hour",
            note="plus data processed",
        )

    def _elastic_ip(self, resource: RecordedResource) -> None:
        self.add(f"Public IPv4 address {resource.name}", resource, self.hours, "hours", "public_ipv4_hour")

    def _load_balancer(self, resource: RecordedResource) -> None:
        if resource.inputs.get("loadBalancerType", "application") == "application":
            self._alb(f"Application load balancer {resource.name}", resource)

    def _alb(self, label: str, resource: RecordedResource) -> None:
        self.add(label, resource, self.hours, "hours", "alb_hour")
        self.add(f"{label}: capacity units", resource, self.hours * ALB_LCUS, "LCU-hours", "alb_lcu_hour")

    def _load_balancers_from_ingresses(self) -> None:
        """The AWS Load Balancer Controller makes one ALB per Ingress of class alb, or per group of them."""
        seen: set[str] = set()
        for ingress in sorted(self.run.of_type(INGRESS), key=lambda ingress: ingress.urn):
            if (ingress.inputs.get("spec") or {}).get("ingressClassName") != "alb":
                continue
            annotations = (ingress.inputs.get("metadata") or {}).get("annotations") or {}
            group = annotations.get("alb.ingress.kubernetes.io/group.name") if isinstance(annotations, dict) else None
            key = group or ingress.urn
            if key not in seen:
                seen.add(key)
                self._alb(f"Application load balancer for Ingress {ingress.name}", ingress)

    def _kms_key(self, resource: RecordedResource) -> None:
        self.add(f"KMS key {resource.name}", resource, 1, "keys", "kms_key_month")

    def _log_group(self, resource: RecordedResource) -> None:
        purpose = next((key for key in LOG_GB_PER_MONTH if key in resource.name), None)
        gigabytes = LOG_GB_PER_MONTH[purpose] if purpose else DEFAULT_LOG_GB_PER_MONTH
        retention_days = resource.inputs.get("retentionInDays") or 0
        months = min(MAX_STORED_MONTHS, retention_days / 30) if retention_days else MAX_STORED_MONTHS
        self.add(
            f"Log group {resource.name}: ingestion", resource, gigabytes, "GB", "logs_ingest_gb", note="assumed volume"
        )
        self.add(
            f"Log group {resource.name}: storage", resource, gigabytes * months, "GB-month", "logs_storage_gb_month"
        )

    def _helm_release(self, resource: RecordedResource) -> None:
        values = resource.inputs.get("values") or {}
        storage = (
            ((((values.get("prometheus") or {}).get("prometheusSpec") or {}).get("storageSpec") or {})
             .get("volumeClaimTemplate") or {}).get("spec", {}).get("resources", {}).get("requests", {}).get("storage")
        )  # fmt: skip
        match = QUANTITY.match(str(storage)) if storage else None
        if match:
            gigabytes = float(match[1]) * (1024 if match[2] in ("Ti", "T") else 1)
            self.add(f"Prometheus volume ({gigabytes:g} GB gp3)", resource, gigabytes, "GB-month", "ebs_gp3_gb_month")


def estimate_cost(run: StackRun, region: str, snapshot: PriceSnapshot) -> CostEstimate:
    return _Estimator(run, region, snapshot).run_all()
