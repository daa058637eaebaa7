"""The reviewer's view of a run: the resource tree grouped by component, with the inputs that matter."""

import contextlib
import json
from collections import Counter
from typing import Any

from infra.policy.rules import Violation
from infra.preview.cost import serving as serving_cost
from infra.preview.cost.estimate import ASSUMPTIONS, CostEstimate, LineItem
from infra.preview.cost.money import format_money
from infra.preview.engine import RecordedResource, StackRun
from infra.preview.plan import PlanRenderer

# Per type, the inputs a reviewer looks at first; everything else is in plan.json.
KEY_INPUTS: dict[str, tuple[str, ...]] = {
    "pulumi:providers:aws": ("region", "defaultTags"),
    "aws:ec2/vpc:Vpc": ("cidrBlock",),
    "aws:ec2/subnet:Subnet": ("availabilityZone", "cidrBlock", "mapPublicIpOnLaunch"),
    "aws:ec2/eip:Eip": ("domain",),
    "aws:ec2/natGateway:NatGateway": ("subnetId",),
    "aws:ec2/route:Route": ("destinationCidrBlock", "gatewayId", "natGatewayId"),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": ("subnetId", "routeTableId"),
    "aws:ec2/vpcEndpoint:VpcEndpoint": ("serviceName", "vpcEndpointType"),
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": ("ingress", "egress"),
    "aws:ec2/securityGroup:SecurityGroup": ("description",),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": (
        "ipProtocol",
        "fromPort",
        "toPort",
        "cidrIpv4",
        "cidrIpv6",
        "referencedSecurityGroupId",
    ),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": (
        "ipProtocol",
        "fromPort",
        "toPort",
        "cidrIpv4",
        "cidrIpv6",
        "referencedSecurityGroupId",
    ),
    "aws:ec2/flowLog:FlowLog": ("trafficType", "logDestinationType"),
    "aws:cloudwatch/logGroup:LogGroup": ("name", "retentionInDays"),
    "aws:kms/key:Key": ("enableKeyRotation",),
    "aws:kms/alias:Alias": ("name",),
    "aws:ecr/repository:Repository": ("name", "imageTagMutability", "imageScanningConfiguration"),
    "aws:s3/bucket:Bucket": ("bucketPrefix", "forceDestroy"),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": ("blockPublicAcls", "restrictPublicBuckets"),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ("policyArn",),
    "aws:ec2/launchTemplate:LaunchTemplate": ("imageId", "instanceType", "metadataOptions"),
    "aws:autoscaling/group:Group": (
        "minSize",
        "maxSize",
        "desiredCapacity",
        "healthCheckType",
        "instanceRefresh",
        "instanceMaintenancePolicy",
    ),
    "aws:autoscaling/tag:Tag": ("tag",),
    "aws:lb/loadBalancer:LoadBalancer": ("loadBalancerType", "internal"),
    "aws:lb/listener:Listener": ("port", "protocol"),
    "aws:lb/targetGroup:TargetGroup": ("port", "healthCheck"),
    "aws:eks/cluster:Cluster": ("name", "version", "accessConfig"),
    "aws:eks/nodeGroup:NodeGroup": ("amiType", "capacityType", "instanceTypes", "scalingConfig", "taints"),
    "aws:eks/addon:Addon": ("addonName", "addonVersion"),
    "aws:eks/accessEntry:AccessEntry": ("principalArn",),
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": ("namespace", "serviceAccount"),
    "kubernetes:helm.sh/v3:Release": ("chart", "version", "namespace"),
}
MAX_VALUE_WIDTH = 90


def short_type(type_token: str) -> str:
    """aws:ec2/subnet:Subnet -> aws:ec2.Subnet; component and provider types stay as they are."""
    package, _, rest = type_token.partition(":")
    module, _, kind = rest.partition(":")
    if not kind or package in ("pulumi", "mlstack"):
        return type_token
    return f"{package}:{module.split('/')[0]}.{kind}"


def render_tree(run: StackRun) -> str:
    return _TreeRenderer(run).render()


class _TreeRenderer:
    def __init__(self, run: StackRun) -> None:
        self._run = run
        self._values = PlanRenderer(run.invented)
        self._names_by_id = {
            resource.id: resource.name for resource in run.resources if resource.id and resource.custom
        }
        self._lines: list[str] = []

    def render(self) -> str:
        for root in (resource for resource in self._run.resources if resource.parent is None):
            self._lines.append(f"{root.name}  ({root.type})")
            self._children(root, "")
        return "\n".join(self._lines)

    def _children(self, parent: RecordedResource, indent: str) -> None:
        children = self._run.children_of(parent.urn)
        for position, child in enumerate(children):
            last = position == len(children) - 1
            branch, continuation = ("└─ ", "   ") if last else ("├─ ", "│  ")
            details = self._key_inputs(child)
            self._lines.append(
                f"{indent}{branch}{child.name}  {short_type(child.type)}{'  ' + details if details else ''}"
            )
            self._children(child, indent + continuation)

    def _key_inputs(self, resource: RecordedResource) -> str:
        shown = []
        for key in KEY_INPUTS.get(resource.type, ()):
            if key not in resource.inputs:
                continue
            raw = resource.inputs[key]
            # A reference to another resource of this stack reads better as that resource's name.
            if isinstance(raw, str) and raw in self._names_by_id:
                value: Any = f"<{self._names_by_id[raw]}>"
            else:
                value = self._values.value(raw)
            shown.append(f"{key}={_compact(value)}")
        return " ".join(shown)


def _compact(value: Any) -> str:
    if isinstance(value, str) and value[:1] in "{[":
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= MAX_VALUE_WIDTH else text[: MAX_VALUE_WIDTH - 1] + "…"


def render_summary(run: StackRun) -> str:
    """Counts a reviewer checks at a glance."""
    cloud = [resource for resource in run.resources if resource.custom and not resource.type.startswith("pulumi:")]
    counts = Counter(short_type(resource.type) for resource in cloud)
    lines = [f"{len(cloud)} cloud resources to create:"]
    lines += [f"  {count:>3}  {type_name}" for type_name, count in sorted(counts.items())]
    return "\n".join(lines)


def render_outputs(outputs: dict[str, Any]) -> str:
    return "\n".join(f"  {name}: {_compact(value)}" for name, value in outputs.items())


def render_cost(cost: CostEstimate) -> str:
    """Line items with quantity x unit price and their monthly cost, the total (and at the autoscaling ceiling),
    the assumptions and whatever could not be priced."""
    lines = [f"Estimated monthly cost ({cost.currency}, {cost.region}, prices as of {cost.prices_as_of}):"]
    width = max((len(item.item) for item in cost.items), default=10)
    rates = [_rate(item) for item in cost.items]
    rate_width = max((len(rate) for rate in rates), default=0)
    for item, rate in zip(cost.items, rates, strict=True):
        amount = "unpriced" if item.monthly is None else f"{item.monthly:>10,.2f}"
        notes = [item.note] if item.note else []
        if item.monthly_at_max is not None:
            notes.append(f"up to {item.monthly_at_max:,.2f} at its maximum of {item.max_count}")
        note = f"  ({'; '.join(notes)})" if notes else ""
        lines.append(f"  {item.item:<{width}}  {rate:>{rate_width}}  {amount:>10}{note}")
    blank = " " * rate_width
    if cost.monthly_total is None:
        lines.append(
            f"  {'Total':<{width}}  {blank}  {'not known':>10}  (priced items add up to {cost.priced_subtotal:,.2f})"
        )
    else:
        lines.append(f"  {'Total':<{width}}  {blank}  {cost.monthly_total:>10,.2f}")
    if cost.total_at_max is not None:
        lines.append(f"  {'Total with every pool at its maximum':<{width}}  {blank}  {cost.total_at_max:>10,.2f}")
    lines += [f"  ! {problem}" for problem in cost.unpriced]
    lines.append("  Assumptions:")
    lines += [f"    - {assumption}" for assumption in ASSUMPTIONS]
    return "\n".join(lines)


def _rate(item: LineItem) -> str:
    """How the monthly amount was reached, e.g. 2,190 instance-hours x 0.192."""
    price = "?" if item.unit_price is None else f"{item.unit_price:,.5g}"
    return f"{item.quantity:,.6g} {item.unit} x {price}"


def render_serving(serving: serving_cost.ServingEstimate) -> str:
    """Capacity at the replica floor and ceiling and the cost of a million predictions, per protocol and request
    size, with how a replica's cost was reached and the assumptions."""
    bench = serving.bench
    lines = [
        f"Serving capacity and price per prediction ({serving.currency}; bench of {bench.measured_on} on "
        f"{bench.machine}, {bench.cores} core{'s' if bench.cores > 1 else ''}):"
    ]
    workload = serving.workload
    if workload is not None:
        target = (
            f", HPA CPU target {workload.cpu_target_utilization}%"
            if workload.cpu_target_utilization is not None
            else ""
        )
        rate = (
            f", request-rate target {workload.requests_per_second_target:g}/s per replica"
            if workload.requests_per_second_target is not None
            else ""
        )
        hourly = "unpriced" if workload.replica_hourly is None else f"{workload.replica_hourly:.5f}/h"
        lines.append(
            f"  {workload.name}: replicas {workload.replicas_floor}..{workload.replicas_ceiling}{target}{rate}; "
            f"a replica costs {hourly} ({workload.attribution})"
        )
        header = ("protocol", "rows/request", "predictions/s at floor", "at ceiling", "per 1M, floor at CPU target")
        rows = [
            (
                figure.protocol,
                str(figure.rows_per_request),
                f"{figure.capacity_at_floor:,.0f}",
                f"{figure.capacity_at_ceiling:,.0f}",
                _per_million(figure.cost_per_million_at_cpu_target),
            )
            for figure in serving.figures
        ]
        widths = [max(len(row[index]) for row in (header, *rows)) for index in range(len(header))]
        lines += [
            "  "
            + "  ".join(
                cell.rjust(width) if i else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
            for row in (header, *rows)
        ]
        for figure in serving.figures:
            if figure.scales_out_at_per_replica is not None:
                lines.append(
                    f"  ! {figure.protocol}, {figure.rows_per_request} row(s): the HPA's request-rate target adds a "
                    f"replica at {figure.scales_out_at_per_replica:,.0f} predictions/s per replica, before the CPU "
                    f"target: {_per_million(figure.cost_per_million_at_scale_out)} per 1M there"
                )
    lines += [f"  ! {problem}" for problem in serving.unpriced]
    lines.append("  Assumptions:")
    lines += [f"    - {assumption}" for assumption in serving_cost.ASSUMPTIONS]
    return "\n".join(lines)


def _per_million(amount: float | None) -> str:
    return format_money(amount)


def render_violations(violations: list[Violation], title: str = "Policy", rules_run: int | None = None) -> str:
    ran = f"{rules_run} rules ran, " if rules_run is not None else ""
    if not violations:
        return f"{title}: {ran}no violations"
    lines = [f"{title}: {ran}{len(violations)} violation(s)"]
    for violation in violations:
        name = violation.urn.rsplit("::", 1)[-1]
        lines.append(f"  [{violation.level}] {violation.policy}: {name}: {violation.message}")
    return "\n".join(lines)
