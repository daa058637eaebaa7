"""`mlstack diff BASE_PLAN NEW_PLAN`: what a change adds, removes and changes (each changed input old → new, and
whether it replaces the resource or updates it in place), and what it does to the monthly bill, as Markdown for a
pull-request comment."""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.preview.cost.money import format_money

MAX_LISTED = 50  # resources listed per section; a comment stays readable (`--all` lists every one)
MAX_FIELDS = 8  # changed inputs shown per resource, likewise
MAX_VALUE_WIDTH = 80  # longer values are folded to their start and their length
STACK_IN_URN = re.compile(r"^urn:pulumi:[^:]+::")
SECRET = "[secret]"
# Keys whose values are credentials whatever the plan recorded; shown masked even if a plan left them plain.
SECRET_KEY = re.compile(r"(password|secret|token|private_?key|webhook|routing_?key)", re.IGNORECASE)


@dataclass(frozen=True)
class ForcesReplacement:
    """Inputs (the engine's camelCase paths, nested with dots, list indices left out) whose change makes the provider
    delete and recreate the resource, and where upstream says so: `repository@commit:path`."""

    fields: tuple[str, ...]
    source: str


# pulumi-aws bridges terraform-provider-aws's schemas unchanged (its Python package ships no schema: it is inside the
# plugin binary), so each AWS entry is the `ForceNew: true` fields (RequiresReplace for framework resources) of the
# resource's schema file. Checked against hashicorp/terraform-provider-aws at the commit named in each entry: the
# exact upstream tag that pulumi-aws 7.51.1 (requirements/dev.txt) bridges could not be resolved from here (the
# pulumi-aws snapshot is too large to fetch, the Go module proxy refuses the module, the stored history of its
# provider/go.mod ends before v7), so each file was read at the version the code index returned; most are from
# 2025-2026 (v6 of the provider), the older ones are noted. Inputs not listed update in place; a resource type not
# listed shows every change as an update in place, and the diff says the table is the source.
TF_AWS = "hashicorp/terraform-provider-aws"
REPLACED_BY: dict[str, ForcesReplacement] = {
    # instanceTenancy is updated in place (ModifyVpcTenancy in resourceVPCUpdate), not replaced.
    "aws:ec2/vpc:Vpc": ForcesReplacement(
        ("cidrBlock", "ipv4IpamPoolId", "ipv4NetmaskLength"),
        f"{TF_AWS}@00081ce41cc691433ac19bf42227cdabffd0454d:internal/service/ec2/vpc_.go",
    ),
    "aws:ec2/subnet:Subnet": ForcesReplacement(
        (
            "vpcId",
            "cidrBlock",
            "availabilityZone",
            "availabilityZoneId",
            "ipv4IpamPoolId",
            "ipv4NetmaskLength",
            "ipv6IpamPoolId",
            "ipv6Native",
            "ipv6NetmaskLength",
            "outpostArn",
        ),
        f"{TF_AWS}@00cda125a19d31754cb0d073cf551264c57955cb:internal/service/ec2/vpc_subnet.go",
    ),
    "aws:ec2/natGateway:NatGateway": ForcesReplacement(
        ("subnetId", "allocationId", "connectivityType", "privateIp", "secondaryPrivateIpAddressCount"),
        f"{TF_AWS}@04088eaa54948421bf1ef7494ae2b2c01d9243e3:internal/service/ec2/vpc_nat_gateway.go",
    ),
    "aws:ec2/securityGroup:SecurityGroup": ForcesReplacement(
        ("name", "namePrefix", "description", "vpcId"),
        f"{TF_AWS}@01606926a0c0ab9174aec440f976a48b0baee722:internal/service/ec2/vpc_security_group.go",
    ),
    # Also replaced when the rule's source kind changes (cidrIpv4 to referencedSecurityGroupId, ...): ModifyPlan in
    # the same file; see SOURCE_KIND_FIELDS. A new CIDR or port of the same kind is ModifySecurityGroupRules.
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": ForcesReplacement(
        ("securityGroupId",),
        f"{TF_AWS}@00a322094b4b9ade8a81b244345dbcf4b52ee8d6:internal/service/ec2/vpc_security_group_ingress_rule.go",
    ),
    # The egress rule embeds the ingress rule's resourceSecurityGroupRule (vpc_security_group_egress_rule.go at
    # 050ac11163cab8cdae5936a7f40b0e528ff780df), schema and plan modifier included.
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": ForcesReplacement(
        ("securityGroupId",),
        f"{TF_AWS}@00a322094b4b9ade8a81b244345dbcf4b52ee8d6:internal/service/ec2/vpc_security_group_ingress_rule.go",
    ),
    # version and vpcConfig (subnets, endpoint access) update in place; encryptionConfig is replaced only when it is
    # removed (ForceNewIfChange), which this table does not tell apart.
    "aws:eks/cluster:Cluster": ForcesReplacement(
        (
            "name",
            "roleArn",
            "bootstrapSelfManagedAddons",
            "accessConfig.bootstrapClusterCreatorAdminPermissions",
            "kubernetesNetworkConfig.ipFamily",
            "kubernetesNetworkConfig.serviceIpv4Cidr",
            "outpostConfig",
            "remoteNetworkConfig",
        ),
        f"{TF_AWS}@00555dc5b38f92abbfa230badea0ed0754cea81e:internal/service/eks/cluster.go",
    ),
    # scalingConfig, labels, taints, version and the launch template's version update in place.
    "aws:eks/nodeGroup:NodeGroup": ForcesReplacement(
        (
            "clusterName",
            "nodeGroupName",
            "nodeGroupNamePrefix",
            "nodeRoleArn",
            "subnetIds",
            "instanceTypes",
            "amiType",
            "capacityType",
            "diskSize",
            "launchTemplate.id",
            "launchTemplate.name",
            "remoteAccess",
        ),
        f"{TF_AWS}@012e0a32f0686212f447447fd3d81c3d0ce256ad:internal/service/eks/node_group.go",
    ),
    "aws:eks/addon:Addon": ForcesReplacement(
        ("addonName", "clusterName"),
        f"{TF_AWS}@00a35305dc1b297a6fcdecdfbba33f1e63c3da39:internal/service/eks/addon.go",
    ),
    "aws:eks/accessEntry:AccessEntry": ForcesReplacement(
        ("clusterName", "principalArn", "type"),
        f"{TF_AWS}@01f431114674c27cf790fafb67ac274bf8f765e1:internal/service/eks/access_entry.go",
    ),
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": ForcesReplacement(
        ("clusterName", "namespace", "serviceAccount"),
        f"{TF_AWS}@00a35305dc1b297a6fcdecdfbba33f1e63c3da39:internal/service/eks/pod_identity_association.go",
    ),
    # An older version of the file (aws-sdk-go v1); imageTagMutability and scanning update in place.
    "aws:ecr/repository:Repository": ForcesReplacement(
        ("name", "encryptionConfigurations"),
        f"{TF_AWS}@0072eea2d6046230a1fb7717741c17fd2122175e:internal/service/ecr/repository.go",
    ),
    # pulumi-aws 7 names aws_s3_bucket `aws:s3/bucket:Bucket` (BucketV2 is its deprecated alias). An older version.
    "aws:s3/bucket:Bucket": ForcesReplacement(
        ("bucket", "bucketPrefix"),
        f"{TF_AWS}@0070bcd12c952f14c5434a6f351ef7b6fa791226:internal/service/s3/bucket.go",
    ),
    "aws:s3/bucketV2:BucketV2": ForcesReplacement(
        ("bucket", "bucketPrefix"),
        f"{TF_AWS}@0070bcd12c952f14c5434a6f351ef7b6fa791226:internal/service/s3/bucket.go",
    ),
    # description, policy, rotation and enabled update in place.
    "aws:kms/key:Key": ForcesReplacement(
        ("customerMasterKeySpec", "keyUsage", "multiRegion", "customKeyStoreId", "xksKeyId"),
        f"{TF_AWS}@00a35305dc1b297a6fcdecdfbba33f1e63c3da39:internal/service/kms/key.go",
    ),
    # targetKeyId updates in place (UpdateAlias). An older version of the file.
    "aws:kms/alias:Alias": ForcesReplacement(
        ("name", "namePrefix"),
        f"{TF_AWS}@01c08000ddb14181b5bd19201d8fca311dc570e4:internal/service/kms/alias.go",
    ),
    "aws:lb/loadBalancer:LoadBalancer": ForcesReplacement(
        ("name", "namePrefix", "internal", "loadBalancerType", "customerOwnedIpv4Pool"),
        f"{TF_AWS}@00edc94be7a89c4c485415cdec27094875f61bfc:internal/service/elbv2/load_balancer.go",
    ),
    # protocolVersion too: moving a target group to GRPC replaces it.
    "aws:lb/targetGroup:TargetGroup": ForcesReplacement(
        ("name", "namePrefix", "port", "protocol", "protocolVersion", "vpcId", "targetType", "ipAddressType"),
        f"{TF_AWS}@013cfb4cddc9c44a28f34abad0c11768bcdb9b85:internal/service/elbv2/target_group.go",
    ),
    # An older version of the file; the assume-role policy, description and boundary update in place.
    "aws:iam/role:Role": ForcesReplacement(
        ("name", "namePrefix", "path"),
        f"{TF_AWS}@0040ea6911af00bea2cca6dbb14e86829826ad8e:internal/service/iam/role.go",
    ),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ForcesReplacement(
        ("role", "policyArn"),
        f"{TF_AWS}@04c79849dbe7fbe76c3054b364357bcdaade9ac5:internal/service/iam/role_policy_attachment.go",
    ),
    # retentionInDays and kmsKeyId update in place.
    "aws:cloudwatch/logGroup:LogGroup": ForcesReplacement(
        ("name", "namePrefix", "logGroupClass"),
        f"{TF_AWS}@0073593e7d6993ba482409f4dc35438daaa79bb3:internal/service/logs/group.go",
    ),
    # Sizes, subnets and the launch template update in place (UpdateAutoScalingGroup, then an instance refresh);
    # name and namePrefix are not in resourceGroupUpdate, and initial_lifecycle_hook is ForceNew.
    "aws:autoscaling/group:Group": ForcesReplacement(
        ("name", "namePrefix", "initialLifecycleHooks"),
        f"{TF_AWS}@00a919d1548eb437816d4838f320502ad34183ff:internal/service/autoscaling/group.go",
    ),
    # instanceType, imageId, userData and the rest make a new template version in place (the updateKeys of
    # resourceLaunchTemplateUpdate); only the name is fixed. An older version of the file.
    "aws:ec2/launchTemplate:LaunchTemplate": ForcesReplacement(
        ("name", "namePrefix"),
        f"{TF_AWS}@025e4f81cab8553cb052aebfcc5987e2aa8c702a:internal/service/ec2/ec2_launch_template.go",
    ),
}
# A security group rule's source: switching from one to another replaces the rule (ModifyPlan's sourceAttributeName).
SOURCE_KIND_FIELDS = ("cidrIpv4", "cidrIpv6", "prefixListId", "referencedSecurityGroupId")
SECURITY_GROUP_RULES = (
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
)

# pulumi-kubernetes decides replacement itself (forceNewProperties in provider/pkg/provider/diff.go; a Helm release's
# in helm_release.go). Read at the snapshot's head, 27 commits past v4.32.0 (July 2026); the pinned 4.34.2 is newer
# than the snapshot. Every object is replaced when its name or namespace changes; a Secret's data and a ConfigMap's
# data too, because the provider's enableSecretMutable and enableConfigMapMutable default to false (provider.go) and
# the stacks leave them so.
PULUMI_KUBERNETES = "pulumi/pulumi-kubernetes@94977969d64112b04e19945818a7d5d5f38f631d"
KUBERNETES_DIFF = f"{PULUMI_KUBERNETES}:provider/pkg/provider/diff.go"
KUBERNETES_REPLACED_BY = ForcesReplacement(("metadata.name", "metadata.namespace"), KUBERNETES_DIFF)
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
KUBERNETES_KIND_REPLACED_BY: dict[str, ForcesReplacement] = {
    "kubernetes:apps/v1:Deployment": ForcesReplacement(("spec.selector",), KUBERNETES_DIFF),
    "kubernetes:apps/v1:DaemonSet": ForcesReplacement(("spec.selector",), KUBERNETES_DIFF),
    "kubernetes:apps/v1:StatefulSet": ForcesReplacement(
        (
            "spec.podManagementPolicy",
            "spec.revisionHistoryLimit",
            "spec.selector",
            "spec.serviceName",
            "spec.volumeClaimTemplates",
        ),
        KUBERNETES_DIFF,
    ),
    "kubernetes:batch/v1:Job": ForcesReplacement(
        ("spec.completions", "spec.parallelism", "spec.selector", "spec.template"), KUBERNETES_DIFF
    ),
    "kubernetes:core/v1:Service": ForcesReplacement(("spec.clusterIP",), KUBERNETES_DIFF),
    "kubernetes:core/v1:Secret": ForcesReplacement(("type", "data", "stringData"), KUBERNETES_DIFF),
    "kubernetes:core/v1:ConfigMap": ForcesReplacement(("data", "binaryData"), KUBERNETES_DIFF),
    "kubernetes:core/v1:PersistentVolumeClaim": ForcesReplacement(
        ("spec.accessModes", "spec.selector", "spec.storageClassName", "spec.volumeName"), KUBERNETES_DIFF
    ),
    "kubernetes:storage.k8s.io/v1:StorageClass": ForcesReplacement(("parameters", "provisioner"), KUBERNETES_DIFF),
    "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding": ForcesReplacement(("roleRef",), KUBERNETES_DIFF),
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding": ForcesReplacement(("roleRef",), KUBERNETES_DIFF),
    # A Helm release is not an object with metadata: its own name and namespace are replaced; values update.
    HELM_RELEASE: ForcesReplacement(
        ("name", "namespace"), f"{PULUMI_KUBERNETES}:provider/pkg/provider/helm_release.go"
    ),
}


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


def _replacement_fields(resource_type: str) -> tuple[str, ...]:
    if resource_type == HELM_RELEASE:
        return KUBERNETES_KIND_REPLACED_BY[resource_type].fields
    if resource_type.startswith("kubernetes:"):
        kind = KUBERNETES_KIND_REPLACED_BY.get(resource_type)
        return KUBERNETES_REPLACED_BY.fields + (kind.fields if kind else ())
    rule = REPLACED_BY.get(resource_type)
    return rule.fields if rule else ()


def _at(value: Any, path: list[str]) -> Any:
    """The value under a dotted path, looking into every element of a list on the way."""
    for index, key in enumerate(path):
        if isinstance(value, list):
            return [_at(item, path[index:]) for item in value]
        value = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
    return value


def _forces_replacement(resource_type: str, path: str, before: Any, after: Any) -> bool:
    """Whether a change at `path` (from `before` to `after`, the values there) replaces the resource: it is at or
    under a field that forces replacement, or it holds one whose value differs (a block added or removed whole)."""
    plain = re.sub(r"\[\d+\]", "", path)
    for field in _replacement_fields(resource_type):
        if plain == field or plain.startswith(f"{field}."):
            return True
        if not plain or field.startswith(f"{plain}."):
            rest = field[len(plain) + 1 :].split(".") if plain else field.split(".")
            if _at(before, rest) != _at(after, rest):
                return True
    return False


def _source_kind(inputs: dict[str, Any]) -> set[str]:
    return {field for field in SOURCE_KIND_FIELDS if inputs.get(field) is not None}


def field_changes(resource_type: str, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
    source_kind_changed = resource_type in SECURITY_GROUP_RULES and _source_kind(before) != _source_kind(after)
    return [
        FieldChange(
            path,
            old,
            new,
            _forces_replacement(resource_type, path, old, new) or (source_kind_changed and path in SOURCE_KIND_FIELDS),
        )
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
            "<sub>Replacement is read from mlstack's table of fields that force it (infra/preview/diff.py, each "
            "entry checked against terraform-provider-aws's or pulumi-kubernetes's source at the commit it names); "
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
