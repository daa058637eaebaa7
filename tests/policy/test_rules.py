"""Every branch of every policy rule is broken by a fixture, and every rule has inputs that keep it, through both
engines: the offline check that `mlstack preview` runs and the CrossGuard pack (pulumi_policy, in the pack's own
environment). The two must report the same violations, at the same level.

BRANCHES below is the inventory: for each rule, each way it can be violated (one `if` that yields, or one kind of
input an `if` reads). A test asserts that each entry has a breaking fixture, that the fixture breaks that rule and
no other, and that the message names the branch (its `expect` text), so a fixture that trips a different branch of
the same rule does not count. KEEPING holds, per rule, inputs that pass every rule, including each alternative a
rule accepts (a certificate found by host, authentication at the ALB or in the pods, an action answering /metrics).
"""

import json
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pytest

from infra.policy.rules import (
    ADVISORY,
    AUTOSCALER,
    AWS_PROVIDER,
    BUCKET,
    BUCKET_ENCRYPTION,
    CLUSTER,
    DEPLOYMENT,
    GROUP_POLICY,
    INGRESS,
    INGRESS_RULE,
    INSTANCE,
    KMS_KEY,
    LAUNCH_TEMPLATE,
    LEGACY_RULE,
    LISTENER,
    LOAD_BALANCER,
    MANAGED_POLICY,
    MANDATORY,
    NAT_GATEWAY,
    NODE_GROUP,
    REPOSITORY,
    ROLE,
    ROLE_POLICY,
    ROLLOUT,
    RULES,
    SECURITY_GROUP,
    SERVICE,
    SERVICE_MONITOR,
    SUBNET,
    USER_POLICY,
    VOLUME,
    VPC,
    Resource,
    Stack,
    evaluate,
    is_write_action,
    tier_of,
)
from tests.conftest import REPO_ROOT

POLICY_PYTHON = REPO_ROOT / ".venv-policy" / "bin" / "python"
TAGS = {"project": "p", "environment": "e", "owner": "o", "cost-center": "c", "managed-by": "pulumi"}
ALB = "alb.ingress.kubernetes.io"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0f3c1e2a"
CLUSTER_ARN = "arn:aws:eks:us-east-1:123456789012:cluster/mlstack-prod"


def _provider(tier: str, accounts: list[str] | None = None, **tags: str) -> Resource:
    default_tags = json.dumps({"tags": {**TAGS, "tier": tier, **tags}})
    inputs = {"defaultTags": default_tags}
    allowed = ["123456789012"] if accounts is None else accounts
    if allowed:
        inputs["allowedAccountIds"] = json.dumps(allowed)
    return Resource(f"urn:{AWS_PROVIDER}::aws", AWS_PROVIDER, "aws", inputs)


def _resource(kind: str, name: str, inputs: dict[str, Any], **extra: Any) -> Resource:
    return Resource(f"urn:{kind}::{name}", kind, name, inputs, **extra)


# --- network exposure ---------------------------------------------------------------------------------------------


def _group(role: str = "load-balancer", ingress: list[dict[str, Any]] | None = None) -> Resource:
    inputs: dict[str, Any] = {"tags": {"role": role}}
    if ingress is not None:
        inputs["ingress"] = ingress
    return _resource(SECURITY_GROUP, f"group-{role}", inputs)


def _ingress(port: int, cidr: str, group_role: str = "load-balancer", to_port: int | None = None) -> list[Resource]:
    group = _group(group_role)
    address = {"cidrIpv6": cidr} if ":" in cidr else {"cidrIpv4": cidr}
    rule = _resource(
        INGRESS_RULE,
        "rule",
        {"ipProtocol": "tcp", "fromPort": port, "toPort": to_port or port, **address},
        property_dependencies={"securityGroupId": [group.urn]},
    )
    return [group, rule]


def _legacy(port: int, cidrs: list[str], kind: str = "ingress", protocol: str = "tcp") -> list[Resource]:
    group = _group()
    key = "ipv6CidrBlocks" if ":" in cidrs[0] else "cidrBlocks"
    rule = _resource(
        LEGACY_RULE,
        "legacy-rule",
        {"type": kind, "protocol": protocol, "fromPort": port, "toPort": port, key: cidrs},
        property_dependencies={"securityGroupId": [group.urn]},
    )
    return [group, rule]


def _inline(port: int, cidr: str, protocol: str = "tcp", role: str = "load-balancer") -> list[Resource]:
    return [_group(role, [{"protocol": protocol, "fromPort": port, "toPort": port, "cidrBlocks": [cidr]}])]


# --- encryption, instances, registry, cluster --------------------------------------------------------------------


def _bucket(algorithm: str | None, attached: bool = True) -> list[Resource]:
    bucket = _resource(BUCKET, "bucket", {}, protect=True)
    if algorithm is None:
        return [bucket]
    other = _resource(BUCKET, "other-bucket", {}, protect=True)
    rules = [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": algorithm}}]
    target = bucket if attached else other
    encryption = _resource(BUCKET_ENCRYPTION, "sse", {"rules": rules}, property_dependencies={"bucket": [target.urn]})
    return [bucket, encryption] if attached else [bucket, other, encryption]


def _template(encrypted: str | None, tokens: str | None = "required") -> list[Resource]:
    ebs: dict[str, Any] = {"volumeSize": 30}
    if encrypted is not None:
        ebs["encrypted"] = encrypted
    inputs: dict[str, Any] = {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": ebs}]}
    if tokens is not None:
        inputs["metadataOptions"] = {"httpTokens": tokens}
    return [_resource(LAUNCH_TEMPLATE, "lt", inputs)]


def _instance(root: bool = True, data: bool = True, tokens: str | None = "required") -> list[Resource]:
    inputs: dict[str, Any] = {
        "rootBlockDevice": {"encrypted": root, "volumeSize": 30},
        "ebsBlockDevices": [{"deviceName": "/dev/sdf", "encrypted": data, "volumeSize": 100}],
    }
    if tokens is not None:
        inputs["metadataOptions"] = {"httpTokens": tokens}
    return [_resource(INSTANCE, "host", inputs)]


def _repository(kms: bool | None, scan: bool | None, protect: bool = True) -> list[Resource]:
    inputs: dict[str, Any] = {}
    if kms is not None:
        inputs["encryptionConfigurations"] = [{"encryptionType": "KMS" if kms else "AES256"}]
    if scan is not None:
        inputs["imageScanningConfiguration"] = {"scanOnPush": scan}
    return [_resource(REPOSITORY, "repo", inputs, protect=protect)]


def _cluster(secrets: bool | None, deletion_protection: bool = True, protect: bool = True) -> list[Resource]:
    inputs: dict[str, Any] = {"deletionProtection": deletion_protection}
    if secrets is not None:
        inputs["encryptionConfig"] = {"resources": ["secrets"] if secrets else [], "provider": {"keyArn": "arn"}}
    return [_resource(CLUSTER, "cluster", inputs, protect=protect)]


def _network(zones: int, gateways: int) -> list[Resource]:
    subnets = [_resource(SUBNET, f"private-{z}", {"availabilityZone": f"us-east-1{'abc'[z]}"}) for z in range(zones)]
    nats = [_resource(NAT_GATEWAY, f"nat-{n}", {}) for n in range(gateways)]
    return [_resource(VPC, "vpc", {}), *subnets, *nats]


# --- workloads ----------------------------------------------------------------------------------------------------

SERVICE_LABELS = {"app.kubernetes.io/name": "model-service"}


def _autoscaled_rollout(min_replicas: int) -> list[Resource]:
    return [
        _resource(ROLLOUT, "model-service-rollout", {"metadata": {"labels": SERVICE_LABELS}, "spec": {}}),
        _resource(
            AUTOSCALER,
            "model-service-hpa",
            {"metadata": {"labels": SERVICE_LABELS}, "spec": {"minReplicas": min_replicas}},
        ),
    ]


def _replicas(kind: str, replicas: int) -> list[Resource]:
    return [_resource(kind, "model-service", {"metadata": {"labels": SERVICE_LABELS}, "spec": {"replicas": replicas}})]


def _pod_template(labels: dict[str, str], env: list[dict[str, Any]] | None = None, gpu: bool = False) -> dict[str, Any]:
    limits = {"cpu": "1", "memory": "1Gi", **({"nvidia.com/gpu": "1"} if gpu else {})}
    container = {"name": "app", "image": "app:1", "env": env or [], "resources": {"limits": limits}}
    return {"metadata": {"labels": labels}, "spec": {"containers": [container]}}


def _workload(
    name: str = "api", env: list[dict[str, Any]] | None = None, kind: str = DEPLOYMENT, gpu: bool = False
) -> Resource:
    labels = {"app": name}
    spec = {"replicas": 2, "selector": {"matchLabels": labels}, "template": _pod_template(labels, env, gpu)}
    return _resource(
        kind, f"{name}-{kind.rsplit(':', 1)[-1].lower()}", {"metadata": {"name": name, "namespace": "ml"}, "spec": spec}
    )


def _service(
    name: str = "api", selector: str = "api", port_name: str = "http", labels: dict[str, str] | None = None
) -> Resource:
    return _resource(
        SERVICE,
        f"{name}-service",
        {
            "metadata": {"name": name, "namespace": "ml", "labels": labels or {"app": selector}},
            "spec": {
                "selector": {"app": selector},
                "ports": [{"name": port_name, "port": 80.0, "targetPort": port_name}],
            },
        },
    )


def _node_group(ami_type: str, min_size: int, desired: int, taints: list[dict[str, str]] | None = None) -> Resource:
    inputs: dict[str, Any] = {
        "amiType": ami_type,
        "scalingConfig": {"minSize": float(min_size), "maxSize": 4.0, "desiredSize": float(desired)},
    }
    if taints:
        inputs["taints"] = taints
    return _resource(NODE_GROUP, f"pool-{ami_type.lower()}", inputs)


GPU_AMI = "AL2023_x86_64_NVIDIA"
CPU_AMI = "AL2023_x86_64_STANDARD"
GPU_TAINT = [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]

# --- the edge: Ingress, listeners ---------------------------------------------------------------------------------

PROTECTED_ALB = {f"{ALB}/load-balancer-attributes": "deletion_protection.enabled=true"}
HTTPS = {
    f"{ALB}/listen-ports": '[{"HTTP": 80}, {"HTTPS": 443}]',
    f"{ALB}/certificate-arn": CERTIFICATE,
    f"{ALB}/ssl-redirect": "443",
}
OIDC = {
    f"{ALB}/auth-type": "oidc",
    f"{ALB}/auth-idp-oidc": '{"issuer":"https://idp.example.com","secretName":"oidc"}',
}


def _alb_ingress(
    annotations: dict[str, str],
    *,
    scheme: str = "internet-facing",
    paths: list[dict[str, Any]] | None = None,
    spec: dict[str, Any] | None = None,
    name: str = "api",
) -> Resource:
    """An ALB Ingress with exactly the annotations given (plus its scheme); paths default to / -> Service api:80."""
    backend = {"service": {"name": "api", "port": {"number": 80}}}
    default_paths = [{"path": "/", "pathType": "Prefix", "backend": backend}]
    body = {"ingressClassName": "alb", "rules": [{"http": {"paths": paths or default_paths}}], **(spec or {})}
    metadata = {"name": name, "namespace": "ml", "annotations": {f"{ALB}/scheme": scheme, **annotations}}
    return _resource(INGRESS, f"{name}-ingress", {"metadata": metadata, "spec": body})


def _edge(annotations: dict[str, str], **kwargs: Any) -> list[Resource]:
    """A prod ALB Ingress that keeps every rule but the ones `annotations` break, with its Service and pods."""
    return [_alb_ingress({**PROTECTED_ALB, **annotations}, **kwargs), _service(), _workload()]


def _listener(protocol: str, actions: list[dict[str, Any]], internal: bool = False) -> list[Resource]:
    balancer = _resource(LOAD_BALANCER, "alb", {"internal": internal, "enableDeletionProtection": True})
    listener = _resource(
        LISTENER,
        "listener",
        {"protocol": protocol, "port": 80.0, "defaultActions": actions},
        property_dependencies={"loadBalancerArn": [balancer.urn]},
    )
    return [balancer, listener]


FORWARD = [{"type": "forward", "targetGroupArn": "arn:tg"}]
TO_HTTPS = [{"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}]
AUTH_ENV = [{"name": "MLSTACK_API_KEYS_FILE", "value": "/etc/mlstack/keys/api-keys"}]


def _canary(env: list[dict[str, Any]] | None) -> list[Resource]:
    """The model service's shape: an Ingress whose action Argo Rollouts writes, its stable and canary Services."""
    labels = {"app": "model"}
    rollout_spec = {
        "selector": {"matchLabels": labels},
        "template": _pod_template(labels, env),
        "strategy": {
            "canary": {
                "stableService": "model",
                "canaryService": "model-canary",
                "trafficRouting": {"alb": {"ingress": "model", "servicePort": 80}},
            }
        },
    }
    action = {"service": {"name": "model", "port": {"name": "use-annotation"}}}
    return [
        _alb_ingress(
            {**PROTECTED_ALB, **HTTPS}, name="model", paths=[{"path": "/", "pathType": "Prefix", "backend": action}]
        ),
        _resource(ROLLOUT, "model-rollout", {"metadata": {"name": "model", "namespace": "ml"}, "spec": rollout_spec}),
        _service("model", "model"),
        _service("model-canary", "model"),
    ]


# --- IAM ------------------------------------------------------------------------------------------------------------


def _trust(principal: dict[str, Any], condition: dict[str, Any] | None = None) -> list[Resource]:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": principal,
        "Action": ["sts:AssumeRole", "sts:TagSession"],
    }
    if condition is not None:
        statement["Condition"] = condition
    document = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    return [_resource(ROLE, "role", {"assumeRolePolicy": document})]


POD_IDENTITY = {"Service": "pods.eks.amazonaws.com"}
ALL_TRUST_CONDITIONS = {
    "StringEquals": {
        "aws:SourceAccount": "123456789012",
        "aws:RequestTag/eks-cluster-arn": CLUSTER_ARN,
        "aws:RequestTag/kubernetes-namespace": "mlstack",
        "aws:RequestTag/kubernetes-service-account": "model-service",
    }
}


def _without(*keys: str) -> dict[str, Any]:
    return {"StringEquals": {k: v for k, v in ALL_TRUST_CONDITIONS["StringEquals"].items() if k not in keys}}


def _policy(statements: Any, kind: str = ROLE_POLICY) -> list[Resource]:
    document = json.dumps({"Version": "2012-10-17", "Statement": statements})
    if kind == ROLE:
        return [
            _resource(
                ROLE, "role", {"assumeRolePolicy": "{}", "inlinePolicies": [{"name": "inline", "policy": document}]}
            )
        ]
    return [_resource(kind, "policy", {"policy": document})]


def _allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


# --- metrics --------------------------------------------------------------------------------------------------------

MONITOR = _resource(
    SERVICE_MONITOR,
    "monitor",
    {
        "metadata": {"name": "api", "namespace": "monitoring"},
        "spec": {
            "namespaceSelector": {"matchNames": ["ml"]},
            "selector": {"matchLabels": {"app": "api"}},
            "endpoints": [{"port": "http", "path": "/metrics"}],
        },
    },
)
FIXED_404 = {f"{ALB}/actions.not-found": '{"type":"fixed-response","fixedResponseConfig":{"statusCode":"404"}}'}
NOT_FOUND = {"service": {"name": "not-found", "port": {"name": "use-annotation"}}}
TO_API = {"service": {"name": "api", "port": {"number": 80}}}


def _metrics(
    annotations: dict[str, str] | None = None, paths: list[dict[str, Any]] | None = None, **kwargs: Any
) -> list[Resource]:
    """A dev Ingress in front of Service api, whose port `http` the ServiceMonitor scrapes at /metrics."""
    return [_alb_ingress(annotations or {}, paths=paths, **kwargs), _service(), _workload(), MONITOR]


@dataclass(frozen=True)
class Case:
    rule: str
    branch: str
    tier: str
    build: Callable[[], list[Resource]]
    expect: str = ""  # text the violation's message carries, naming the branch


B = Case
# rule -> every way it can be violated; each (rule, branch) has exactly one breaking fixture below.
BRANCHES: tuple[Case, ...] = (
    B("no-world-ingress", "vpc rule, IPv4 world", "dev", lambda: _ingress(8080, "0.0.0.0/0"), "port 8080 to 0.0.0.0/0"),
    B("no-world-ingress", "vpc rule, IPv6 world", "dev", lambda: _ingress(8080, "::/0"), "port 8080 to ::/0"),
    B(
        "no-world-ingress",
        "another spelling of every address",
        "dev",
        lambda: _ingress(8080, "10.1.2.3/0"),
        "10.1.2.3/0",
    ),
    B("no-world-ingress", "a port range", "dev", lambda: _ingress(8000, "0.0.0.0/0", to_port=9000), "ports 8000-9000"),
    B("no-world-ingress", "legacy SecurityGroupRule, IPv4", "dev", lambda: _legacy(3000, ["0.0.0.0/0"]), "port 3000"),
    B("no-world-ingress", "legacy SecurityGroupRule, IPv6", "dev", lambda: _legacy(3000, ["::/0"]), "to ::/0"),
    B("no-world-ingress", "inline ingress on a SecurityGroup", "dev", lambda: _inline(5432, "0.0.0.0/0"), "port 5432"),
    B(
        "no-world-ingress",
        "web port on a group other than the load balancers'",
        "dev",
        lambda: _ingress(443, "0.0.0.0/0", group_role="workload"),
        "other than the load balancers'",
    ),
    B("no-ssh", "vpc rule", "dev", lambda: _ingress(22, "203.0.113.0/24"), "port 22 to 203.0.113.0/24"),
    B("no-ssh", "legacy SecurityGroupRule", "dev", lambda: _legacy(22, ["10.0.0.0/8"]), "port 22 to 10.0.0.0/8"),
    B(
        "no-ssh",
        "inline ingress on a SecurityGroup",
        "dev",
        lambda: _inline(22, "10.0.0.0/8", role="workload"),
        "port 22",
    ),
    B("no-ssh", "a range that spans 22", "dev", lambda: _ingress(20, "10.0.0.0/8", "workload", to_port=25), "port 22"),
    B("no-ssh", "every protocol (-1)", "dev", lambda: _legacy(0, ["10.0.0.0/8"], protocol="-1"), "port 22"),
    B("s3-encryption", "no encryption configuration", "dev", lambda: _bucket(None), "no default encryption"),
    B("s3-encryption", "SSE-S3 instead of KMS", "dev", lambda: _bucket("AES256"), "no default encryption"),
    B(
        "s3-encryption",
        "a KMS configuration of another bucket",
        "dev",
        lambda: _bucket("aws:kms", attached=False),
        "no default encryption",
    ),
    B("ebs-encryption", "launch template volume encrypted false", "dev", lambda: _template("false"), "/dev/xvda"),
    B("ebs-encryption", "launch template volume without encrypted", "dev", lambda: _template(None), "/dev/xvda"),
    B("ebs-encryption", "instance root volume", "dev", lambda: _instance(root=False), "root volume"),
    B("ebs-encryption", "instance EBS block device", "dev", lambda: _instance(data=False), "/dev/sdf"),
    B(
        "ebs-encryption",
        "standalone Volume",
        "dev",
        lambda: [_resource(VOLUME, "data", {"encrypted": False})],
        "volume is not encrypted",
    ),
    B("ecr-encryption", "AES256", "dev", lambda: _repository(kms=False, scan=True), "not encrypted with a KMS key"),
    B("ecr-encryption", "no encryption configuration", "dev", lambda: _repository(kms=None, scan=True), "KMS key"),
    B("eks-secrets-encryption", "encryptionConfig without secrets", "dev", lambda: _cluster(secrets=False), "secrets"),
    B("eks-secrets-encryption", "no encryptionConfig", "dev", lambda: _cluster(secrets=None), "envelope-encrypted"),
    B("imdsv2", "launch template httpTokens optional", "dev", lambda: _template("true", "optional"), "IMDSv1"),
    B("imdsv2", "instance without metadataOptions", "dev", lambda: _instance(tokens=None), "IMDSv1"),
    B("required-tags", "a tag left empty", "dev", lambda: [_provider("dev", owner="")], "['owner']"),
    B(
        "required-tags",
        "no default tags at all",
        "dev",
        lambda: [Resource(f"urn:{AWS_PROVIDER}::aws", AWS_PROVIDER, "aws", {})],
        "'tier'",
    ),
    B("ecr-scan-on-push", "scanOnPush false", "dev", lambda: _repository(kms=True, scan=False), "not scanned"),
    B("ecr-scan-on-push", "no scanning configuration", "dev", lambda: _repository(kms=True, scan=None), "not scanned"),
    B(
        "protect-stateful",
        "bucket",
        "prod",
        lambda: [_resource(BUCKET, "bucket", {}), *_bucket("aws:kms")[1:]],
        "must be protected",
    ),
    B("protect-stateful", "repository", "prod", lambda: _repository(kms=True, scan=True, protect=False), "protected"),
    B("protect-stateful", "KMS key", "prod", lambda: [_resource(KMS_KEY, "key", {})], "protected"),
    B("protect-stateful", "cluster", "prod", lambda: _cluster(secrets=True, protect=False), "protected"),
    B(
        "nat-per-az",
        "fewer gateways than zones",
        "prod",
        lambda: _network(zones=3, gateways=1),
        "1 NAT gateway(s) for 3",
    ),
    B("min-service-replicas", "Deployment replicas", "prod", lambda: _replicas(DEPLOYMENT, 1), "runs 1 replica"),
    B("min-service-replicas", "Rollout replicas", "prod", lambda: _replicas(ROLLOUT, 1), "runs 1 replica"),
    B("min-service-replicas", "autoscaler minReplicas", "prod", lambda: _autoscaled_rollout(1), "runs 1 replica"),
    B(
        "deletion-protection",
        "load balancer",
        "prod",
        lambda: [_resource(LOAD_BALANCER, "alb", {"loadBalancerType": "application"})],
        "load balancer has no",
    ),
    B(
        "deletion-protection",
        "EKS cluster",
        "prod",
        lambda: _cluster(secrets=True, deletion_protection=False),
        "EKS cluster has no deletion protection",
    ),
    B(
        "deletion-protection",
        "ALB Ingress attributes",
        "prod",
        lambda: [
            _alb_ingress({f"{ALB}/load-balancer-attributes": "deletion_protection.enabled=false"}, scheme="internal")
        ],
        "ALB this Ingress creates",
    ),
    B("unused-capacity", "GPU pool by AMI type, minSize 1", "prod", lambda: [_node_group(GPU_AMI, 1, 1)], "minSize 1"),
    B(
        "deletion-protection",
        "ALB Ingress by the legacy class annotation",
        "prod",
        lambda: [
            _resource(
                INGRESS,
                "legacy-ingress",
                {"metadata": {"annotations": {"kubernetes.io/ingress.class": "alb"}}, "spec": {}},
            )
        ],
        "ALB this Ingress creates",
    ),
    B(
        "unused-capacity",
        "GPU pool by taint, desiredSize 1",
        "prod",
        lambda: [_node_group(CPU_AMI, 0, 1, GPU_TAINT)],
        "desiredSize 1",
    ),
    B(
        "unused-capacity-warning",
        "GPU pool warm before prod",
        "staging",
        lambda: [_node_group(GPU_AMI, 1, 1)],
        "no workload in the stack requests nvidia.com/gpu",
    ),
    B("tls-in-prod", "no HTTPS listener", "prod", lambda: _edge(OIDC), "serves plain HTTP"),
    B(
        "tls-in-prod",
        "HTTPS with no certificate",
        "prod",
        lambda: _edge({**OIDC, f"{ALB}/listen-ports": '[{"HTTPS": 443}]'}),
        "with no certificate",
    ),
    B(
        "tls-in-prod",
        "HTTP beside HTTPS without ssl-redirect",
        "prod",
        lambda: _edge({**OIDC, **HTTPS, f"{ALB}/ssl-redirect": ""}),
        "ssl-redirect",
    ),
    B(
        "tls-in-prod",
        "listen-ports not JSON",
        "prod",
        lambda: _edge({**OIDC, **HTTPS, f"{ALB}/listen-ports": "HTTPS:443"}),
        "is not a JSON list",
    ),
    B(
        "tls-in-prod",
        "aws listener forwarding HTTP",
        "prod",
        lambda: _listener("HTTP", FORWARD),
        "HTTP port 80 of an internet-facing load balancer without redirecting",
    ),
    B(
        "tls-in-prod",
        "aws listener redirecting to HTTP",
        "prod",
        lambda: _listener("HTTP", [{"type": "redirect", "redirect": {"protocol": "HTTP", "port": "8080"}}]),
        "without redirecting",
    ),
    B(
        "authenticated-ingress",
        "no ALB auth, pods without MLSTACK_API_KEYS_FILE",
        "prod",
        lambda: _edge(HTTPS),
        "the pods behind api do not set MLSTACK_API_KEYS_FILE",
    ),
    B(
        "authenticated-ingress",
        "auth-type oidc without its IdP",
        "prod",
        lambda: _edge({**HTTPS, f"{ALB}/auth-type": "oidc"}),
        "has no alb.ingress.kubernetes.io/auth-idp-oidc",
    ),
    B(
        "authenticated-ingress",
        "unauthenticated requests allowed",
        "prod",
        lambda: _edge({**HTTPS, **OIDC, f"{ALB}/auth-on-unauthenticated-request": "allow"}),
        "is allow",
    ),
    B(
        "authenticated-ingress",
        "MLSTACK_API_KEYS_FILE empty",
        "prod",
        lambda: [
            _alb_ingress({**PROTECTED_ALB, **HTTPS}),
            _service(),
            _workload(env=[{"name": "MLSTACK_API_KEYS_FILE", "value": ""}]),
        ],
        "do not set MLSTACK_API_KEYS_FILE",
    ),
    B(
        "authenticated-ingress",
        "a backend whose pods the stack doesn't write",
        "prod",
        lambda: [
            _alb_ingress({**PROTECTED_ALB, **HTTPS}, spec={"defaultBackend": {"resource": {"kind": "Bucket"}}}),
            _service(),
            _workload(env=AUTH_ENV),
        ],
        "not in the stack",
    ),
    B(
        "authenticated-ingress",
        "canary Services of a Rollout whose pods don't authenticate",
        "prod",
        lambda: _canary(None),
        "model, model-canary",
    ),
    B("pod-identity-trust-conditions", "no conditions", "dev", lambda: _trust(POD_IDENTITY), "the account"),
    B(
        "pod-identity-trust-conditions",
        "no cluster",
        "dev",
        lambda: _trust(POD_IDENTITY, _without("aws:RequestTag/eks-cluster-arn")),
        "no condition on the cluster",
    ),
    B(
        "pod-identity-trust-conditions",
        "no namespace",
        "dev",
        lambda: _trust(POD_IDENTITY, _without("aws:RequestTag/kubernetes-namespace")),
        "no condition on the namespace",
    ),
    B(
        "pod-identity-trust-conditions",
        "no service account",
        "dev",
        lambda: _trust(
            {"Service": ["ec2.amazonaws.com", "pods.eks.amazonaws.com"]},
            _without("aws:RequestTag/kubernetes-service-account"),
        ),
        "no condition on the service account",
    ),
    B(
        "pod-identity-trust-conditions",
        "no account",
        "dev",
        lambda: _trust(POD_IDENTITY, _without("aws:SourceAccount")),
        "no condition on the account (aws:SourceAccount)",
    ),
    B(
        "no-wildcard-write",
        "role policy, Resource *",
        "prod",
        lambda: _policy([_allow("s3:PutObject")]),
        "s3:PutObject",
    ),
    B(
        "no-wildcard-write",
        "managed policy, ARN with * resource",
        "prod",
        lambda: _policy([_allow(["s3:GetObject", "s3:DeleteObject"], "arn:aws:s3:::*")], MANAGED_POLICY),
        "s3:DeleteObject",
    ),
    B(
        "no-wildcard-write",
        "role inline policy, service wildcard",
        "prod",
        lambda: _policy([_allow("ec2:*")], ROLE),
        "inline statement #0 allows ec2:*",
    ),
    B(
        "no-wildcard-write",
        "user policy, a single statement object",
        "prod",
        lambda: _policy(_allow("iam:PassRole", Sid="Pass"), USER_POLICY),
        "statement Pass allows iam:PassRole",
    ),
    B(
        "no-wildcard-write",
        "group policy, NotAction",
        "prod",
        lambda: _policy([{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}], GROUP_POLICY),
        "everything but",
    ),
    B(
        "no-wildcard-write",
        "NotResource",
        "prod",
        lambda: _policy([{"Effect": "Allow", "Action": "s3:PutObject", "NotResource": "arn:aws:s3:::logs/*"}]),
        "s3:PutObject",
    ),
    B(
        "no-wildcard-write",
        "a tag that must be absent does not bound",
        "prod",
        lambda: _policy([_allow("ec2:CreateSecurityGroup", Condition={"Null": {"aws:RequestTag/team": "true"}})]),
        "ec2:CreateSecurityGroup",
    ),
    B(
        "no-wildcard-write",
        "a write with resource types beside one without",
        "prod",
        lambda: _policy([_allow(["shield:CreateProtection", "shield:DeleteProtection"])]),
        'allows shield:DeleteProtection on every resource ("*")',
    ),
    B(
        "account-pinned",
        "a prod provider without allowedAccountIds",
        "prod",
        lambda: [_provider("prod", accounts=[])],
        "set mlstack:accountId",
    ),
    B(
        "no-wildcard-write-warning",
        "outside prod, a write on *",
        "staging",
        lambda: _policy([_allow("elasticloadbalancing:CreateListener")]),
        "elasticloadbalancing:CreateListener",
    ),
    B("no-public-metrics", "Service port a ServiceMonitor scrapes", "dev", _metrics, "ServiceMonitor api"),
    B(
        "no-public-metrics",
        "Service port named for metrics",
        "dev",
        lambda: [
            _alb_ingress(
                {},
                paths=[
                    {
                        "path": "/",
                        "pathType": "Prefix",
                        "backend": {"service": {"name": "stats", "port": {"name": "metrics"}}},
                    }
                ],
            ),
            _service("stats", "api", port_name="metrics"),
        ],
        "named for metrics",
    ),
    B(
        "no-public-metrics",
        "Exact path before the 404 prefix",
        "dev",
        lambda: _metrics(
            FIXED_404,
            [
                {"path": "/metrics", "pathType": "Prefix", "backend": NOT_FOUND},
                {"path": "/metrics", "pathType": "Exact", "backend": TO_API},
            ],
        ),
        "port 80",
    ),
    B(
        "no-public-metrics",
        "default backend when no path matches",
        "dev",
        lambda: _metrics(
            paths=[{"path": "/v2", "pathType": "Prefix", "backend": TO_API}], spec={"defaultBackend": TO_API}
        ),
        "Service api",
    ),
    B(
        "no-public-metrics",
        "an action forwarding to the Service",
        "dev",
        lambda: _metrics(
            {
                f"{ALB}/actions.fwd": json.dumps(
                    {
                        "type": "forward",
                        "forwardConfig": {"targetGroups": [{"serviceName": "api", "servicePort": "80"}]},
                    }
                )
            },
            [
                {
                    "path": "/*",
                    "pathType": "ImplementationSpecific",
                    "backend": {"service": {"name": "fwd", "port": {"name": "use-annotation"}}},
                }
            ],
        ),
        "Service api",
    ),
    B(
        "no-public-metrics",
        "canary Services of a Rollout",
        "dev",
        lambda: [
            *_canary(AUTH_ENV),
            _resource(
                SERVICE_MONITOR,
                "monitor",
                {
                    "metadata": {"name": "model", "namespace": "ml"},
                    "spec": {"selector": {"matchLabels": {"app": "model"}}, "endpoints": [{"port": "http"}]},
                },
            ),
        ],
        "Service model-canary",
    ),
)

K = Case
# Inputs that keep every rule, including each alternative a rule accepts.
KEEPING: tuple[Case, ...] = (
    K("no-world-ingress", "443 to the world on the load balancers", "dev", lambda: _ingress(443, "0.0.0.0/0")),
    K("no-world-ingress", "a private range", "dev", lambda: _ingress(8080, "10.0.0.0/8", "workload")),
    K("no-world-ingress", "a legacy egress rule", "dev", lambda: _legacy(3000, ["0.0.0.0/0"], kind="egress")),
    K("no-world-ingress", "inline 80 on the load balancers", "dev", lambda: _inline(80, "::/0")),
    K("no-ssh", "another port", "dev", lambda: _ingress(8443, "203.0.113.0/24")),
    K("s3-encryption", "KMS", "dev", lambda: _bucket("aws:kms")),
    K("ebs-encryption", "launch template", "dev", lambda: _template("true")),
    K("ebs-encryption", "instance", "dev", _instance),
    K("ebs-encryption", "volume", "dev", lambda: [_resource(VOLUME, "data", {"encrypted": True})]),
    K("ecr-encryption", "KMS", "dev", lambda: _repository(kms=True, scan=True)),
    K("eks-secrets-encryption", "secrets", "dev", lambda: _cluster(secrets=True)),
    K("imdsv2", "required", "dev", lambda: _template("true", "required")),
    K("required-tags", "every tag", "dev", lambda: [_provider("dev")]),
    K("ecr-scan-on-push", "on", "dev", lambda: _repository(kms=True, scan=True)),
    K("protect-stateful", "protected", "prod", lambda: _cluster(secrets=True) + _repository(kms=True, scan=True)),
    K("nat-per-az", "one per zone", "prod", lambda: _network(zones=3, gateways=3)),
    K("min-service-replicas", "three", "prod", lambda: _autoscaled_rollout(3)),
    K(
        "deletion-protection",
        "everywhere",
        "prod",
        lambda: [
            _alb_ingress(PROTECTED_ALB, scheme="internal"),
            *_cluster(secrets=True),
            _resource(LOAD_BALANCER, "alb", {"enableDeletionProtection": True}),
        ],
    ),
    K("unused-capacity", "GPU pool at zero", "prod", lambda: [_node_group(GPU_AMI, 0, 0), _node_group(CPU_AMI, 3, 3)]),
    K(
        "unused-capacity",
        "a warm GPU pool a workload requests",
        "prod",
        lambda: [_node_group(GPU_AMI, 1, 1), _workload("gpu-job", kind="kubernetes:batch/v1:Job", gpu=True)],
    ),
    K("unused-capacity-warning", "GPU pool at zero", "staging", lambda: [_node_group(GPU_AMI, 0, 0)]),
    K("tls-in-prod", "certificate, HTTP redirects", "prod", lambda: _edge({**HTTPS, **OIDC})),
    K(
        "tls-in-prod",
        "certificate discovered by host",
        "prod",
        lambda: _edge(
            {**OIDC, f"{ALB}/listen-ports": '[{"HTTPS": 443}]'}, spec={"tls": [{"hosts": ["api.example.com"]}]}
        ),
    ),
    K("tls-in-prod", "internal Ingress on HTTP", "prod", lambda: _edge({}, scheme="internal")),
    K("tls-in-prod", "listener redirecting to HTTPS", "prod", lambda: _listener("HTTP", TO_HTTPS)),
    K(
        "tls-in-prod",
        "listener on an internal load balancer",
        "prod",
        lambda: _listener("HTTP", FORWARD, internal=True),
    ),
    K(
        "authenticated-ingress",
        "Cognito at the ALB",
        "prod",
        lambda: _edge({**HTTPS, f"{ALB}/auth-type": "cognito", f"{ALB}/auth-idp-cognito": '{"userPoolARN":"arn"}'}),
    ),
    K(
        "authenticated-ingress",
        "JWT validation at the ALB",
        "prod",
        lambda: _edge({**HTTPS, f"{ALB}/jwt-validation": "{}"}),
    ),
    K(
        "authenticated-ingress",
        "API keys in the pods",
        "prod",
        lambda: [_alb_ingress({**PROTECTED_ALB, **HTTPS}), _service(), _workload(env=AUTH_ENV)],
    ),
    K("authenticated-ingress", "API keys in the Rollout's pods", "prod", lambda: _canary(AUTH_ENV)),
    K("pod-identity-trust-conditions", "every condition", "dev", lambda: _trust(POD_IDENTITY, ALL_TRUST_CONDITIONS)),
    K(
        "pod-identity-trust-conditions",
        "cluster as SourceArn",
        "dev",
        lambda: _trust(
            POD_IDENTITY, {**_without("aws:RequestTag/eks-cluster-arn"), "ArnEquals": {"aws:SourceArn": CLUSTER_ARN}}
        ),
    ),
    K(
        "pod-identity-trust-conditions",
        "another service's trust",
        "dev",
        lambda: _trust({"Service": "ec2.amazonaws.com"}),
    ),
    K(
        "no-wildcard-write",
        "reads on *",
        "prod",
        lambda: _policy(
            [_allow(["ec2:Describe*", "ecr:GetAuthorizationToken", "s3:ListAllMyBuckets", "ecr:BatchGetImage"])]
        ),
    ),
    K(
        "no-wildcard-write",
        "writes on named resources",
        "prod",
        lambda: _policy([_allow("s3:PutObject", "arn:aws:s3:::models/models/*")], MANAGED_POLICY),
    ),
    K(
        "no-wildcard-write",
        "creates bounded by a request tag",
        "prod",
        lambda: _policy(
            [_allow("ec2:CreateSecurityGroup", Condition={"StringEquals": {"aws:RequestTag/cluster": "c"}})], ROLE
        ),
    ),
    K(
        "no-wildcard-write",
        "security-group rules bounded to the stack's VPC",
        "prod",
        lambda: _policy(
            [
                _allow(
                    ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"],
                    Condition={"ArnEquals": {"ec2:Vpc": "arn:aws:ec2:us-east-1:123456789012:vpc/vpc-1"}},
                )
            ]
        ),
    ),
    K(
        "no-wildcard-write",
        "writes AWS gives no resource type (Session Manager's channels, Shield's CreateProtection)",
        "prod",
        lambda: _policy(
            [_allow(["ssmmessages:CreateControlChannel", "ssmmessages:OpenDataChannel", "shield:CreateProtection"])]
        ),
    ),
    K("account-pinned", "a prod provider pinned to one account", "prod", lambda: [_provider("prod")]),
    K(
        "no-wildcard-write-warning",
        "writes on named resources",
        "dev",
        lambda: _policy([_allow("s3:PutObject", "arn:aws:s3:::models/models/*")], MANAGED_POLICY),
    ),
    K(
        "no-wildcard-write",
        "a deny on *",
        "prod",
        lambda: _policy([{"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]),
    ),
    K(
        "no-public-metrics",
        "/metrics answered by the ALB",
        "dev",
        lambda: _metrics(
            FIXED_404,
            [
                {"path": "/", "pathType": "Prefix", "backend": TO_API},
                {"path": "/metrics", "pathType": "Exact", "backend": NOT_FOUND},
            ],
        ),
    ),
    K("no-public-metrics", "an internal Ingress", "dev", lambda: _metrics(scheme="internal")),
    K(
        "no-public-metrics",
        "only the public port",
        "dev",
        lambda: [
            _alb_ingress({}),
            _service(port_name="http"),
            _workload(),
            _resource(
                SERVICE_MONITOR,
                "monitor",
                {
                    "metadata": {"namespace": "ml"},
                    "spec": {"selector": {"matchLabels": {"app": "api"}}, "endpoints": [{"port": "internal"}]},
                },
            ),
        ],
    ),
)


def _stack(tier: str, resources: list[Resource]) -> list[Resource]:
    if not any(resource.type == AWS_PROVIDER for resource in resources):
        resources = [_provider(tier), *resources]
    return resources


def _offline(resources: list[Resource]) -> list[dict[str, str]]:
    stack = Stack(resources, tier_of(resources))
    return [{"policy": v.policy, "level": v.level, "urn": v.urn, "message": v.message} for v in evaluate(stack)]


def _crossguard(stacks: list[list[Resource]]) -> list[list[dict[str, str]]]:
    assert POLICY_PYTHON.exists(), "the pack's environment is missing: make builds .venv-policy"
    result = subprocess.run(
        [str(POLICY_PYTHON), str(REPO_ROOT / "tests" / "policy" / "crossguard_probe.py")],
        input=json.dumps([[asdict(resource) for resource in stack] for stack in stacks]),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    reported: list[list[dict[str, str]]] = json.loads(result.stdout)
    return reported


@pytest.fixture(scope="module")
def both_engines() -> dict[tuple[str, str, bool], tuple[list[dict[str, str]], list[dict[str, str]]]]:
    """(rule, branch, breaks) -> (offline violations, CrossGuard violations), from one run of the pack."""
    cases = [(case, True) for case in BRANCHES] + [(case, False) for case in KEEPING]
    stacks = [_stack(case.tier, case.build()) for case, _ in cases]
    crossguard = _crossguard(stacks)
    return {
        (case.rule, case.branch, breaks): (_offline(stack), reported)
        for (case, breaks), stack, reported in zip(cases, stacks, crossguard, strict=True)
    }


def test_every_rule_has_breaking_and_keeping_inputs() -> None:
    names = sorted(rule.name for rule in RULES)
    assert sorted({case.rule for case in BRANCHES}) == names
    assert sorted({case.rule for case in KEEPING}) == names
    assert len({(case.rule, case.branch) for case in BRANCHES}) == len(BRANCHES), "one fixture per branch"


@pytest.mark.parametrize("case", BRANCHES, ids=lambda case: f"{case.rule}: {case.branch}")
def test_each_branch_breaks_its_rule_alone_in_both_engines(
    case: Case, both_engines: dict[tuple[str, str, bool], tuple[list[dict[str, str]], list[dict[str, str]]]]
) -> None:
    offline, crossguard = both_engines[(case.rule, case.branch, True)]
    assert sorted(offline, key=str) == sorted(crossguard, key=str), "the two engines disagree"
    assert offline, "the breaking input passed"
    assert {v["policy"] for v in offline} == {case.rule}, offline
    assert any(case.expect in v["message"] for v in offline), [v["message"] for v in offline]


@pytest.mark.parametrize("case", KEEPING, ids=lambda case: f"{case.rule}: {case.branch}")
def test_each_keeping_input_passes_every_rule_in_both_engines(
    case: Case, both_engines: dict[tuple[str, str, bool], tuple[list[dict[str, str]], list[dict[str, str]]]]
) -> None:
    offline, crossguard = both_engines[(case.rule, case.branch, False)]
    assert offline == []
    assert crossguard == []


def test_levels_follow_the_tier_and_the_pack_carries_them() -> None:
    warm_gpu = [_node_group(GPU_AMI, 1, 1)]
    per_tier = {tier: _offline(_stack(tier, warm_gpu)) for tier in ("dev", "staging", "prod")}
    assert [(v["policy"], v["level"]) for v in per_tier["staging"]] == [("unused-capacity-warning", ADVISORY)]
    assert [(v["policy"], v["level"]) for v in per_tier["dev"]] == [("unused-capacity-warning", ADVISORY)]
    assert [(v["policy"], v["level"]) for v in per_tier["prod"]] == [("unused-capacity", MANDATORY)]
    assert _crossguard([_stack("staging", warm_gpu)])[0] == per_tier["staging"]


def test_prod_rules_leave_other_tiers_alone() -> None:
    assert _offline(_stack("staging", _network(zones=3, gateways=1))) == []
    assert _offline(_stack("staging", _edge({}))) == []
    assert [v["policy"] for v in _offline(_stack("prod", _network(zones=3, gateways=1)))] == ["nat-per-az"]


@pytest.mark.parametrize(
    ("action", "write"),
    [
        ("s3:GetObject", False),
        ("ec2:Describe*", False),
        ("ecr:BatchGetImage", False),
        ("s3:PutObject", True),
        ("s3:*", True),
        ("*", True),
        ("ec2:CreateTags", True),
        ("s3:*Object", True),
    ],
)
def test_write_actions_are_all_but_reads(action: str, write: bool) -> None:
    assert is_write_action(action) is write


@pytest.mark.parametrize(
    ("port", "cidr", "role", "expected"),
    [
        (443, "::/0", "load-balancer", []),
        (443, "0.0.0.0/0", "workload", ["no-world-ingress"]),
        (22, "0.0.0.0/0", "load-balancer", ["no-world-ingress", "no-ssh"]),
        (8080, "10.0.0.0/8", "workload", []),
    ],
)
def test_world_ingress_depends_on_port_and_group(port: int, cidr: str, role: str, expected: list[str]) -> None:
    assert [v["policy"] for v in _offline(_stack("dev", _ingress(port, cidr, role)))] == expected


def test_tls_in_prod_is_mandatory_in_both_engines_and_only_in_prod() -> None:
    plain_http = _edge(OIDC)
    offline = _offline(_stack("prod", plain_http))
    assert [(v["policy"], v["level"]) for v in offline] == [("tls-in-prod", MANDATORY)]
    assert _crossguard([_stack("prod", plain_http)])[0] == offline
    assert _offline(_stack("staging", plain_http)) == []
