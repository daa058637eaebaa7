"""mlstack's policy rules: plain functions over a resource's type and inputs (and, where a rule needs it, the
resources an input refers to). Two engines run the same functions: `mlstack preview` over the offline graph, and the
CrossGuard pack beside this file for `pulumi preview --policy-pack infra/policy`.

This module imports nothing from mlstack or Pulumi, so the pack's own virtual environment can load it as it is.
"""

import fnmatch
import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MANDATORY = "mandatory"
ADVISORY = "advisory"
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
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
# ALB access logs support SSE-S3 only (Elastic Load Balancing User Guide, enable-access-logging.html).
ELB_LOG_DELIVERY = "logdelivery.elasticloadbalancing.amazonaws.com"
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
SERVICE = "kubernetes:core/v1:Service"
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LISTENER = "aws:lb/listener:Listener"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
MANAGED_POLICY = "aws:iam/policy:Policy"
USER_POLICY = "aws:iam/userPolicy:UserPolicy"
GROUP_POLICY = "aws:iam/groupPolicy:GroupPolicy"
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
    skip_tiers: tuple[str, ...] = ()  # tiers where a stricter twin of this rule runs instead

    def runs_for(self, tier: str | None) -> bool:
        return (self.tiers is None or tier in self.tiers) and tier not in self.skip_tiers

    def evaluate(self, stack: Stack) -> list[Violation]:
        if not self.runs_for(stack.tier):
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
            for rule in inputs.get("ingress") or []
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
    if "AES256" in algorithms and _receives_alb_access_logs(resource, stack):
        return
    if not any(algorithm in ("aws:kms", "aws:kms:dsse") for algorithm in algorithms):
        yield "has no default encryption with a KMS key (a BucketServerSideEncryptionConfiguration using aws:kms)"


def _receives_alb_access_logs(resource: Resource, stack: Stack) -> bool:
    """A bucket whose policy lets Elastic Load Balancing deliver logs into it, which works with SSE-S3 only."""
    for policy in stack.of_type(BUCKET_POLICY):
        if resource.urn not in policy.property_dependencies.get("bucket", ()):
            continue
        document = policy.inputs.get("policy")
        text = document if isinstance(document, str) else json.dumps(document)
        if ELB_LOG_DELIVERY in text:
            return True
    return False


def ebs_encryption(resource: Resource, stack: Stack) -> Iterable[str]:
    if resource.type == VOLUME:
        if not _truthy(resource.inputs.get("encrypted")):
            yield "the volume is not encrypted"
        return
    # A launch template's volumes are `blockDeviceMappings[].ebs`; an instance's are `ebsBlockDevices` and its root.
    for mapping in resource.inputs.get("blockDeviceMappings") or []:
        ebs = mapping.get("ebs") or {}
        if ebs and not _truthy(ebs.get("encrypted")):
            yield f"volume {mapping.get('deviceName', '?')} is not encrypted"
    if resource.type == INSTANCE:
        for device in resource.inputs.get("ebsBlockDevices") or []:
            if not _truthy(device.get("encrypted")):
                yield f"volume {device.get('deviceName', '?')} is not encrypted"
        if not _truthy((resource.inputs.get("rootBlockDevice") or {}).get("encrypted")):
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


def account_pinned(resource: Resource, stack: Stack) -> Iterable[str]:
    """The AWS provider names the one account it may act in (`allowedAccountIds`, from the stack's `accountId`)."""
    raw = resource.inputs.get("allowedAccountIds")
    accounts = json.loads(raw) if isinstance(raw, str) and raw.startswith("[") else raw
    if not accounts:
        yield (
            "the AWS provider sets no allowedAccountIds, so the stack could be applied to any account the "
            "credentials reach; set mlstack:accountId in the stack file"
        )


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
    if resource.type == INGRESS and _is_alb_ingress(resource):
        annotations = (inputs.get("metadata") or {}).get("annotations") or {}
        attributes = annotations.get("alb.ingress.kubernetes.io/load-balancer-attributes", "")
        if "deletion_protection.enabled=true" not in str(attributes):
            yield "the ALB this Ingress creates has no deletion protection (load-balancer-attributes)"


# Issue 17: capacity that nothing uses, TLS in prod. Issue 18: authentication, Pod Identity trust, wildcard writes,
# /metrics behind a public route.

GPU_RESOURCE = "nvidia.com/gpu"
ALB = "alb.ingress.kubernetes.io"
CERTIFICATE_ARN = f"{ALB}/certificate-arn"
# The service's own authentication (service/mlstack_service/settings.py `api_keys_file`, auth.py): with this env set
# to its keys file, the inference and model routes answer 401 to a request without a valid API key.
SERVICE_AUTH_ENV = "MLSTACK_API_KEYS_FILE"
POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"
METRICS_PATH = "/metrics"
# Where each workload kind keeps its pod template.
POD_TEMPLATE_PATHS: Mapping[str, tuple[str, ...]] = {
    DEPLOYMENT: ("spec", "template"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template"),
    "kubernetes:batch/v1:Job": ("spec", "template"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template"),
    ROLLOUT: ("spec", "template"),
}


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _namespace(resource: Resource) -> str:
    return str(_dig(resource.inputs, "metadata", "namespace") or "default")


def _annotations(resource: Resource) -> Mapping[str, Any]:
    return _mapping(_dig(resource.inputs, "metadata", "annotations"))


def _labels(value: Any) -> Mapping[str, Any]:
    return _mapping(_dig(value, "metadata", "labels"))


def _pod_templates(stack: Stack) -> list[tuple[Resource, Mapping[str, Any]]]:
    """Every pod template the stack writes, with the workload that holds it."""
    found = []
    for resource in stack.of_type(*POD_TEMPLATE_PATHS):
        template = _dig(resource.inputs, *POD_TEMPLATE_PATHS[resource.type])
        if isinstance(template, Mapping):
            found.append((resource, template))
    return found


def _positive_quantity(quantity: Any) -> bool:
    try:
        return float(str(quantity)) > 0
    except ValueError:
        return bool(str(quantity).strip())


def _requests_gpu(value: Any) -> bool:
    """Whether a container's `resources.requests` or `.limits` anywhere in `value` ask for an NVIDIA GPU."""
    if isinstance(value, Mapping):
        for key in ("requests", "limits"):
            wanted = value.get(key)
            if isinstance(wanted, Mapping) and _positive_quantity(wanted.get(GPU_RESOURCE, 0)):
                return True
        return any(_requests_gpu(inner) for inner in value.values())
    if isinstance(value, list | tuple):
        return any(_requests_gpu(inner) for inner in value)
    return False


def _is_gpu_pool(node_group: Resource) -> bool:
    ami_type = str(node_group.inputs.get("amiType") or "").upper()
    taints = [_mapping(taint).get("key") for taint in _as_list(node_group.inputs.get("taints"))]
    return "NVIDIA" in ami_type or "GPU" in ami_type or GPU_RESOURCE in taints


def unused_capacity(resource: Resource, stack: Stack) -> Iterable[str]:
    """A GPU node group kept running (minSize or desiredSize >= 1) while nothing in the stack asks for a GPU.

    What asks: a container's requests or limits of `nvidia.com/gpu` in any Kubernetes object the stack writes (pod
    templates of Deployments, Jobs, CronJobs, Argo Rollouts, ...) or in a Helm release's values.
    """
    if not _is_gpu_pool(resource):
        return
    scaling = _mapping(resource.inputs.get("scalingConfig"))
    low, desired = float(scaling.get("minSize") or 0), float(scaling.get("desiredSize") or 0)
    if max(low, desired) < 1:
        return
    workloads = [other for other in stack.resources if other.type.startswith("kubernetes:")]
    if not any(_requests_gpu(other.inputs) for other in workloads):
        yield (
            f"keeps GPU nodes running (minSize {low:g}, desiredSize {desired:g}) but no workload in the stack requests "
            f"{GPU_RESOURCE}; set minSize and desiredSize to 0, or serve on the GPU"
        )


def _is_alb_ingress(ingress: Resource) -> bool:
    class_name = _dig(ingress.inputs, "spec", "ingressClassName")
    return class_name == "alb" or _annotations(ingress).get("kubernetes.io/ingress.class") == "alb"


def _internet_facing(ingress: Resource) -> bool:
    """The controller's default scheme is internal (aws-load-balancer-controller v3.5.0 docs/guide/ingress/
    annotations.md, `scheme`); the scheme an IngressClassParams sets is not read here."""
    return _is_alb_ingress(ingress) and _annotations(ingress).get(f"{ALB}/scheme") == "internet-facing"


def _listen_ports(annotations: Mapping[str, Any]) -> list[tuple[str, int]] | None:
    """(protocol, port) of each listener; the default is HTTPS 443 with a certificate-arn, else HTTP 80. None when
    the annotation is not the JSON the controller reads."""
    raw = annotations.get(f"{ALB}/listen-ports")
    if not raw:
        return [("HTTPS", 443)] if annotations.get(CERTIFICATE_ARN) else [("HTTP", 80)]
    try:
        entries = json.loads(raw) if isinstance(raw, str) else raw
        return [(str(protocol).upper(), int(port)) for entry in entries for protocol, port in entry.items()]
    except (ValueError, TypeError, AttributeError):
        return None


def _ingress_tls(ingress: Resource) -> Iterable[str]:
    annotations = _annotations(ingress)
    listeners = _listen_ports(annotations)
    if listeners is None:
        yield f"listen-ports {annotations.get(f'{ALB}/listen-ports')!r} is not a JSON list of {{protocol: port}}"
        return
    https = [port for protocol, port in listeners if protocol == "HTTPS"]
    http = [port for protocol, port in listeners if protocol == "HTTP"]
    spec = _mapping(ingress.inputs.get("spec"))
    # The controller discovers a certificate in ACM by the Ingress's TLS and rule hosts when no ARN is given
    # (v3.5.0 docs/guide/ingress/cert_discovery.md).
    hosts = [host for tls in _as_list(spec.get("tls")) for host in _as_list(_mapping(tls).get("hosts"))]
    hosts += [_mapping(rule).get("host") for rule in _as_list(spec.get("rules")) if _mapping(rule).get("host")]
    if not https:
        yield (
            "the internet-facing ALB serves plain HTTP: no HTTPS listener with a certificate; in the stack file set "
            "ingress.certificateArn (an ACM certificate you have) or ingress.domain with ingress.hostedZone (the stack "
            f"issues one), so it listens on 443 with {CERTIFICATE_ARN}"
        )
    elif not annotations.get(CERTIFICATE_ARN) and not hosts:
        yield f"listens on HTTPS {https} with no certificate: no {CERTIFICATE_ARN} and no host to discover one by"
    if https and http and not annotations.get(f"{ALB}/ssl-redirect"):
        yield f"HTTP port(s) {http} serve plain HTTP beside HTTPS; set {ALB}/ssl-redirect to the HTTPS port"


def _listener_tls(listener: Resource, stack: Stack) -> Iterable[str]:
    if str(listener.inputs.get("protocol") or "").upper() != "HTTP":
        return
    balancers = stack.related(listener, "loadBalancerArn")
    if balancers and all(_truthy(balancer.inputs.get("internal")) for balancer in balancers):
        return
    actions = [_mapping(action) for action in _as_list(listener.inputs.get("defaultActions"))]
    redirects = [
        action
        for action in actions
        if action.get("type") == "redirect" and str(_dig(action, "redirect", "protocol") or "").upper() == "HTTPS"
    ]
    if not actions or len(redirects) < len(actions):
        port = _port_text(listener.inputs.get("port"))
        yield f"listens on HTTP port {port} of an internet-facing load balancer without redirecting to HTTPS"


def tls_in_prod(resource: Resource, stack: Stack) -> Iterable[str]:
    """Internet-facing load balancers serve HTTPS and only redirect on HTTP.

    An ALB Ingress (internet-facing): an HTTPS listener (listen-ports) with a certificate (certificate-arn, or hosts
    the controller discovers one by), and ssl-redirect wherever it also listens on HTTP. An `aws.lb.Listener` on
    HTTP of a load balancer that is not internal: every default action redirects to HTTPS.
    """
    if resource.type == LISTENER:
        yield from _listener_tls(resource, stack)
    elif _internet_facing(resource):
        yield from _ingress_tls(resource)


@dataclass(frozen=True)
class _Backend:
    """Where a path of an Ingress sends a request: a Service port, or nowhere when an ALB action answers it."""

    service: str | None
    port: str | int | None


def _rollout_backends(ingress: Resource, stack: Stack) -> list[_Backend]:
    """The Services an Argo Rollout routes the Ingress's `use-annotation` action to (it writes that action itself)."""
    backends = []
    for rollout in stack.of_type(ROLLOUT):
        canary = _mapping(_dig(rollout.inputs, "spec", "strategy", "canary"))
        alb = _mapping(_dig(canary, "trafficRouting", "alb"))
        names = [alb.get("ingress"), *_as_list(alb.get("ingresses"))]
        if _namespace(rollout) == _namespace(ingress) and _ingress_name(ingress) in names:
            services = [canary.get("stableService"), canary.get("canaryService")]
            port = alb.get("servicePort")
            backends += [_Backend(str(service), port) for service in services if service]
    return backends


def _ingress_name(ingress: Resource) -> str:
    return str(_dig(ingress.inputs, "metadata", "name") or ingress.name)


def _resolve(ingress: Resource, backend: Any, stack: Stack) -> list[_Backend] | None:
    """The Service ports an Ingress backend reaches; [] when an ALB action answers; None when unknown."""
    service = _mapping(_mapping(backend).get("service"))
    if not service:
        return None
    name = str(service.get("name") or "")
    port = _mapping(service.get("port"))
    if port.get("name") != "use-annotation":
        return [_Backend(name, port.get("number", port.get("name")))]
    raw = _annotations(ingress).get(f"{ALB}/actions.{name}")
    if raw is None:
        return _rollout_backends(ingress, stack) or None
    try:
        action = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None
    if _mapping(action).get("type") != "forward":
        return []  # fixed-response or redirect: the ALB answers itself
    groups = [_mapping(group) for group in _as_list(_dig(action, "forwardConfig", "targetGroups"))]
    if any(not group.get("serviceName") for group in groups):
        return None  # a target group given by ARN: not a Service of this stack
    return [_Backend(str(group["serviceName"]), group.get("servicePort")) for group in groups]


def _port_text(port: str | int | float | None) -> str:
    """A port as written: the engine hands numbers over as floats."""
    return f"{port:g}" if isinstance(port, float) else str(port)


def _service(namespace: str, name: str | None, stack: Stack) -> Resource | None:
    return next(
        (
            service
            for service in stack.of_type(SERVICE)
            if _namespace(service) == namespace and _dig(service.inputs, "metadata", "name") == name
        ),
        None,
    )


def _same_number(left: Any, right: Any) -> bool:
    """80, 80.0 and "80" name the same port (the engine hands numbers over as floats)."""
    try:
        return float(left) == float(right)
    except (TypeError, ValueError):
        return False


def _service_port(service: Resource, port: str | int | None) -> Mapping[str, Any] | None:
    for entry in map(_mapping, _as_list(_dig(service.inputs, "spec", "ports"))):
        if port is not None and (entry.get("name") == port or _same_number(entry.get("port"), port)):
            return entry
    return None


def _selected_templates(service: Resource, stack: Stack) -> list[Mapping[str, Any]]:
    """The pod templates whose labels the Service selects, in its namespace."""
    selector = _mapping(_dig(service.inputs, "spec", "selector"))
    if not selector:
        return []
    return [
        template
        for workload, template in _pod_templates(stack)
        if _namespace(workload) == _namespace(service)
        and all(_labels(template).get(key) == value for key, value in selector.items())
    ]


def _ingress_backends(ingress: Resource, stack: Stack) -> list[_Backend] | None:
    """Every Service port the Ingress can send a request to; None when one of them cannot be known."""
    spec = _mapping(ingress.inputs.get("spec"))
    backends = [spec["defaultBackend"]] if spec.get("defaultBackend") else []
    for rule in _as_list(spec.get("rules")):
        backends += [_mapping(path).get("backend") for path in _as_list(_dig(rule, "http", "paths"))]
    resolved: list[_Backend] = []
    for backend in backends:
        targets = _resolve(ingress, backend, stack)
        if targets is None:
            return None
        resolved += targets
    return resolved


def _alb_authentication_gap(annotations: Mapping[str, Any]) -> str | None:
    """None when the ALB authenticates every request before it forwards; otherwise what is missing."""
    if annotations.get(f"{ALB}/jwt-validation"):
        return None
    kind = str(annotations.get(f"{ALB}/auth-type") or "none").lower()
    if kind not in ("oidc", "cognito"):
        return "the ALB authenticates no one (auth-type none)"
    if not annotations.get(f"{ALB}/auth-idp-{kind}"):
        return f"auth-type {kind} has no {ALB}/auth-idp-{kind} configuration"
    if str(annotations.get(f"{ALB}/auth-on-unauthenticated-request") or "").lower() == "allow":
        return "auth-on-unauthenticated-request is allow: unauthenticated requests are forwarded"
    return None


def _service_authenticates(template: Mapping[str, Any]) -> bool:
    containers = [_mapping(container) for container in _as_list(_dig(template, "spec", "containers"))]
    for container in containers:
        for variable in map(_mapping, _as_list(container.get("env"))):
            if variable.get("name") == SERVICE_AUTH_ENV and str(variable.get("value") or "").strip():
                return True
    return False


def authenticated_ingress(resource: Resource, stack: Stack) -> Iterable[str]:
    """An internet-facing ALB Ingress authenticates every request, at the ALB or in every pod behind it.

    Counts as authentication:
    - at the ALB (aws-load-balancer-controller v3.5.0 docs/guide/ingress/annotations.md, "Authentication" and
      "Token Validation"): `auth-type` oidc or cognito with its `auth-idp-oidc` / `auth-idp-cognito` configuration,
      and `auth-on-unauthenticated-request` not `allow`; or `jwt-validation`;
    - in the service: every pod template behind every backend (Service selector, or the Services of the Argo
      Rollout that routes the Ingress) has a container whose env sets `MLSTACK_API_KEYS_FILE` (the service's API
      keys, service/mlstack_service/auth.py) to a path, as a plain value. A backend whose pods the stack does not
      write (a chart's Service, a target group by ARN) cannot show that, so it needs the ALB's.
    """
    if not _internet_facing(resource):
        return
    gap = _alb_authentication_gap(_annotations(resource))
    if gap is None:
        return
    backends = _ingress_backends(resource, stack)
    if backends is None:
        yield f"{gap}, and a backend's pods are not in the stack to show their own ({SERVICE_AUTH_ENV})"
        return
    unauthenticated = []
    for backend in backends:
        service = _service(_namespace(resource), backend.service, stack)
        templates = _selected_templates(service, stack) if service else []
        if not templates or not all(_service_authenticates(template) for template in templates):
            unauthenticated.append(str(backend.service))
    if unauthenticated or not backends:
        names = ", ".join(sorted(set(unauthenticated))) or "no backend"
        yield f"{gap}, and the pods behind {names} do not set {SERVICE_AUTH_ENV}: the internet reaches them unchecked"


def _document(raw: Any) -> Mapping[str, Any]:
    """A policy document given as JSON text (as Pulumi passes it) or as an object."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return _mapping(raw)


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [_mapping(statement) for statement in _as_list(document.get("Statement"))]


def _condition_keys(statement: Mapping[str, Any]) -> set[str]:
    """Every condition key of a statement, lower-cased (IAM compares condition keys case-insensitively)."""
    return {str(key).lower() for block in _mapping(statement.get("Condition")).values() for key in _mapping(block)}


# The conditions AWS documents for a Pod Identity role's trust (EKS User Guide pod-id-role.html, pod-id-abac.html):
# the account, and the session tags Pod Identity sets (cluster, namespace, service account).
POD_IDENTITY_CONDITIONS: Mapping[str, tuple[str, ...]] = {
    "the account (aws:SourceAccount)": ("aws:sourceaccount",),
    "the cluster (aws:RequestTag/eks-cluster-arn or -name, or aws:SourceArn)": (
        "aws:requesttag/eks-cluster-arn",
        "aws:requesttag/eks-cluster-name",
        "aws:sourcearn",
    ),
    "the namespace (aws:RequestTag/kubernetes-namespace)": ("aws:requesttag/kubernetes-namespace",),
    "the service account (aws:RequestTag/kubernetes-service-account)": ("aws:requesttag/kubernetes-service-account",),
}


def pod_identity_trust(resource: Resource, stack: Stack) -> Iterable[str]:
    """A role EKS Pod Identity may assume names the account, cluster, namespace and service account it serves;
    without them any Pod Identity association in the account could be pointed at it."""
    for index, statement in enumerate(_statements(_document(resource.inputs.get("assumeRolePolicy")))):
        services = _as_list(_dig(statement, "Principal", "Service"))
        if statement.get("Effect") != "Allow" or POD_IDENTITY_SERVICE not in services:
            continue
        keys = _condition_keys(statement)
        missing = [what for what, accepted in POD_IDENTITY_CONDITIONS.items() if not keys.intersection(accepted)]
        if missing:
            sid = statement.get("Sid") or f"#{index}"
            yield (
                f"trust statement {sid} lets {POD_IDENTITY_SERVICE} assume the role with no condition on "
                f"{', '.join(missing)}"
            )


READ_VERBS = ("get", "list", "describe")
# Read-only actions whose names start with none of the verbs above (their access level is Read in the Service
# Authorization Reference).
READ_ONLY_ACTIONS = frozenset({"ecr:batchgetimage", "ecr:batchchecklayeravailability"})
# Write actions that support no resource-level permissions: the Service Authorization Reference lists no resource
# type for them, so a policy can only grant them on "*". Each is allowed on "*" here, and nothing else is.
WRITES_WITHOUT_RESOURCE_TYPES: Mapping[str, str] = {
    # list_awsshield.html, CreateProtection: "Resource types: (none)"; the LB controller's upstream policy grants it
    # for the shield-advanced-protection annotation.
    "shield:createprotection": "AWS Shield CreateProtection",
    # list_ssmmessages.html: none of the four channel actions has a resource type; the SSM agent opens Session
    # Manager's channels with them (AWS managed policy AmazonSSMManagedInstanceCore v2, statement 2).
    "ssmmessages:createcontrolchannel": "Session Manager control channel",
    "ssmmessages:createdatachannel": "Session Manager data channel",
    "ssmmessages:opencontrolchannel": "Session Manager control channel",
    "ssmmessages:opendatachannel": "Session Manager data channel",
}
# Condition keys that bound which resources a statement reaches, so a `*` under them is not every resource: tags the
# resource carries or is created with, the VPC an EC2 resource is in, the one service a service-linked role is for,
# the service a KMS key is used through. Under `Null`, a key bounds only when it must be present ("false").
SCOPING_CONDITION_KEYS = (
    "aws:resourcetag/",
    "aws:requesttag/",
    "ec2:resourcetag/",
    "ec2:vpc",
    "iam:awsservicename",
    "kms:viaservice",
)


def is_write_action(action: str) -> bool:
    """Anything but Get*/List*/Describe* (and the explicitly read-only); a wildcard verb can be anything."""
    verb = action.split(":", 1)[-1].lower()
    if action.lower() in READ_ONLY_ACTIONS:
        return False
    return not verb.startswith(READ_VERBS)


def _is_wildcard_resource(resource: Any) -> bool:
    text = str(resource)
    return text == "*" or (text.startswith("arn:") and text.split(":", 5)[-1] == "*" and text.count(":") >= 5)


def _scoped_by_condition(statement: Mapping[str, Any]) -> bool:
    for operator, block in _mapping(statement.get("Condition")).items():
        for key, value in _mapping(block).items():
            if not str(key).lower().startswith(SCOPING_CONDITION_KEYS):
                continue
            if str(operator).lower().startswith("null") and str(value).lower() != "false":
                continue
            return True
    return False


def _policy_documents(resource: Resource) -> list[tuple[str, Mapping[str, Any]]]:
    """The permission policies a resource creates, named for the message."""
    if resource.type == ROLE:
        return [
            (str(_mapping(inline).get("name") or f"inline #{index}"), _document(_mapping(inline).get("policy")))
            for index, inline in enumerate(_as_list(resource.inputs.get("inlinePolicies")))
        ]
    return [("policy", _document(resource.inputs.get("policy")))]


def no_wildcard_write(resource: Resource, stack: Stack) -> Iterable[str]:
    """No permission policy the stack creates allows a write action on every resource.

    Write: any action but Get*/List*/Describe* and the explicitly read-only (READ_ONLY_ACTIONS); `NotAction` counts
    as write. Every resource: `Resource` "*" (or an ARN whose resource part is "*") or any `NotResource`. A statement
    is bounded when a condition scopes it by tag, by VPC, by the service a service-linked role is for, or by the
    service a KMS key is used through (SCOPING_CONDITION_KEYS). The only writes allowed on "*" unbounded are those
    the Service Authorization Reference gives no resource type (WRITES_WITHOUT_RESOURCE_TYPES, each cited).
    """
    for where, document in _policy_documents(resource):
        for index, statement in enumerate(_statements(document)):
            if statement.get("Effect") != "Allow" or _scoped_by_condition(statement):
                continue
            everywhere = "NotResource" in statement or any(
                _is_wildcard_resource(item) for item in _as_list(statement.get("Resource"))
            )
            if not everywhere:
                continue
            if "NotAction" in statement:
                writes = [f"everything but {_as_list(statement['NotAction'])}"]
            else:
                writes = [
                    str(action)
                    for action in _as_list(statement.get("Action"))
                    if is_write_action(str(action)) and str(action).lower() not in WRITES_WITHOUT_RESOURCE_TYPES
                ]
            if writes:
                sid = statement.get("Sid") or f"#{index}"
                yield f'{where} statement {sid} allows {", ".join(writes)} on every resource ("*")'


def _path_order(path: Mapping[str, Any]) -> tuple[int, int]:
    """How the controller orders an Ingress rule's paths (v3.5.0 pkg/ingress/model_build_listener_rules.go,
    sortIngressPaths): Exact first, then Prefix longest first, then ImplementationSpecific as listed."""
    kind = path.get("pathType") or "ImplementationSpecific"
    if kind == "Exact":
        return (0, 0)
    if kind == "Prefix":
        return (1, -len(str(path.get("path") or "")))
    return (2, 0)


def _matches(path: Mapping[str, Any], request_path: str) -> bool:
    kind = path.get("pathType") or "ImplementationSpecific"
    pattern = str(path.get("path") or "/")
    if kind == "Exact":
        return pattern == request_path
    if kind == "Prefix":
        prefix = pattern.rstrip("/")
        return prefix in ("", request_path) or request_path.startswith(prefix + "/")
    return fnmatch.fnmatchcase(request_path, pattern)  # an ALB path pattern: * and ? wildcards


def _reaching(ingress: Resource, request_path: str) -> list[Any]:
    """The backend each host's rules send `request_path` to (the default backend where no path matches)."""
    spec = _mapping(ingress.inputs.get("spec"))
    reached = []
    for rule in _as_list(spec.get("rules")) or [{}]:
        paths = sorted((_mapping(path) for path in _as_list(_dig(rule, "http", "paths"))), key=_path_order)
        match = next((path for path in paths if _matches(path, request_path)), None)
        backend = match.get("backend") if match else spec.get("defaultBackend")
        if backend:
            reached.append(backend)
    return reached


def _metrics_scrapes(service: Resource, port: Mapping[str, Any], stack: Stack) -> str | None:
    """Why a Service port serves /metrics: it is named for metrics, or a ServiceMonitor scrapes /metrics there."""
    name, target = port.get("name"), port.get("targetPort")
    if "metrics" in str(name or "") or "metrics" in str(target or ""):
        return f"port {name or port.get('port')} is named for metrics"
    labels = _labels(service.inputs)
    for monitor in stack.of_type(SERVICE_MONITOR):
        spec = _mapping(monitor.inputs.get("spec"))
        names = _as_list(_dig(spec, "namespaceSelector", "matchNames"))
        anywhere = _truthy(_dig(spec, "namespaceSelector", "any"))
        if not (anywhere or _namespace(service) in (names or [_namespace(monitor)])):
            continue
        selector = _mapping(_dig(spec, "selector", "matchLabels"))
        if not all(labels.get(key) == value for key, value in selector.items()):
            continue
        for endpoint in map(_mapping, _as_list(spec.get("endpoints"))):
            same_port = (name and endpoint.get("port") == name) or (
                endpoint.get("targetPort") is not None and endpoint.get("targetPort") == target
            )
            if same_port and (endpoint.get("path") or METRICS_PATH) == METRICS_PATH:
                return f"ServiceMonitor {_dig(monitor.inputs, 'metadata', 'name') or monitor.name} scrapes it"
    return None


def no_public_metrics(resource: Resource, stack: Stack) -> Iterable[str]:
    """An internet-facing Ingress sends /metrics to no Service port that serves metrics.

    A port serves /metrics when it is named for metrics (port name or target port) or a ServiceMonitor scrapes
    /metrics on it. /metrics follows the controller's path order per host; an ALB action (fixed-response, redirect)
    ahead of the catch-all keeps it from the Service. The Services an Argo Rollout routes through count as backends.
    """
    if not _internet_facing(resource):
        return
    for backend in _reaching(resource, METRICS_PATH):
        for target in _resolve(resource, backend, stack) or []:
            service = _service(_namespace(resource), target.service, stack)
            port = _service_port(service, target.port) if service else None
            why = _metrics_scrapes(service, port, stack) if service and port else None
            if why:
                yield (
                    f"{METRICS_PATH} on the internet-facing ALB reaches Service {target.service} port "
                    f"{_port_text(target.port)}, "
                    f"which serves metrics ({why}); serve them on an internal port or answer {METRICS_PATH} at the ALB"
                )


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
    Rule("unused-capacity", "No GPU nodes kept running that no workload requests", (NODE_GROUP,), unused_capacity,
         tiers=("prod",)),
    Rule("unused-capacity-warning", "No GPU nodes kept running that no workload requests (a warning before prod)",
         (NODE_GROUP,), unused_capacity, tiers=("dev", "staging"), level=ADVISORY),
    # Mandatory: a prod stack names its certificate (ingress.certificateArn) or a domain and Route 53 zone for which
    # the stack issues one (ingress.domain, ingress.hostedZone); README "HTTPS and certificates".
    Rule("tls-in-prod", "Internet-facing load balancers serve HTTPS, and HTTP only redirects", (INGRESS, LISTENER),
         tls_in_prod, tiers=("prod",)),
    # Advisory until the stack file names its account: only its owner knows the account id (README "Security model").
    Rule("account-pinned", "Prod's AWS provider may act in one named account only", (AWS_PROVIDER,), account_pinned,
         tiers=("prod",), level=ADVISORY),
    Rule("authenticated-ingress", "Internet-facing Ingresses authenticate every request", (INGRESS,),
         authenticated_ingress, tiers=("prod",)),
    Rule("pod-identity-trust-conditions", "Pod Identity roles trust one account, cluster, namespace, service account",
         (ROLE,), pod_identity_trust),
    # Mandatory in prod, a warning elsewhere (the account bootstrap included, whose deploy role creates what a stack
    # holds before any ARN exists).
    Rule("no-wildcard-write", "No write action allowed on every resource",
         (ROLE, ROLE_POLICY, MANAGED_POLICY, USER_POLICY, GROUP_POLICY), no_wildcard_write, tiers=("prod",)),
    Rule("no-wildcard-write-warning", "No write action allowed on every resource (a warning outside prod)",
         (ROLE, ROLE_POLICY, MANAGED_POLICY, USER_POLICY, GROUP_POLICY), no_wildcard_write, level=ADVISORY,
         skip_tiers=("prod",)),
    Rule("no-public-metrics", "/metrics is not reachable through an internet-facing Ingress", (INGRESS,),
         no_public_metrics),
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
