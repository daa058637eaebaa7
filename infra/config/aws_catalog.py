"""What AWS itself would accept: regions and EC2 instance types, from the data botocore ships.

botocore carries the endpoint catalogue (every partition's regions) and the EC2 API model, whose `InstanceType`
enum lists every instance type EC2 accepts. Both come with the installed package, so checking against them needs
no credentials and no network, and they move forward with each botocore release instead of a hand table.
"""

import difflib
from functools import cache

from botocore.loaders import Loader


@cache
def aws_regions() -> frozenset[str]:
    """Every region of every partition in botocore's endpoint catalogue."""
    endpoints = Loader().load_data("endpoints")
    return frozenset(region for partition in endpoints["partitions"] for region in partition["regions"])


@cache
def ec2_instance_types() -> frozenset[str]:
    """Every value of the EC2 API model's `InstanceType` enum."""
    model = Loader().load_service_model("ec2", "service-2")
    return frozenset(model["shapes"]["InstanceType"]["enum"])


def suggestion(value: str, known: frozenset[str]) -> str:
    """' Did you mean 'x'?' for the closest known values, or '' when none is close."""
    close = difflib.get_close_matches(value, sorted(known), n=3, cutoff=0.75)
    return f"; did you mean {' or '.join(repr(name) for name in close)}?" if close else ""
