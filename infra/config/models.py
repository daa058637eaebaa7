"""The stack file's `mlstack:` keys as typed models.

Keys are camelCase in the stack files (Pulumi's convention) and snake_case here. Every model forbids
unknown keys so that a typo fails the preview instead of silently falling back to a default.
"""

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from infra.compute.gpu_instances import GPU_INSTANCE_FAMILIES, GPU_INSTANCE_TYPES
from infra.config.aws_catalog import ec2_instance_types, suggestion
from infra.network.cidr import SUBNET_MAX_PREFIX, VPC_MAX_PREFIX, VPC_MIN_PREFIX, plan_subnets
from infra.versions import DEFAULT_KUBERNETES_VERSION, EKS_ADDON_VERSIONS

Tier = Literal["dev", "staging", "prod"]
NatStrategy = Literal["none", "single", "per-az"]
ComputeMode = Literal["ec2", "eks"]

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
# An Application Load Balancer needs a subnet of at least /27 (with 8 free addresses) in each of its zones.
ALB_SUBNET_MAX_PREFIX = 27
# Model package versions are X.Y.Z, as the retrain pipeline publishes them (service/mlstack_service/publish.py).
MODEL_VERSION_PATTERN = r"^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$"
MAX_AZ_COUNT = 6
PROD_MIN_AZ_COUNT = 2
TAG_VALUE_PATTERN = r"^[A-Za-z0-9 _.:/=+\-@]{1,256}$"


class ConfigRuleError(ValueError):
    """A rule across several keys; `key` is the dotted path (relative to the model) to blame."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=False, frozen=True)


def check_log_retention(days: int) -> int:
    if days not in LOG_RETENTION_DAYS:
        allowed = ", ".join(str(d) for d in LOG_RETENTION_DAYS)
        raise ValueError(f"CloudWatch Logs retention must be one of {allowed}")
    return days


class FlowLogsConfig(ConfigModel):
    """VPC flow logs, delivered to a CloudWatch log group."""

    enabled: bool
    retention_days: int = 90
    traffic_type: Literal["ALL", "ACCEPT", "REJECT"] = "ALL"

    @field_validator("retention_days")
    @classmethod
    def _known_retention(cls, days: int) -> int:
        return check_log_retention(days)


def _parse_vpc_cidr(value: object) -> ipaddress.IPv4Network:
    if isinstance(value, ipaddress.IPv4Network):
        return value
    try:
        network = ipaddress.IPv4Network(str(value), strict=True)
    except ValueError as error:
        raise ValueError(f"not a valid IPv4 CIDR ({error}); expected a network address such as 10.0.0.0/16") from None
    if not VPC_MIN_PREFIX <= network.prefixlen <= VPC_MAX_PREFIX:
        raise ValueError(f"AWS VPCs must be between /{VPC_MIN_PREFIX} and /{VPC_MAX_PREFIX}")
    if not network.is_private:
        raise ValueError("a VPC should use private address space (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)")
    return network


def _parse_allowed_cidr(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(str(value), strict=True)
    except ValueError as error:
        raise ValueError(
            f"not a valid CIDR ({error}); expected e.g. 203.0.113.0/24, 0.0.0.0/0 or 2001:db8::/32"
        ) from None


def check_instance_type(name: str) -> str:
    """Refuse a name EC2 does not know (botocore's EC2 model), suggesting the closest ones."""
    if name not in ec2_instance_types():
        raise ValueError(f"not an EC2 instance type{suggestion(name, ec2_instance_types())}")
    return name


def _parse_cidr_list(value: object) -> object:
    """Each item of a list of CIDRs, with an error naming what a CIDR looks like; anything else is left to pydantic."""
    return [_parse_allowed_cidr(item) for item in value] if isinstance(value, list) else value


class ExtraIngress(ConfigModel):
    """One more port opened on the load-balancer group, for the ranges listed; policy checks every one."""

    port: Annotated[int, Field(ge=1, le=65535)]
    cidrs: Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], Field(min_length=1)]
    description: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9 ._:/()#,@\[\]+=&;{}!$*-]+$")]

    _cidrs = field_validator("cidrs", mode="before")(_parse_cidr_list)


class NetworkConfig(ConfigModel):
    """The VPC and what surrounds it."""

    cidr: ipaddress.IPv4Network
    az_count: Annotated[int, Field(ge=1, le=MAX_AZ_COUNT)]
    nat_strategy: NatStrategy
    private_subnet_prefix: Annotated[int | None, Field(ge=VPC_MIN_PREFIX + 1, le=SUBNET_MAX_PREFIX)] = None
    public_subnet_prefix: Annotated[int | None, Field(ge=VPC_MIN_PREFIX + 1, le=SUBNET_MAX_PREFIX)] = None
    allowed_cidrs: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    extra_ingress: list[ExtraIngress] = Field(default_factory=list)
    flow_logs: FlowLogsConfig

    @field_validator("cidr", mode="before")
    @classmethod
    def _vpc_cidr(cls, value: object) -> ipaddress.IPv4Network:
        return _parse_vpc_cidr(value)

    _allowed_cidrs = field_validator("allowed_cidrs", mode="before")(_parse_cidr_list)

    @field_validator("allowed_cidrs")
    @classmethod
    def _someone_may_connect(
        cls, cidrs: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    ) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        if not cidrs:
            raise ValueError(
                "the list is empty, so nobody could reach the load balancer; list the ranges that may, "
                "e.g. [203.0.113.0/24], or [0.0.0.0/0, ::/0] for everyone"
            )
        return cidrs

    @model_validator(mode="after")
    def _subnets_fit(self) -> "NetworkConfig":
        try:
            subnets = plan_subnets(self.cidr, self.az_count, self.private_subnet_prefix, self.public_subnet_prefix)
        except ValueError as error:
            raise ConfigRuleError("cidr", str(error)) from None
        public_prefix = subnets.public[0].prefixlen
        if public_prefix > ALB_SUBNET_MAX_PREFIX:
            key = "publicSubnetPrefix" if self.public_subnet_prefix is not None else "cidr"
            fix = (
                f"set publicSubnetPrefix to {ALB_SUBNET_MAX_PREFIX} or less"
                if key == "publicSubnetPrefix"
                else f"use a larger VPC CIDR than {self.cidr} or set publicSubnetPrefix: {ALB_SUBNET_MAX_PREFIX}"
            )
            raise ConfigRuleError(
                key,
                f"the load-balancer (public) subnets would be /{public_prefix}, but an Application Load Balancer "
                f"needs at least a /{ALB_SUBNET_MAX_PREFIX} in each zone; {fix}",
            )
        return self


class RegistryConfig(ConfigModel):
    """The ECR repository for the service image."""

    keep_tagged_images: Annotated[int, Field(ge=1, le=1000)] = 30
    untagged_expiry_days: Annotated[int, Field(ge=1, le=365)] = 7


class ModelBucketConfig(ConfigModel):
    """The S3 bucket holding model packages."""

    model_prefix: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._/-]*/$")] = "models/"
    noncurrent_version_expiry_days: Annotated[int, Field(ge=1, le=3650)] = 90
    # Object Lock (GOVERNANCE) default retention: how long every version of every object can't be deleted.
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30


class Ec2HostConfig(ConfigModel):
    """The single host that runs the containers (compute.mode ec2)."""

    instance_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")] = "t3.large"
    root_volume_gb: Annotated[int, Field(ge=20, le=1000)] = 30

    _known_type = field_validator("instance_type")(check_instance_type)


CapacityType = Literal["ON_DEMAND", "SPOT"]
ControlPlaneLog = Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]
DEFAULT_CONTROL_PLANE_LOGS: tuple[ControlPlaneLog, ...] = ("api", "audit", "authenticator")


class NodePoolConfig(ConfigModel):
    """One EKS managed node group."""

    instance_types: Annotated[list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")]], Field(min_length=1)]
    capacity_type: CapacityType = "ON_DEMAND"
    min_size: Annotated[int, Field(ge=0, le=100)]
    max_size: Annotated[int, Field(ge=1, le=100)]
    desired_size: Annotated[int, Field(ge=0, le=100)]
    disk_size_gb: Annotated[int, Field(ge=20, le=2000)] = 50

    @field_validator("instance_types")
    @classmethod
    def _known_types(cls, types: list[str]) -> list[str]:
        return [check_instance_type(name) for name in types]

    @model_validator(mode="after")
    def _sizes_in_order(self) -> "NodePoolConfig":
        if self.min_size > self.max_size:
            raise ConfigRuleError("maxSize", f"{self.max_size} is below minSize {self.min_size}")
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ConfigRuleError(
                "desiredSize",
                f"{self.desired_size} must lie between minSize {self.min_size} and maxSize {self.max_size}",
            )
        return self


class GpuPoolConfig(NodePoolConfig):
    """The GPU node group: NVIDIA AMI, tainted so only pods that ask for a GPU land there."""

    enabled: bool = True
    label: Annotated[str, Field(pattern=r"^[a-z0-9.-]+/[a-z0-9.-]+=[A-Za-z0-9._-]+$")] = "mlstack.io/accelerator=gpu"

    @field_validator("instance_types")
    @classmethod
    def _gpu_families(cls, types: list[str]) -> list[str]:
        wrong = [name for name in types if name not in GPU_INSTANCE_TYPES]
        if wrong:
            raise ValueError(
                f"{wrong} are not GPU instance types whose GPU count this stack knows; "
                f"use the {'/'.join(GPU_INSTANCE_FAMILIES)} families (infra/compute/gpu_instances.py)"
            )
        return types


class AccessEntryConfig(ConfigModel):
    """Kubernetes access below cluster admin for one IAM principal, through an EKS access policy."""

    principal_arn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/.+$")]
    level: Literal["view", "edit", "admin"]
    # Empty: cluster-wide; else only these namespaces.
    namespaces: list[Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]] = Field(
        default_factory=list
    )


class EksConfig(ConfigModel):
    """The EKS cluster (compute.mode eks)."""

    version: Annotated[str, Field(pattern=r"^1\.\d{2}$")] = DEFAULT_KUBERNETES_VERSION
    endpoint_public_access: bool = True
    endpoint_private_access: bool = True
    public_access_cidrs: Annotated[list[ipaddress.IPv4Network], Field(min_length=1)] = Field(
        default_factory=lambda: [ipaddress.IPv4Network("0.0.0.0/0")]
    )
    admin_principal_arns: list[Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:.+$")]] = Field(
        default_factory=list
    )
    # Access below cluster admin: view, edit or (namespace) admin, cluster-wide or in named namespaces.
    access_entries: list[AccessEntryConfig] = Field(default_factory=list)
    log_types: list[ControlPlaneLog] = Field(default_factory=lambda: list(DEFAULT_CONTROL_PLANE_LOGS))
    log_retention_days: int = 90
    cpu_pool: NodePoolConfig
    gpu_pool: GpuPoolConfig

    @field_validator("version")
    @classmethod
    def _pinned_version(cls, version: str) -> str:
        if version not in EKS_ADDON_VERSIONS:
            raise ValueError(f"add-on versions are pinned only for Kubernetes {', '.join(EKS_ADDON_VERSIONS)}")
        return version

    @field_validator("log_retention_days")
    @classmethod
    def _known_retention(cls, days: int) -> int:
        return check_log_retention(days)


class ComputeConfig(ConfigModel):
    """Where the model service runs."""

    mode: ComputeMode
    ec2: Ec2HostConfig = Field(default_factory=Ec2HostConfig)
    eks: EksConfig | None = None

    @model_validator(mode="after")
    def _eks_settings_for_eks(self) -> "ComputeConfig":
        if self.mode == "eks" and self.eks is None:
            raise ConfigRuleError("eks", "compute.mode is 'eks' but the eks settings are missing")
        return self


CLIENT_NAME = r"^[A-Za-z0-9._-]{1,64}$"
SHA256_HEX = r"^[0-9a-f]{64}$"


class ServiceConfig(ConfigModel):
    """The model service: its port and the model package it serves (the image is the deployed commit's)."""

    port: Annotated[int, Field(ge=1024, le=65535)] = 8080
    model_name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")] = "loan-approval"
    model_version: str = "1.0.0"
    # The served package's sha256 (mlstack_service.package.package_sha256); the pods refuse any other package.
    # Defaults to the bundled package's digest when the bundled version is served.
    model_sha256: Annotated[str | None, Field(pattern=r"^[0-9a-f]{64}$")] = None
    # /metrics and the feedback route answer on this port only, which no Service or Ingress publishes.
    internal_port: Annotated[int, Field(ge=1024, le=65535)] = 9090
    # OIP v2 over gRPC and grpc.health.v1 (the service's MLSTACK_GRPC_PORT). Through the ALB on 443 only where the
    # stack has a certificate (ingress.*); in the cluster from grpcNamespaces (README "gRPC").
    grpc_port: Annotated[int, Field(ge=1024, le=65535)] = 8081
    grpc_namespaces: list[Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]] = Field(
        default_factory=list
    )
    # api-keys: the inference routes need `X-API-Key` (or `Authorization: Bearer`) of a client in apiClients;
    # health and metadata routes stay open for the load balancer. README "Security model".
    authentication: Literal["api-keys", "none"] = "none"
    # Client name -> sha256 (hex) of its key, for keys made outside the stack. Digests only: such keys never enter it.
    api_clients: dict[Annotated[str, Field(pattern=CLIENT_NAME)], Annotated[str, Field(pattern=SHA256_HEX)]] = Field(
        default_factory=dict
    )
    # Clients whose keys the stack generates (EKS): each key lives only as a secret in the stack's encrypted state,
    # the pods get its digest, and the owner reads it with `pulumi stack output --show-secrets apiClientKeys`.
    generated_api_clients: list[Annotated[str, Field(pattern=CLIENT_NAME)]] = Field(default_factory=list)
    # Who may post feedback (labels) on the internal port, by key digest, and from which namespaces.
    feedback_clients: dict[Annotated[str, Field(pattern=CLIENT_NAME)], Annotated[str, Field(pattern=SHA256_HEX)]] = (
        Field(default_factory=dict)
    )
    feedback_namespaces: list[Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]] = Field(
        default_factory=list
    )

    @model_validator(mode="after")
    def _authentication_has_clients(self) -> "ServiceConfig":
        if self.internal_port == self.port:
            raise ConfigRuleError("internalPort", "must differ from service.port, which the ALB reaches")
        if self.grpc_port in (self.port, self.internal_port):
            raise ConfigRuleError("grpcPort", "must differ from service.port and service.internalPort")
        if self.authentication == "api-keys" and not (self.api_clients or self.generated_api_clients):
            raise ConfigRuleError(
                "apiClients",
                "authentication 'api-keys' needs at least one client: a name under generatedApiClients (the stack "
                "makes its key) or '<name>: <sha256 of its key>' under apiClients (README \"Security model\")",
            )
        twice = sorted(set(self.api_clients) & set(self.generated_api_clients)) or sorted(
            {name for name in self.generated_api_clients if self.generated_api_clients.count(name) > 1}
        )
        if twice:
            raise ConfigRuleError("generatedApiClients", f"{', '.join(twice)}: a client is listed once, in one list")
        return self

    @field_validator("model_version", mode="before")
    @classmethod
    def _semantic_version(cls, version: object) -> object:
        if not isinstance(version, str) or not re.match(MODEL_VERSION_PATTERN, version):
            raise ValueError(
                "model versions are X.Y.Z, as the retrain pipeline publishes them (e.g. 1.0.0, 1.1.0); "
                "quote it in YAML so 1.10 stays a string"
            )
        return version


ReleaseStrategy = Literal["rolling", "blue-green", "canary"]
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Mi|Gi)?$"
# Argo Rollouts durations: a whole number of seconds, minutes or hours.
DURATION = r"^[1-9][0-9]{0,5}(s|m|h)$"
MANUAL_PAUSE = "manual"


class AnalysisConfig(ConfigModel):
    """Each analysis run: `count` measurements `interval` apart; more than `failureLimit` failed ones fail the run,
    which aborts the release and sends all traffic back to the stable version."""

    interval: Annotated[str, Field(pattern=DURATION)] = "1m"
    count: Annotated[int, Field(ge=1, le=120)] = 5
    failure_limit: Annotated[int, Field(ge=0, le=10)] = 1
    # A new model version's predicted-score distribution may drift this far (PSI) from its training data.
    max_prediction_drift_psi: Annotated[float, Field(gt=0, le=10)] = 0.25

    @model_validator(mode="after")
    def _limit_below_count(self) -> "AnalysisConfig":
        if self.failure_limit >= self.count:
            raise ConfigRuleError(
                "failureLimit", f"{self.failure_limit} would let every one of the {self.count} measurements fail"
            )
        return self


class CanaryStep(ConfigModel):
    """One step: send `weight` percent of requests to the new version, hold for `pause` ('manual': until
    `mlstack release promote`), then pass an analysis run before the next step."""

    weight: Annotated[int, Field(ge=1, le=100)]
    pause: Annotated[str, Field(pattern=rf"{DURATION}|^{MANUAL_PAUSE}$")] | None = None


class CanaryConfig(ConfigModel):
    """The canary's steps, in order; after the last one the new version takes all traffic and becomes stable."""

    steps: Annotated[list[CanaryStep], Field(min_length=1, max_length=20)]

    @model_validator(mode="after")
    def _weights_rise(self) -> "CanaryConfig":
        for index, (before, after) in enumerate(zip(self.steps, self.steps[1:], strict=False), start=1):
            if after.weight <= before.weight:
                raise ConfigRuleError(
                    f"steps.{index}.weight",
                    f"{after.weight} is not above the previous step's {before.weight}; "
                    "each step must send more traffic to the canary (e.g. 5, 25, 50)",
                )
        return self


class BlueGreenConfig(ConfigModel):
    """The new version starts beside the active one behind the preview Service; an analysis run gates the switch.

    autoPromotion: switch as soon as the analysis passes (false: wait for `mlstack release promote`). The previous
    version keeps its pods for scaleDownDelaySeconds after a switch, so an abort switches back at once.
    """

    auto_promotion: bool = True
    scale_down_delay_seconds: Annotated[int, Field(ge=30, le=86_400)] = 600


class ResourcesConfig(ConfigModel):
    cpu_request: Annotated[str, Field(pattern=QUANTITY)] = "500m"
    cpu_limit: Annotated[str, Field(pattern=QUANTITY)] = "1"
    memory_request: Annotated[str, Field(pattern=QUANTITY)] = "512Mi"
    memory_limit: Annotated[str, Field(pattern=QUANTITY)] = "1Gi"


class ReleaseConfig(ConfigModel):
    """How the service runs on Kubernetes and how new versions reach traffic (Argo Rollouts carries it out).

    rolling: pods replaced a few at a time; canary: traffic shifted step by step through the ALB; blue-green: the
    new version beside the old, switched at once. Canary steps and the blue-green switch are gated by analysis.
    """

    strategy: ReleaseStrategy
    replicas: Annotated[int, Field(ge=1, le=100)]
    max_replicas: Annotated[int, Field(ge=1, le=200)]
    target_cpu_utilization: Annotated[int, Field(ge=10, le=100)] = 70
    target_requests_per_second: Annotated[int, Field(ge=1, le=100_000)] = 200
    accelerator: Literal["cpu", "gpu"] = "cpu"
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    blue_green: BlueGreenConfig | None = None
    canary: CanaryConfig | None = None

    @model_validator(mode="after")
    def _strategy_settings(self) -> "ReleaseConfig":
        if self.max_replicas < self.replicas:
            raise ConfigRuleError("maxReplicas", f"{self.max_replicas} is below replicas {self.replicas}")
        if self.strategy == "canary" and self.canary is None:
            raise ConfigRuleError(
                "canary", "strategy 'canary' needs canary.steps, e.g. [{weight: 5, pause: 5m}, {weight: 25}, ...]"
            )
        for block, strategy in (("blueGreen", "blue-green"), ("canary", "canary")):
            if (
                getattr(self, "blue_green" if block == "blueGreen" else "canary") is not None
                and self.strategy != strategy
            ):
                raise ConfigRuleError(
                    block, f"set, but release.strategy is {self.strategy!r}; remove it or use '{strategy}'"
                )
        return self


# A DNS name the stack can issue a public ACM certificate for: lower-case labels, no wildcard, at most 253 characters.
DNS_NAME = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
CERTIFICATE_ARN = r"^arn:aws[a-z-]*:acm:([a-z0-9-]+):\d{12}:certificate/[A-Za-z0-9-]+$"


class IngressConfig(ConfigModel):
    """The ALB in front of the service on EKS, and its certificate (README "HTTPS and certificates").

    Either `certificateArn` (a certificate you already have in ACM, in the stack's region), or `domain` with
    `hostedZone` (a public Route 53 zone of yours): the stack then requests a certificate for the domain, validates
    it through DNS records in that zone, and points the domain at the ALB.
    """

    scheme: Literal["internet-facing", "internal"] = "internet-facing"
    certificate_arn: Annotated[str | None, Field(pattern=CERTIFICATE_ARN)] = None
    domain: Annotated[str | None, Field(pattern=DNS_NAME, max_length=253)] = None
    hosted_zone: Annotated[str | None, Field(pattern=DNS_NAME, max_length=253)] = None
    # A WAF web ACL on the ALB blocks a client IP past this many requests in any 5 minutes; null: no WAF.
    rate_limit_per_ip: Annotated[int | None, Field(ge=100, le=2_000_000_000)] = None
    # ALB access logs into a bucket of the stack's.
    access_logs: bool = False

    @model_validator(mode="after")
    def _one_way_to_a_certificate(self) -> "IngressConfig":
        if self.certificate_arn and (self.domain or self.hosted_zone):
            raise ConfigRuleError(
                "certificateArn",
                "set either certificateArn (a certificate you have) or domain with hostedZone (the stack issues "
                "one), not both",
            )
        if self.domain and not self.hosted_zone:
            raise ConfigRuleError(
                "hostedZone", f"missing: domain {self.domain!r} needs the Route 53 public zone it belongs to"
            )
        if self.hosted_zone and not self.domain:
            raise ConfigRuleError("domain", f"missing: hostedZone {self.hosted_zone!r} is set, but no domain in it")
        if self.domain and self.hosted_zone and not f".{self.domain}".endswith(f".{self.hosted_zone}"):
            raise ConfigRuleError(
                "domain",
                f"{self.domain!r} is not a name inside hostedZone {self.hosted_zone!r}; "
                f"use e.g. 'api.{self.hosted_zone}'",
            )
        return self

    @property
    def tls(self) -> bool:
        """Whether the ALB gets a certificate: HTTPS on 443, HTTP redirected, gRPC on 443."""
        return bool(self.certificate_arn or self.domain)


class BatchConfig(ConfigModel):
    """The scheduled batch scoring job on EKS."""

    enabled: bool = True
    schedule: Annotated[str, Field(pattern=r"^(\S+\s+){4}\S+$")] = "0 3 * * *"
    input_prefix: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._/-]*/$")] = "batch/input/"
    output_prefix: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._/-]*/$")] = "batch/output/"


class SloConfig(ConfigModel):
    """Targets the alerts hold the service to."""

    latency_p99_seconds: Annotated[float, Field(gt=0, le=60)] = 0.25
    error_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.01


class RetrainConfig(ConfigModel):
    """Drift alerts -> Alertmanager -> the retrain relay -> GitHub's workflow dispatch API -> `workflow` at `ref`."""

    repository: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")] = None
    workflow: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,100}\.ya?ml$")] = "retrain.yml"
    ref: Annotated[str, Field(pattern=r"^[A-Za-z0-9_./-]{1,200}$")] = "main"
    cooldown_hours: Annotated[float, Field(ge=0, le=720)] = 6


class DriftConfig(ConfigModel):
    """Drift verdicts: each replica's (service MLSTACK_DRIFT_*) and the fleet's (monitoring/rules/drift.rules.yml).

    At most one false alarm per `falseAlarmDays` of no-drift traffic per alert, where an alert fires after its verdict
    held `holdMinutes` (README "Drift detection" has the arithmetic). The fleet judges the rows of the last `window`.
    """

    # A Prometheus duration: the fleet's verdicts count the rows of this span, all replicas and restarts included.
    window: Annotated[str, Field(pattern=r"^[1-9][0-9]{0,3}(h|d|w)$")] = "7d"
    # Rows a window (a replica's or the fleet's) must hold before any verdict or drift statistic counts; at most the
    # service's window (MLSTACK_DRIFT_WINDOW, 10000).
    min_samples: Annotated[int, Field(ge=20, le=10_000)] = 1_000
    false_alarm_days: Annotated[float, Field(ge=1, le=3650)] = 90
    hold_minutes: Annotated[int, Field(ge=5, le=1440)] = 60
    # A fall of the estimated accuracy (CBPE) smaller than this never starts a retraining.
    max_accuracy_drop: Annotated[float, Field(gt=0, lt=0.5)] = 0.03


S3_PREFIX = r"^[a-z0-9][a-z0-9._/-]*/$"
# What the dev host's timer (infra/compute/host_label_join.py) turns into systemd's OnCalendar.
DAILY_SCHEDULE = re.compile(r"^([0-5]?[0-9]) (1?[0-9]|2[0-3]) \* \* \*$")


class PredictionLogConfig(ConfigModel):
    """The sampled prediction log, the shared labels and the label join, in the model bucket (README "Labels")."""

    enabled: bool = True
    prefix: Annotated[str, Field(pattern=S3_PREFIX)] = "predictions/"
    feedback_prefix: Annotated[str, Field(pattern=S3_PREFIX)] = "feedback/"
    labelled_prefix: Annotated[str, Field(pattern=S3_PREFIX)] = "labelled/"
    sample_rate: Annotated[float, Field(gt=0, le=1)] = 0.1
    # false: ids, times and scores only. Realized accuracy still works; the join has no features to retrain on.
    log_features: bool = True
    batch_rows: Annotated[int, Field(ge=100, le=100_000)] = 5_000
    flush_seconds: Annotated[int, Field(ge=5, le=3600)] = 60
    max_rows_per_second: Annotated[float, Field(gt=0, le=100_000)] = 500
    max_buffered_rows: Annotated[int, Field(ge=1_000, le=1_000_000)] = 50_000
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 180
    feedback_retention_days: Annotated[int, Field(ge=1, le=3650)] = 365
    join_schedule: Annotated[str, Field(pattern=r"^(\S+\s+){4}\S+$")] = "30 2 * * *"

    @model_validator(mode="after")
    def _prefixes_are_disjoint(self) -> "PredictionLogConfig":
        named = {"prefix": self.prefix, "feedbackPrefix": self.feedback_prefix, "labelledPrefix": self.labelled_prefix}
        for key, value in named.items():
            for other_key, other in named.items():
                if key != other_key and value.startswith(other):
                    raise ConfigRuleError(
                        key, f"{value!r} lies under {other_key} {other!r}: each role's access is scoped by prefix"
                    )
        return self


class MonitoringConfig(ConfigModel):
    """Prometheus, Alertmanager and Grafana (kube-prometheus-stack on EKS)."""

    retention_days: Annotated[int, Field(ge=1, le=365)] = 15
    storage_gb: Annotated[int, Field(ge=5, le=4000)] = 20
    grafana_exposure: Literal["port-forward", "ingress"] = "port-forward"
    # Where the repository's files are browsable, e.g. https://github.com/OWNER/NAME/blob/main: each alert's
    # runbook_url is this + /docs/runbooks/<alert>.md (infra/monitoring/slo_rules.py says what applies when unset).
    runbook_base_url: Annotated[str | None, Field(pattern=r"^https://[^\s?#]+[^\s?#/]$")] = None
    slo: SloConfig = Field(default_factory=SloConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    prediction_log: PredictionLogConfig = Field(default_factory=PredictionLogConfig)


class StackConfig(ConfigModel):
    """Everything under the `mlstack:` namespace of one stack file."""

    tier: Tier
    owner: Annotated[str, Field(pattern=TAG_VALUE_PATTERN)]
    cost_center: Annotated[str, Field(pattern=TAG_VALUE_PATTERN)]
    extra_tags: dict[str, str] = Field(default_factory=dict)
    protect: bool
    network: NetworkConfig
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    model_bucket: ModelBucketConfig = Field(default_factory=ModelBucketConfig)
    compute: ComputeConfig
    service: ServiceConfig
    release: ReleaseConfig
    ingress: IngressConfig = Field(default_factory=IngressConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    # The AWS account this stack may be applied to (the AWS provider's allowedAccountIds); null: any account.
    account_id: Annotated[str | None, Field(pattern=r"^\d{12}$")] = None

    @model_validator(mode="after")
    def _cross_field_rules(self) -> "StackConfig":
        if self.compute.mode == "eks" and self.network.nat_strategy == "none":
            raise ConfigRuleError(
                "network.natStrategy",
                "'none' leaves the private subnets without egress, but EKS nodes run "
                "there and must pull images and reach the API; use 'single' or 'per-az'",
            )
        if self.compute.mode == "ec2" and self.network.az_count < 2:
            raise ConfigRuleError(
                "network.azCount", "the EC2 host sits behind an Application Load Balancer, which needs 2 AZs"
            )
        if self.tier == "prod" and self.network.az_count < PROD_MIN_AZ_COUNT:
            raise ConfigRuleError(
                "network.azCount",
                f"tier 'prod' needs at least {PROD_MIN_AZ_COUNT} availability zones to survive losing one",
            )
        if self.release.accelerator == "gpu" and (self.compute.eks is None or not self.compute.eks.gpu_pool.enabled):
            raise ConfigRuleError("release.accelerator", "'gpu' needs compute.eks.gpuPool.enabled: true")
        if self.tier == "prod" and self.release.replicas < 2:
            raise ConfigRuleError("release.replicas", "prod runs at least 2 replicas so one can be lost or replaced")
        if self.monitoring.retrain.repository and self.compute.mode != "eks":
            raise ConfigRuleError(
                "monitoring.retrain.repository", "needs compute.mode eks: Alertmanager runs only on the cluster"
            )
        if self.service.authentication == "api-keys" and self.compute.mode != "eks":
            raise ConfigRuleError(
                "service.authentication", "'api-keys' is wired on EKS only; the dev host serves without keys"
            )
        log = self.monitoring.prediction_log
        if self.compute.mode == "ec2" and log.enabled and not DAILY_SCHEDULE.match(" ".join(log.join_schedule.split())):
            raise ConfigRuleError(
                "monitoring.predictionLog.joinSchedule",
                "the dev host's systemd timer takes a daily 'M H * * *' schedule (UTC)",
            )
        for key, value in (
            ("prefix", log.prefix),
            ("feedbackPrefix", log.feedback_prefix),
            ("labelledPrefix", log.labelled_prefix),
        ):
            for other_key, other in (
                ("modelBucket.modelPrefix", self.model_bucket.model_prefix),
                ("batch.inputPrefix", self.batch.input_prefix),
                ("batch.outputPrefix", self.batch.output_prefix),
            ):
                if value.startswith(other) or other.startswith(value):
                    raise ConfigRuleError(
                        f"monitoring.predictionLog.{key}",
                        f"{value!r} overlaps {other_key} {other!r}: each role's access is scoped by prefix",
                    )
        if self.ingress.tls and self.compute.mode != "eks":
            raise ConfigRuleError(
                "ingress", "certificateArn and domain are wired on EKS only; the dev host's load balancer serves HTTP"
            )
        reserved = {"project", "environment", "managed-by", "owner", "cost-center", "tier"} & set(self.extra_tags)
        if reserved:
            raise ConfigRuleError("extraTags", f"{sorted(reserved)} are set by mlstack itself; remove them")
        return self
