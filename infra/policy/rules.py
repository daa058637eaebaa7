"""mlstack's policy rules: plain functions over a resource's type and inputs (and, where a rule needs it, the
resources an input refers to). Two engines run the same functions: `mlstack preview` over the offline graph, and the
CrossGuard pack beside this file for `pulumi preview --policy-pack infra/policy`.

This module imports nothing from mlstack or Pulumi, so the pack's own virtual environment can load it as it is.
"""

import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MANDATORY = "mandatory"
REQUIRED_TAGS = ("project", "environment", "owner", "cost-center", "managed-by", "tier")
WORLD = ("0.0.0.0/0", "::/0")
WEB_PORTS = (80, 443)
SSH_PORT = 22
LOAD_BALANCER_ROLE = "load-balancer"
AWS_PROVIDER = "pulumi:providers:aws"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
LEGACY_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
REPOSITORY = "aws:ecr/repository:Repository"
CLUSTER = "aws:eks/cluster:Cluster"
KMS_KEY = "aws:kms/key:Key"
VOLUME = "aws:ebs/volume:Volume"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
SUBNET = "aws:ec2/subnet:Subnet"
VPC = "aws:ec2/vpc:Vpc"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
ROLLOUT = "kubernetes:argoproj.io/v1alpha1:Rollout"
AUTOSCALER = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
SERVICE_APP = "model-service"
STATEFUL = (BUCKET, REPOSITORY, KMS_KEY, CLUSTER)


@dataclass(frozen=True)
class Resource:
    urn: str
    type: str
    name: str
    inputs: Mapping[str, Any]
    protect: bool = False
    property_dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Stack:
    resources: Sequence[Resource]
    tier: str | None

    def by_urn(self, urn: str) -> Resource | None:
        return next((resource for resource in self.resources if resource.urn == urn), None)

    def related(self, resource: Resource, prop: str) -> list[Resource]:
        """The resources that input `prop` of `resource` refers to."""
        found = (self.by_urn(urn) for urn in resource.property_dependencies.get(prop, ()))
        return [other for other in found if other is not None]

    def of_type(self, *types: str) -> list[Resource]:
        return [resource for resource in self.resources if resource.type in types]


@dataclass(frozen=True)
class Violation:
    policy: str
    level: str
    urn: str
    message: str


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    types: tuple[str, ...]
    check: Callable[[Resource, Stack], Iterable[str]]
    tiers: tuple[str, ...] | None = None  # None: every tier
    level: str = MANDATORY

    def evaluate(self, stack: Stack) -> list[Violation]:
        if self.tiers is not None and stack.tier not in self.tiers:
            return []
        return [
            Violation(self.name, self.level, resource.urn, message)
            for resource in stack.of_type(*self.types)
            for message in self.check(resource, stack)
        ]


def _truthy(value: Any) -> bool:
    """Inputs arrive as booleans or, inside some nested blocks, as the strings "true" and "false"."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _ingress_rules(resource: Resource) -> list[dict[str, Any]]:
    """The rule(s) a resource opens, as {from, to, protocol, cidrs}."""
    inputs = resource.inputs
    if resource.type == INGRESS_RULE:
        cidrs = [cidr for cidr in (inputs.get("cidrIpv4"), inputs.get("cidrIpv6")) if cidr]
        return [
            {
                "from": inputs.get("fromPort"),
                "to": inputs.get("toPort"),
                "protocol": inputs.get("ipProtocol"),
                "cidrs": cidrs,
            }
        ]
    if resource.type == LEGACY_RULE and inputs.get("type") == "ingress":
        cidrs = [*(inputs.get("cidrBlocks") or []), *(inputs.get("ipv6CidrBlocks") or [])]
        return [
            {
                "from": inputs.get("fromPort"),
                "to": inputs.get("toPort"),
                "protocol": inputs.get("protocol"),
                "cidrs": cidrs,
            }
        ]
    if resource.type == SECURITY_GROUP:
        return [
            {
                "from": rule.get("fromPort"),
                "to": rule.get("toPort"),
                "protocol": rule.get("protocol"),
                "cidrs": [*(rule.get("cidrBlocks") or []), *(rule.get("ipv6CidrBlocks") or [])],
            }
            for rule in inputs.get("ingresses") or []
        ]
    return []


def _ports(rule: dict[str, Any]) -> tuple[int, int]:
    if str(rule["protocol"]) in ("-1", "all") or rule["from"] is None:
        return 0, 65535
    return int(rule["from"]), int(rule["to"] if rule["to"] is not None else rule["from"])


def is_world(cidr: str) -> bool:
    """0.0.0.0/0, ::/0 or any other spelling of every address."""
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def _target_group_role(resource: Resource, stack: Stack) -> str | None:
    if resource.type == SECURITY_GROUP:
        group: Resource | None = resource
    else:
        groups = stack.related(resource, "securityGroupId")
        group = groups[0] if groups else None
    tags = (group.inputs.get("tags") or {}) if group else {}
    return tags.get("role") if isinstance(tags, Mapping) else None


def no_world_ingress(resource: Resource, stack: Stack) -> Iterable[str]:
    for rule in _ingress_rules(resource):
        world = [cidr for cidr in rule["cidrs"] if is_world(cidr)]
        if not world:
            continue
        low, high = _ports(rule)
        if low != high or low not in WEB_PORTS:
            ports = f"port {low}" if low == high else f"ports {low}-{high}"
            yield f"opens {ports} to {', '.join(world)}; only 80 and 443 may be open to the world"
        elif _target_group_role(resource, stack) != LOAD_BALANCER_ROLE:
            yield f"opens port {low} to {', '.join(world)} on a group other than the load balancers'"


def no_ssh(resource: Resource, stack: Stack) -> Iterable[str]:
    for rule in _ingress_rules(resource):
        low, high = _ports(rule)
        if rule["cidrs"] and low <= SSH_PORT <= high:
            yield f"opens port 22 to {', '.join(rule['cidrs'])}; use SSM Session Manager instead of SSH"


def s3_encryption(resource: Resource, stack: Stack) -> Iterable[str]:
    configurations = [
        config
        for config in stack.of_type(BUCKET_ENCRYPTION)
        if resource.urn in config.property_dependencies.get("bucket", ())
    ]
    algorithms = [
        ((rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm"))
        for config in configurations
        for rule in config.inputs.get("rules") or []
    ]
    if not any(algorithm in ("aws:kms", "aws:kms:dsse") for algorithm in algorithms):
        yield "has no default encryption with a KMS key (a BucketServerSideEncryptionConfiguration using aws:kms)"


def ebs_encryption(resource: Resource, stack: Stack) -> Iterable[str]:
    if resource.type == VOLUME:
        if not _truthy(resource.inputs.get("encrypted")):
            yield "the volume is not encrypted"
        return
    for mapping in resource.inputs.get("blockDeviceMappings") or []:
        ebs = mapping.get("ebs") or {}
        if ebs and not _truthy(ebs.get("encrypted")):
            yield f"volume {mapping.get('deviceName', '?')} is not encrypted"
    if resource.type == INSTANCE and not _truthy((resource.inputs.get("rootBlockDevice") or {}).get("encrypted")):
        yield "the root volume is not encrypted"


def ecr_encryption(resource: Resource, stack: Stack) -> Iterable[str]:
    configurations = resource.inputs.get("encryptionConfigurations") or []
    if not any(config.get("encryptionType") == "KMS" for config in configurations):
        yield "images are not encrypted with a KMS key (encryptionConfigurations: KMS)"


def eks_secrets_encryption(resource: Resource, stack: Stack) -> Iterable[str]:
    config = resource.inputs.get("encryptionConfig") or {}
    if "secrets" not in (config.get("resources") or []):
        yield "Kubernetes secrets are not envelope-encrypted with a KMS key (encryptionConfig.resources: [secrets])"


def imdsv2(resource: Resource, stack: Stack) -> Iterable[str]:
    options = resource.inputs.get("metadataOptions") or {}
    if options.get("httpTokens") != "required":
        yield "instances accept IMDSv1; set metadataOptions.httpTokens to required"


def _default_tags(provider: Resource) -> Mapping[str, Any]:
    """The AWS provider's default tags; the engine hands its object inputs over as JSON text."""
    raw = provider.inputs.get("defaultTags")
    default_tags = json.loads(raw) if isinstance(raw, str) else (raw or {})
    tags: Mapping[str, Any] = default_tags.get("tags") or {}
    return tags


def required_tags(resource: Resource, stack: Stack) -> Iterable[str]:
    tags = _default_tags(resource)
    missing = [key for key in REQUIRED_TAGS if not tags.get(key)]
    if missing:
        yield f"the AWS provider's default tags lack {missing}, so resources would go untagged"


def ecr_scan_on_push(resource: Resource, stack: Stack) -> Iterable[str]:
    if not _truthy((resource.inputs.get("imageScanningConfiguration") or {}).get("scanOnPush")):
        yield "images are not scanned on push"


def protect_stateful(resource: Resource, stack: Stack) -> Iterable[str]:
    if not resource.protect:
        yield "a stateful resource in prod must be protected (protect) so no update or destroy deletes it"


def nat_per_az(resource: Resource, stack: Stack) -> Iterable[str]:
    zones = {subnet.inputs.get("availabilityZone") for subnet in stack.of_type(SUBNET)} - {None}
    gateways = len(stack.of_type(NAT_GATEWAY))
    if gateways < len(zones):
        yield (
            f"{gateways} NAT gateway(s) for {len(zones)} availability zones; prod needs one per zone: "
            "set mlstack:network.natStrategy: per-az"
        )


def min_service_replicas(resource: Resource, stack: Stack) -> Iterable[str]:
    labels = (resource.inputs.get("metadata") or {}).get("labels") or {}
    if labels.get("app.kubernetes.io/name") != SERVICE_APP:
        return
    spec = resource.inputs.get("spec") or {}
    # A Rollout's replica count is its autoscaler's: the floor is the autoscaler's minReplicas.
    replicas = spec.get("minReplicas") if resource.type == AUTOSCALER else spec.get("replicas")
    if replicas is not None and replicas < 2:
        yield f"runs {replicas:g} replica(s); prod serves from at least 2"


def deletion_protection(resource: Resource, stack: Stack) -> Iterable[str]:
    inputs = resource.inputs
    if resource.type == LOAD_BALANCER and not _truthy(inputs.get("enableDeletionProtection")):
        yield "the load balancer has no deletion protection"
    if resource.type == CLUSTER and not _truthy(inputs.get("deletionProtection")):
        yield "the EKS cluster has no deletion protection"
    if resource.type == INGRESS and (inputs.get("spec") or {}).get("ingressClassName") == "alb":
        annotations = (inputs.get("metadata") or {}).get("annotations") or {}
        attributes = annotations.get("alb.ingress.kubernetes.io/load-balancer-attributes", "")
        if "deletion_protection.enabled=true" not in str(attributes):
            yield "the ALB this Ingress creates has no deletion protection (load-balancer-attributes)"


RULES: tuple[Rule, ...] = (
    Rule("no-world-ingress", "Nothing open to 0.0.0.0/0 or ::/0 but 80/443 on the load balancers",
         (INGRESS_RULE, LEGACY_RULE, SECURITY_GROUP), no_world_ingress),
    Rule("no-ssh", "Port 22 open to no address range", (INGRESS_RULE, LEGACY_RULE, SECURITY_GROUP), no_ssh),
    Rule("s3-encryption", "Buckets encrypted at rest with KMS", (BUCKET,), s3_encryption),
    Rule("ebs-encryption", "EBS volumes encrypted at rest", (LAUNCH_TEMPLATE, INSTANCE, VOLUME), ebs_encryption),
    Rule("ecr-encryption", "Images encrypted at rest with KMS", (REPOSITORY,), ecr_encryption),
    Rule("eks-secrets-encryption", "Kubernetes secrets encrypted with KMS", (CLUSTER,), eks_secrets_encryption),
    Rule("imdsv2", "Instances require IMDSv2", (LAUNCH_TEMPLATE, INSTANCE), imdsv2),
    Rule("required-tags", f"Every AWS resource tagged {', '.join(REQUIRED_TAGS)}", (AWS_PROVIDER,), required_tags),
    Rule("ecr-scan-on-push", "Images scanned for vulnerabilities on push", (REPOSITORY,), ecr_scan_on_push),
    Rule("protect-stateful", "Stateful resources protected", STATEFUL, protect_stateful, tiers=("prod",)),
    Rule("nat-per-az", "A NAT gateway in every availability zone", (VPC,), nat_per_az, tiers=("prod",)),
    Rule("min-service-replicas", "At least 2 replicas serve", (DEPLOYMENT, ROLLOUT, AUTOSCALER), min_service_replicas,
         tiers=("prod",)),
    Rule("deletion-protection", "Deletion protection wherever AWS offers it",
         (LOAD_BALANCER, CLUSTER, INGRESS), deletion_protection, tiers=("prod",)),
)  # fmt: skip


def tier_of(resources: Iterable[Resource]) -> str | None:
    """The stack's tier, from the AWS provider's default tags."""
    for resource in resources:
        tier = _default_tags(resource).get("tier") if resource.type == AWS_PROVIDER else None
        if tier:
            return str(tier)
    return None


def evaluate(stack: Stack, rules: Sequence[Rule] = RULES) -> list[Violation]:
    return [violation for rule in rules for violation in rule.evaluate(stack)]
