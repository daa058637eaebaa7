"""The offline preview's fake cloud: it answers what it knows and refuses to guess the rest."""

import pulumi
import pytest

from infra.preview.fake_cloud import FakeCloud, UnansweredInvokeError


def test_an_unknown_data_source_is_refused_not_guessed() -> None:
    cloud = FakeCloud("us-east-1")
    with pytest.raises(UnansweredInvokeError, match="aws:rds/getEngineVersion:getEngineVersion"):
        cloud.call(pulumi.runtime.MockCallArgs("aws:rds/getEngineVersion:getEngineVersion", {}, ""))


@pytest.mark.parametrize(("region", "zones"), [("us-east-1", 6), ("us-west-1", 2), ("ap-south-2", 3)])
def test_availability_zones_follow_the_region(region: str, zones: int) -> None:
    answer = FakeCloud(region).call(
        pulumi.runtime.MockCallArgs("aws:index/getAvailabilityZones:getAvailabilityZones", {}, "")
    )
    assert len(answer["names"]) == zones
    assert all(name.startswith(region) for name in answer["names"])


def test_zone_ids_use_the_regions_real_prefix_and_us_east_1a_is_the_zone_eks_rejects() -> None:
    token = "aws:index/getAvailabilityZones:getAvailabilityZones"
    east = FakeCloud("us-east-1").call(pulumi.runtime.MockCallArgs(token, {}, ""))
    assert dict(zip(east["names"], east["zoneIds"], strict=True))["us-east-1a"] == "use1-az3"
    assert FakeCloud("ap-southeast-2").call(pulumi.runtime.MockCallArgs(token, {}, ""))["zoneIds"][0] == "apse2-az1"


def test_instance_type_offerings_leave_large_gpu_types_out_of_some_zones() -> None:
    token = "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings"
    filters = [{"name": "instance-type", "values": ["g5.xlarge", "p4d.24xlarge"]}]
    cloud = FakeCloud("us-west-2")
    by_id = cloud.call(
        pulumi.runtime.MockCallArgs(token, {"locationType": "availability-zone-id", "filters": filters}, "")
    )
    offered = set(zip(by_id["locations"], by_id["instanceTypes"], strict=True))
    assert {zone for zone, name in offered if name == "g5.xlarge"} == {"usw2-az1", "usw2-az2", "usw2-az3", "usw2-az4"}
    assert {zone for zone, name in offered if name == "p4d.24xlarge"} == {"usw2-az2", "usw2-az4"}
    by_name = cloud.call(
        pulumi.runtime.MockCallArgs(token, {"locationType": "availability-zone", "filters": filters}, "")
    )
    assert "us-west-2b" in by_name["locations"]
    assert cloud.call(pulumi.runtime.MockCallArgs(token, {"filters": []}, ""))["instanceTypes"] == []
