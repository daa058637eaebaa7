"""The stack file's `mlstack:` keys as typed models.

Keys are camelCase in the stack files (Pulumi's convention) and snake_case here. Every model forbids
unknown keys so that a typo fails the preview instead of silently falling back to a default.
"""

import ipaddress
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from infra.network.cidr import SUBNET_MAX_PREFIX, VPC_MAX_PREFIX, VPC_MIN_PREFIX, plan_subnets

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


class FlowLogsConfig(ConfigModel):
    """VPC flow logs, delivered to a CloudWatch log group."""

    enabled: bool
    retention_days: int = 90
    traffic_type: Literal["ALL", "ACCEPT", "REJECT"] = "ALL"

    @field_validator("retention_days")
    @classmethod
    def _known_retention(cls, days: int) -> int:
        if days not in LOG_RETENTION_DAYS:
            allowed = ", ".join(str(d) for d in LOG_RETENTION_DAYS)
            raise ValueError(f"CloudWatch Logs retention must be one of {allowed}")
        return days


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


class NetworkConfig(ConfigModel):
    """The VPC and what surrounds it."""

    cidr: ipaddress.IPv4Network
    az_count: Annotated[int, Field(ge=1, le=MAX_AZ_COUNT)]
    nat_strategy: NatStrategy
    private_subnet_prefix: Annotated[int | None, Field(ge=VPC_MIN_PREFIX + 1, le=SUBNET_MAX_PREFIX)] = None
    public_subnet_prefix: Annotated[int | None, Field(ge=VPC_MIN_PREFIX + 1, le=SUBNET_MAX_PREFIX)] = None
    allowed_cidrs: Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], Field(min_length=1)]
    flow_logs: FlowLogsConfig

    @field_validator("cidr", mode="before")
    @classmethod
    def _vpc_cidr(cls, value: object) -> ipaddress.IPv4Network:
        return _parse_vpc_cidr(value)

    @field_validator("allowed_cidrs", mode="before")
    @classmethod
    def _allowed_cidrs(cls, value: object) -> object:
        if isinstance(value, list):
            return [_parse_allowed_cidr(item) for item in value]
        return value

    @model_validator(mode="after")
    def _subnets_fit(self) -> "NetworkConfig":
        try:
            plan_subnets(self.cidr, self.az_count, self.private_subnet_prefix, self.public_subnet_prefix)
        except ValueError as error:
            raise ConfigRuleError("cidr", str(error)) from None
        return self


class ComputeConfig(ConfigModel):
    """Where the model service runs."""

    mode: ComputeMode


class ServiceConfig(ConfigModel):
    """The model service as the network sees it."""

    port: Annotated[int, Field(ge=1024, le=65535)] = 8080


class StackConfig(ConfigModel):
    """Everything under the `mlstack:` namespace of one stack file."""

    tier: Tier
    owner: Annotated[str, Field(pattern=TAG_VALUE_PATTERN)]
    cost_center: Annotated[str, Field(pattern=TAG_VALUE_PATTERN)]
    extra_tags: dict[str, str] = Field(default_factory=dict)
    network: NetworkConfig
    compute: ComputeConfig
    service: ServiceConfig

    @model_validator(mode="after")
    def _cross_field_rules(self) -> "StackConfig":
        if self.compute.mode == "eks" and self.network.nat_strategy == "none":
            raise ConfigRuleError(
                "network.natStrategy",
                "'none' leaves the private subnets without egress, but EKS nodes run "
                "there and must pull images and reach the API; use 'single' or 'per-az'",
            )
        if self.tier == "prod" and self.network.az_count < PROD_MIN_AZ_COUNT:
            raise ConfigRuleError(
                "network.azCount",
                f"tier 'prod' needs at least {PROD_MIN_AZ_COUNT} availability zones to survive losing one",
            )
        reserved = {"project", "environment", "managed-by", "owner", "cost-center"} & set(self.extra_tags)
        if reserved:
            raise ConfigRuleError("extraTags", f"{sorted(reserved)} are set by mlstack itself; remove them")
        return self
