import ipaddress
import itertools

import pytest

from infra.network.cidr import plan_subnets


@pytest.mark.parametrize(
    ("cidr", "az_count", "private_prefix", "public_prefix"),
    [
        ("10.0.0.0/16", 1, 17, 21),
        ("10.0.0.0/16", 2, 18, 22),
        ("10.0.0.0/16", 3, 18, 22),
        ("10.0.0.0/16", 6, 19, 23),
        ("172.16.0.0/20", 3, 22, 26),
        ("192.168.0.0/24", 3, 26, 28),
    ],
)
def test_default_sizes_fit_and_never_overlap(cidr: str, az_count: int, private_prefix: int, public_prefix: int) -> None:
    vpc = ipaddress.IPv4Network(cidr)
    plan = plan_subnets(vpc, az_count)
    assert [net.prefixlen for net in plan.private] == [private_prefix] * az_count
    assert [net.prefixlen for net in plan.public] == [public_prefix] * az_count
    subnets = [*plan.private, *plan.public]
    assert all(subnet.subnet_of(vpc) for subnet in subnets)
    for first, second in itertools.combinations(subnets, 2):
        assert not first.overlaps(second), f"{first} overlaps {second}"


def test_explicit_prefixes_are_honoured() -> None:
    plan = plan_subnets(ipaddress.IPv4Network("10.1.0.0/16"), 2, private_prefix=20, public_prefix=24)
    assert [str(net) for net in plan.private] == ["10.1.0.0/20", "10.1.16.0/20"]
    assert [str(net) for net in plan.public] == ["10.1.32.0/24", "10.1.33.0/24"]


@pytest.mark.parametrize(
    ("cidr", "az_count", "private_prefix", "public_prefix", "message"),
    [
        ("10.0.0.0/26", 3, None, None, r"holds 64 addresses but .* need 96"),
        ("10.0.0.0/28", 1, None, None, r"too small for 1 AZ\(s\): private subnets would be /29"),
        ("10.0.0.0/16", 3, 17, None, r"need 1\d+; use a larger VPC CIDR"),
        ("10.0.0.0/20", 2, 16, None, r"private subnets of /16 do not fit inside the /20 VPC"),
        ("10.0.0.0/16", 0, None, None, r"at least one availability zone"),
    ],
)
def test_impossible_layouts_are_refused_with_a_reason(
    cidr: str, az_count: int, private_prefix: int | None, public_prefix: int | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        plan_subnets(ipaddress.IPv4Network(cidr), az_count, private_prefix, public_prefix)
