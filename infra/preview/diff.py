"""`mlstack diff BASE_PLAN NEW_PLAN`: what a change adds, removes and changes (each changed input old → new, and
whether it replaces the resource or updates it in place), and what it does to the monthly bill, as Markdown for a
pull-request comment."""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.preview.cost.serving import format_money

MAX_LISTED = 50  # resources listed per section; a comment stays readable (`--all` lists every one)
MAX_FIELDS = 8  # changed inputs shown per resource, likewise
MAX_VALUE_WIDTH = 80  # longer values are folded to their start and their length
STACK_IN_URN = re.compile(r"^urn:pulumi:[^:]+::")
SECRET = "[secret]"
# Keys whose values are credentials whatever the plan recorded; shown masked even if a plan left them plain.
SECRET_KEY = re.compile(r"(password|secret|token|private_?key|webhook|routing_?key)", re.IGNORECASE)

# Inputs whose change makes the provider delete and recreate the resource (plus every Kubernetes object's
# metadata.name and metadata.namespace). The pulumi-aws Python package does not ship the provider's schema (it is
# inside the plugin binary), so this is our own table for the types the stacks use, from terraform-provider-aws's
# resource schemas (`ForceNew: true` / RequiresReplace), which pulumi-aws bridges unchanged. A field missing here
# is shown as an update in place: the table errs on the side of naming fewer replacements, and says so in the diff.
REPLACED_BY: dict[str, frozenset[str]] = {
    "aws:ec2/vpc:Vpc": frozenset({"cidrBlock", "instanceTenancy"}),
    "aws:ec2/subnet:Subnet": frozenset({"vpcId", "cidrBlock", "availabilityZone", "availabilityZoneId"}),
    "aws:ec2/natGateway:NatGateway": frozenset({"subnetId", "allocationId", "connectivityType"}),
    "aws:ec2/securityGroup:SecurityGroup": frozenset({"name", "namePrefix", "description", "vpcId"}),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": frozenset({"securityGroupId"}),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": frozenset({"securityGroupId"}),
    "aws:eks/cluster:Cluster": frozenset({"name", "roleArn"}),
    "aws:eks/nodeGroup:NodeGroup": frozenset(
        {
            "clusterName",
            "nodeGroupName",
            "nodeRoleArn",
            "subnetIds",
            "instanceTypes",
            "amiType",
            "capacityType",
            "diskSize",
        }
    ),
    "aws:ecr/repository:Repository": frozenset({"name"}),
    "aws:s3/bucket:Bucket": frozenset({"bucket", "bucketPrefix"}),
    "aws:s3/bucketV2:BucketV2": frozenset({"bucket", "bucketPrefix"}),
    "aws:kms/key:Key": frozenset({"customerMasterKeySpec", "keyUsage", "multiRegion"}),
    "aws:lb/loadBalancer:LoadBalancer": frozenset({"name", "namePrefix", "internal", "loadBalancerType"}),
    "aws:lb/targetGroup:TargetGroup": frozenset({"name", "port", "protocol", "vpcId", "targetType"}),
    "aws:iam/role:Role": frozenset({"name", "namePrefix", "path"}),
    "aws:cloudwatch/logGroup:LogGroup": frozenset({"name", "namePrefix"}),
    "aws:autoscaling/group:Group": frozenset({"name", "namePrefix"}),
}
KUBERNETES_REPLACED_BY = ("metadata.name", "metadata.namespace")


class PlanError(Exception):
    """A plan file that cannot be compared; the message names it."""


@dataclass(frozen=True)
class FieldChange:
    path: str  # dotted input path, e.g. spec.template.spec.containers[0].image
    before: Any
    after: Any
    replaces: bool


@dataclass(frozen=True)
class PlanDiff:
    added: list[dict[str, Any]]
    removed: list[dict[str, Any]]
    changed: list[tuple[dict[str, Any], list[FieldChange]]]  # the resource and each input that changed

    @property
    def replaced(self) -> list[dict[str, Any]]:
        return [resource for resource, fields in self.changed if any(field.replaces for field in fields)]


_MISSING = object()


def _resources(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Cloud resources by URN without the stack's name, so two stacks' plans compare too."""
    return {
        STACK_IN_URN.sub("urn:pulumi:*::", resource["urn"]): resource
        for resource in plan["resources"]
        if resource["custom"]
    }


def _leaves(path: str, before: Any, after: Any) -> list[tuple[str, Any, Any]]:
    """The innermost paths at which `before` and `after` differ (maps by key, equal-length lists by index)."""
    if before == after:
        return []
    parsed_before, parsed_after = _json_text(before), _json_text(after)
    if parsed_before is not None and parsed_after is not None:  # policy documents, default tags: compare content
        return _leaves(path, parsed_before, parsed_after)
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(set(before) | set(after)):
            found += _leaves(f"{path}.{key}" if path else key, before.get(key, _MISSING), after.get(key, _MISSING))
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        found = []
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            found += _leaves(f"{path}[{index}]", old, new)
        return found
    return [(path, before, after)]


def _json_text(value: Any) -> dict[str, Any] | list[Any] | None:
    if not (isinstance(value, str) and value[:1] in ("{", "[")):
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict | list) else None


def _forces_replacement(resource_type: str, path: str) -> bool:
    top = re.split(r"[.\[]", path, maxsplit=1)[0]
    if resource_type.startswith("kubernetes:"):
        return any(path == field or path.startswith(f"{field}.") for field in KUBERNETES_REPLACED_BY)
    return top in REPLACED_BY.get(resource_type, frozenset())


def field_changes(resource_type: str, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
    return [
        FieldChange(path, old, new, _forces_replacement(resource_type, path))
        for path, old, new in _leaves("", before, after)
    ]


def compare(base_plan: dict[str, Any], new_plan: dict[str, Any]) -> PlanDiff:
    base, new = _resources(base_plan), _resources(new_plan)
    changed = []
    for urn, resource in new.items():
        before = base.get(urn)
        if before is not None and before["inputs"] != resource["inputs"]:
            changed.append((resource, field_changes(resource["type"], before["inputs"], resource["inputs"])))
    return PlanDiff(
        added=[resource for urn, resource in new.items() if urn not in base],
        removed=[resource for urn, resource in base.items() if urn not in new],
        changed=changed,
    )


def load_plan(path: Path) -> dict[str, Any]:
    try:
        plan: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PlanError(f"{path}: cannot read it: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise PlanError(f"{path}: not JSON: {error}") from None
    if not isinstance(plan, dict) or plan.get("version") != 1 or not isinstance(plan.get("resources"), list):
        raise PlanError(f"{path}: not an mlstack plan.json (version 1 with resources)")
    return plan


def _money(amount: float | None) -> str:
    return "n/a" if amount is None else f"${amount:,.2f}"


def _delta(amount: float) -> str:
    sign = "+" if amount > 0 else "-" if amount < 0 else "±"
    return f"{sign}${abs(amount):,.2f}"


def _cost_items(plan: dict[str, Any], skip: set[str]) -> dict[str, float]:
    items: dict[str, float] = {}
    for item in plan.get("cost", {}).get("items", []):
        if item.get("monthly") is not None and item["item"] not in skip:
            items[item["item"]] = items.get(item["item"], 0.0) + item["monthly"]
    return items


@dataclass(frozen=True)
class InstanceChange:
    """A pool or host whose instance type changed: its instance line before and after."""

    name: str
    before: dict[str, Any]
    after: dict[str, Any]

    def line(self) -> str:
        old, new = self.before.get("monthly"), self.after.get("monthly")
        change = ""
        if old is not None and new is not None:
            change = f" ({_delta(new - old)}" + (f", {(new - old) / old:+.1%})" if old else ")")
        was, now = (item["item"].split(": ", 1)[-1] for item in (self.before, self.after))
        return f"- {self.name}: {was} → {now}: {_money(old)} → {_money(new)}{change}"


def _instance_changes(base: dict[str, Any], new: dict[str, Any]) -> list[InstanceChange]:
    """Instance-hour lines of the same resource whose label (count and type) differs: one cost line each."""

    def instance_lines(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {
            STACK_IN_URN.sub("urn:pulumi:*::", item["urn"]): item
            for item in plan.get("cost", {}).get("items", [])
            if item.get("unit") == "instance-hours"
        }

    before, after = instance_lines(base), instance_lines(new)
    return [
        InstanceChange(urn.rsplit("::", 1)[-1], before[urn], after[urn])
        for urn in sorted(set(before) & set(after))
        if _instance_type(before[urn]["item"]) != _instance_type(after[urn]["item"])
    ]


def _instance_type(label: str) -> str:
    match = re.search(r" x (\S+) \(", label)
    return match[1] if match else label


def _show(path: str, value: Any, start: int = 0) -> str:
    """A value as a reviewer reads it: masked when secret, folded when long (from `start`, where it differs)."""
    if value is _MISSING:
        return "(unset)"
    if value == SECRET or SECRET_KEY.search(path.rsplit(".", 1)[-1]):
        return f"`{SECRET}`"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)
    if len(text) > MAX_VALUE_WIDTH:
        head = "…" if start else ""
        text = f"{head}{text[start : start + MAX_VALUE_WIDTH - 1]}… ({len(text)} characters)"
    quoted = text.replace("`", "'")  # a backtick would end the inline code
    return f"`{quoted}`"


def _first_difference(before: Any, after: Any) -> int:
    """Where two long strings part, less some context, so the folded values show what changed."""
    if not (isinstance(before, str) and isinstance(after, str)):
        return 0
    same = next(
        (i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b), min(len(before), len(after))
    )
    return max(0, same - MAX_VALUE_WIDTH // 4) if max(len(before), len(after)) > MAX_VALUE_WIDTH else 0


def _changed_rows(changed: list[tuple[dict[str, Any], list[FieldChange]]], everything: bool) -> list[str]:
    rows = []
    for resource, fields in changed:
        forcing = [field.path for field in fields if field.replaces]
        how = f"**replace** ({', '.join(forcing)} forces it)" if forcing else "update in place"
        rows.append(f"- `{resource['type']}` {resource['name']}: {how}")
        shown = fields if everything else fields[:MAX_FIELDS]
        rows += [
            f"  - `{field.path}`: {_show(field.path, field.before, _first_difference(field.before, field.after))} → "
            f"{_show(field.path, field.after, _first_difference(field.before, field.after))}"
            + (" (replaces)" if field.replaces else "")
            for field in shown
        ]
        if len(fields) > len(shown):
            rows.append(f"  - … and {len(fields) - len(shown)} more inputs (`mlstack diff --all` lists them)")
    return rows


def _listing(title: str, rows: list[str], everything: bool, count: int | None = None) -> list[str]:
    if not rows:
        return []
    shown = rows if everything else rows[:MAX_LISTED]
    more = [] if len(shown) == len(rows) else [f"- … and {len(rows) - MAX_LISTED} more (`mlstack diff --all`)"]
    return ["", f"**{title} ({len(rows) if count is None else count})**", "", *shown, *more]


# The price-per-prediction figures a reviewer compares, as (key in plan.json, column title, format).
PER_PREDICTION_COLUMNS = (
    ("capacity_at_floor", "predictions/s at floor", "{:,.0f}"),
    ("capacity_at_ceiling", "predictions/s at ceiling", "{:,.0f}"),
    ("cost_per_million_at_cpu_target", "$ per 1M at CPU target", "$"),
)


def _per_prediction(plan: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    figures = ((plan.get("cost") or {}).get("per_prediction") or {}).get("figures") or []
    return {(figure["protocol"], figure["rows_per_request"]): figure for figure in figures}


def _change(before: float | None, after: float | None, form: str) -> str:
    """`old → new (+x%)`, or the one value when it did not change."""
    shown = [
        "n/a" if value is None else f"${format_money(value)}" if form == "$" else form.format(value)
        for value in (before, after)
    ]
    if before == after:
        return shown[1]
    percent = f" ({(after - before) / before:+.1%})" if before and after is not None else ""
    return f"{shown[0]} → {shown[1]}{percent}"


def _per_prediction_lines(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Capacity and cost per million predictions, old → new with the percentage, where any of them changed."""
    before, after = _per_prediction(base), _per_prediction(new)
    rows = []
    for key in sorted(set(before) | set(after)):
        old, now = before.get(key, {}), after.get(key, {})
        if all(old.get(column) == now.get(column) for column, _, _ in PER_PREDICTION_COLUMNS):
            continue
        cells = [_change(old.get(column), now.get(column), form) for column, _, form in PER_PREDICTION_COLUMNS]
        rows.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    titles = " | ".join(title for _, title, _ in PER_PREDICTION_COLUMNS)
    return [
        "",
        "**Capacity and price per prediction** (one row is one prediction)",
        "",
        f"| protocol | rows/request | {titles} |",
        "| --- | ---: | ---: | ---: | ---: |",
        *rows,
    ]


def render_markdown(base: dict[str, Any], new: dict[str, Any], *, everything: bool = False) -> str:
    """The Markdown comment; `everything` lists every resource and input instead of the first ones."""
    diff = compare(base, new)
    base_total = base.get("cost", {}).get("monthly_total")
    new_total = new.get("cost", {}).get("monthly_total")
    title = f"### mlstack: `{base.get('stack')}` → `{new.get('stack')}`"
    lines = [title, ""]
    replaced = len(diff.replaced)
    lines.append(
        f"{len(diff.added)} to add, {len(diff.changed)} to change, {len(diff.removed)} to remove"
        + (f" ({replaced} of the changes replace the resource)" if replaced else "")
        + ". "
        f"Estimated monthly cost: {_money(base_total)} → {_money(new_total)}"
        + (f" (**{_delta(new_total - base_total)}**)" if base_total is not None and new_total is not None else "")
    )
    lines += _listing("Added", [f"- `{r['type']}` {r['name']}" for r in diff.added], everything)
    if diff.changed:
        lines += ["", f"**Changed ({len(diff.changed)})**", ""]
        rows = _changed_rows(diff.changed if everything else diff.changed[:MAX_LISTED], everything)
        lines += rows
        if not everything and len(diff.changed) > MAX_LISTED:
            lines.append(f"- … and {len(diff.changed) - MAX_LISTED} more (`mlstack diff --all`)")
        lines += [
            "",
            "<sub>Replacement is read from mlstack's table of fields that force it (infra/preview/diff.py); "
            "anything else is shown as an update in place.</sub>",
        ]
    lines += _listing("Removed", [f"- `{r['type']}` {r['name']}" for r in diff.removed], everything)
    instance_changes = _instance_changes(base, new)
    if instance_changes:
        lines += ["", "**Instance types**", "", *(change.line() for change in instance_changes)]
    skip = {change.before["item"] for change in instance_changes} | {
        change.after["item"] for change in instance_changes
    }
    before, after = _cost_items(base, skip), _cost_items(new, skip)
    moved = sorted(
        ((name, after.get(name, 0.0) - before.get(name, 0.0)) for name in set(before) | set(after)),
        key=lambda pair: (-abs(pair[1]), pair[0]),
    )
    moved = [(name, amount) for name, amount in moved if round(amount, 2) != 0]
    if moved:
        lines += [
            "",
            "**Cost by line item**",
            "",
            "| line item | before | after | change |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {name} | {_money(before.get(name))} | {_money(after.get(name))} | {_delta(amount)} |"
            for name, amount in (moved if everything else moved[:MAX_LISTED])
        ]
    lines += _per_prediction_lines(base, new)
    problems = new.get("cost", {}).get("unpriced") or []
    lines += _listing("Unpriced in the new plan", [f"- {problem}" for problem in problems], everything)
    violations = new.get("policy", {}).get("violations") or []
    lines += _listing(
        "Policy violations",
        [f"- **{v['policy']}** ({v['level']}): {v['urn'].rsplit('::', 1)[-1]}: {v['message']}" for v in violations],
        everything,
    )
    readiness = new.get("readiness", {}).get("violations") or []
    lines += _listing(
        "Readiness violations",
        [f"- **{v['policy']}**: {v['urn'].rsplit('::', 1)[-1]}: {v['message']}" for v in readiness],
        everything,
    )
    prices = new.get("cost", {}).get("prices_as_of")
    if prices:
        lines += ["", f"<sub>Prices as of {prices}; usage-driven charges are not included.</sub>"]
    return "\n".join(lines) + "\n"
