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
