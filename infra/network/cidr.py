"""CIDR arithmetic for the VPC's subnets: plain functions, no Pulumi."""

import ipaddress
import math
from dataclasses import dataclass

# AWS refuses VPCs and subnets outside these prefix lengths.
VPC_MIN_PREFIX = 16
VPC_MAX_PREFIX = 28
SUBNET_MAX_PREFIX = 28
# Public subnets only hold load balancers and NAT gateways: a sixteenth of a private subnet is plenty.
PUBLIC_TO_PRIVATE_EXTRA_BITS = 4


@dataclass(frozen=True)
class SubnetPlan:
    """The public and private subnet of each availability zone, in zone order."""

    public: tuple[ipaddress.IPv4Network, ...]
    private: tuple[ipaddress.IPv4Network, ...]


def default_private_prefix(vpc_prefix: int, az_count: int) -> int:
    """Private subnets (nodes and pods take VPC addresses) get most of the space."""
    return vpc_prefix + max(1, math.ceil(math.log2(az_count + 1)))


def default_public_prefix(private_prefix: int) -> int:
    return min(private_prefix + PUBLIC_TO_PRIVATE_EXTRA_BITS, SUBNET_MAX_PREFIX)


def plan_subnets(
    vpc_cidr: ipaddress.IPv4Network,
    az_count: int,
    private_prefix: int | None = None,
    public_prefix: int | None = None,
) -> SubnetPlan:
    """Carve one public and one private subnet per AZ out of the VPC CIDR.

    Raises ValueError with a sentence a person can act on when the CIDR cannot hold them.
    """
    if az_count < 1:
        raise ValueError(f"at least one availability zone is needed, got {az_count}")
    private_prefix = private_prefix or default_private_prefix(vpc_cidr.prefixlen, az_count)
    public_prefix = public_prefix or default_public_prefix(private_prefix)
    for role, prefix in (("private", private_prefix), ("public", public_prefix)):
        if prefix > SUBNET_MAX_PREFIX:
            raise ValueError(
                f"{vpc_cidr} is too small for {az_count} AZ(s): {role} subnets would be /{prefix}, "
                f"but AWS subnets must be /{SUBNET_MAX_PREFIX} or larger; use a larger VPC CIDR"
            )
        if prefix <= vpc_cidr.prefixlen:
            raise ValueError(
                f"{role} subnets of /{prefix} do not fit inside the /{vpc_cidr.prefixlen} VPC; "
                f"use a prefix between /{vpc_cidr.prefixlen + 1} and /{SUBNET_MAX_PREFIX}"
            )

    needed = az_count * (2 ** (32 - private_prefix) + 2 ** (32 - public_prefix))
    if needed > vpc_cidr.num_addresses:
        raise ValueError(
            f"{vpc_cidr} holds {vpc_cidr.num_addresses} addresses but {az_count} private /{private_prefix} "
            f"and {az_count} public /{public_prefix} subnets need {needed}; "
            "use a larger VPC CIDR, fewer AZs or smaller subnets"
        )

    # Allocating the larger blocks first keeps every block aligned without gaps.
    requests = [("private", i, private_prefix) for i in range(az_count)]
    requests += [("public", i, public_prefix) for i in range(az_count)]
    requests.sort(key=lambda request: request[2])
    allocated: dict[tuple[str, int], ipaddress.IPv4Network] = {}
    cursor = int(vpc_cidr.network_address)
    for role, index, prefix in requests:
        allocated[(role, index)] = ipaddress.IPv4Network((cursor, prefix))
        cursor += 2 ** (32 - prefix)
    return SubnetPlan(
        public=tuple(allocated[("public", i)] for i in range(az_count)),
        private=tuple(allocated[("private", i)] for i in range(az_count)),
    )
