"""`mlstack cost refresh` against the Price List API's GetProducts.

Most tests here use product documents this test file builds (`_product`, `_products_built_here`) and a stand-in
client that filters them like GetProducts (TERM_MATCH on attributes, pages of JSON strings): they are written by the
same hands as the parser, so they prove the filtering and tiering logic, not the response format. The format is
checked by `test_the_documented_get_products_response_is_priced`, whose input is AWS's own documented example."""

import json
from pathlib import Path
from typing import Any

import pytest

from infra.preview.cost.prices import PriceSnapshot, load_snapshot
from infra.preview.cost.refresh import (
    UNIT_QUERIES,
    PriceQuery,
    PriceRefreshError,
    _find,
    _products,
    on_demand_usd,
    refresh_snapshot,
)

REGIONS = ("us-east-1", "eu-west-1")


def _product(service: str, family: str, attributes: dict[str, str], *tiers: tuple[str, str]) -> dict[str, Any]:
    """A product document shaped by this test after GetProducts' format, with one on-demand term of the given
    (beginRange, USD) tiers."""
    dimensions = {
        f"SKU.JRTCKXETXF.{index}": {
            "unit": "Hrs",
            "beginRange": begin,
            "endRange": "Inf",
            "pricePerUnit": {"USD": price},
            "description": f"tier from {begin}",
        }
        for index, (begin, price) in enumerate(tiers)
    }
    return {
        "product": {"productFamily": family, "attributes": {"servicecode": service, **attributes}, "sku": "SKU"},
        "serviceCode": service,
        "terms": {"OnDemand": {"SKU.JRTCKXETXF": {"priceDimensions": dimensions, "offerTermCode": "JRTCKXETXF"}}},
        "version": "20261101000000",
        "publicationDate": "2026-11-01T00:00:00Z",
    }


def _products_built_here(region: str, factor: float) -> list[dict[str, Any]]:
    prefix = "USE1-" if region == "us-east-1" else "EU-"
    base = {"regionCode": region, "location": region}

    def money(amount: float) -> str:
        return f"{amount * factor:.10f}"

    instance = {
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "licenseModel": "No License required",
    }
    products = []
    for instance_type, price in (("t3.large", 0.0832), ("m6i.xlarge", 0.192)):
        attributes = {**base, **instance, "instanceType": instance_type, "capacitystatus": "Used"}
        box_usage = {"usagetype": f"{prefix}BoxUsage:{instance_type}"}
        products.append(_product("AmazonEC2", "Compute Instance", {**attributes, **box_usage}, ("0", money(price))))
        # Decoys the filters must leave out: Windows, and capacity reservations.
        windows = {**attributes, **box_usage, "operatingSystem": "Windows"}
        products.append(_product("AmazonEC2", "Compute Instance", windows, ("0", money(price * 2))))
        unused = {**attributes, **box_usage, "capacitystatus": "UnusedCapacityReservation"}
        products.append(_product("AmazonEC2", "Compute Instance", unused, ("0", money(price * 3))))
    units = {
        ("AmazonEKS", "Compute", "AmazonEKS-Hours:perCluster"): 0.10,
        ("AmazonEC2", "NAT Gateway", "NatGateway-Hours"): 0.045,
        ("AmazonVPC", "VPC Public IPv4 Address", "PublicIPv4:InUseAddress"): 0.005,
        ("AWSELB", "Load Balancer-Application", "LoadBalancerUsage"): 0.0225,
        ("AWSELB", "Load Balancer-Application", "LCUUsage"): 0.008,
        ("AmazonEC2", "Storage", "EBS:VolumeUsage.gp3"): 0.08,
        ("awskms", "Encryption Key", "KMS-Keys"): 1.0,
        ("AmazonCloudWatch", "Data Payload", "DataProcessing-Bytes"): 0.50,
        ("AmazonCloudWatch", "Storage Snapshot", "TimedStorage-ByteHrs"): 0.03,
    }
    for (service, family, usage), price in units.items():
        attributes = {**base, "usagetype": f"{prefix}{usage}"}
        if usage.endswith("gp3"):
            attributes["volumeApiName"] = "gp3"
        # Tiered like CloudWatch's ingestion: the first tier is the one that applies to a small stack.
        products.append(_product(service, family, attributes, ("10240", money(price / 2)), ("0", money(price))))
    # The EKS extended-support price must not be taken for the standard one.
    extended = {**base, "usagetype": f"{prefix}AmazonEKS-Hours:extendedSupport"}
    products.append(_product("AmazonEKS", "Compute", extended, ("0", money(0.60))))
    return products


class FilteringPriceListStub:
    """A stand-in for GetProducts over product documents the test built, one small page at a time."""

    def __init__(self, products: list[dict[str, Any]]) -> None:
        self.products = products
        self.calls = 0

    def get_products(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        assert kwargs["FormatVersion"] == "aws_v1"

        def matches(product: dict[str, Any]) -> bool:
            fields = {**product["product"]["attributes"], "productFamily": product["product"]["productFamily"]}
            return product["serviceCode"] == kwargs["ServiceCode"] and all(
                item["Type"] == "TERM_MATCH" and fields.get(item["Field"]) == item["Value"]
                for item in kwargs["Filters"]
            )

        found = [json.dumps(product) for product in self.products if matches(product)]
        start = int(kwargs.get("NextToken", "0"))
        page = found[start : start + 2]
        response: dict[str, Any] = {"PriceList": page, "FormatVersion": "aws_v1"}
        if start + 2 < len(found):
            response["NextToken"] = str(start + 2)
        return response


def test_refresh_prices_every_region_from_the_matching_products(tmp_path: Path) -> None:
    client = FilteringPriceListStub([*_products_built_here("us-east-1", 1.0), *_products_built_here("eu-west-1", 1.1)])
    snapshot = refresh_snapshot(client, REGIONS, ["t3.large", "m6i.xlarge"])
    east, ireland = snapshot.regions["us-east-1"], snapshot.regions["eu-west-1"]
    assert east["ec2_instance_hour"] == {"m6i.xlarge": 0.192, "t3.large": 0.0832}
    assert ireland["ec2_instance_hour"]["t3.large"] == pytest.approx(0.0832 * 1.1)
    assert east["eks_cluster_hour"] == 0.10  # not the extended-support price
    assert east["logs_ingest_gb"] == 0.50  # the first tier
    assert {query.key for query in UNIT_QUERIES} <= set(east)
    assert snapshot.source.startswith("AWS Price List API")
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(snapshot.to_json()))
    assert load_snapshot(path) == PriceSnapshot(**json.loads(path.read_text()))


def test_a_missing_price_stops_the_refresh_naming_it() -> None:
    products = [
        p for p in _products_built_here("us-east-1", 1.0) if "NatGateway" not in p["product"]["attributes"]["usagetype"]
    ]
    with pytest.raises(PriceRefreshError, match=r"nat_gateway_hour in us-east-1: no AmazonEC2 product"):
        refresh_snapshot(FilteringPriceListStub(products), ["us-east-1"], ["t3.large"])
    with pytest.raises(PriceRefreshError, match=r"instance type g9.huge in us-east-1"):
        refresh_snapshot(FilteringPriceListStub(_products_built_here("us-east-1", 1.0)), ["us-east-1"], ["g9.huge"])


def test_on_demand_price_reads_the_first_tier() -> None:
    product = _product("AmazonCloudWatch", "Data Payload", {}, ("10240", "0.25"), ("0", "0.50"))
    assert on_demand_usd(product) == 0.50
    assert on_demand_usd({"terms": {}}) is None


# AWS's documented GetProducts example, reproduced as data in tests/fixtures/pricing/ (its `_source` names where it
# comes from: boto/botocore's examples-1.json for the Price List API). Its input asks for EC2 Provisioned IOPS volumes;
# its output is one page, with a NextToken, holding one product as a JSON string.
DOCUMENTED = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "pricing" / "get_products_documented_example.json").read_text()
)
DOCUMENTED_GET_PRODUCTS_INPUT: dict[str, Any] = DOCUMENTED["input"]
DOCUMENTED_GET_PRODUCTS_OUTPUT: dict[str, Any] = DOCUMENTED["output"]


class DocumentedResponsePriceList:
    """Answers the first GetProducts call with AWS's documented output, and the call with its NextToken with an empty
    last page: nothing of it is shaped by this project's code."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def get_products(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if "NextToken" not in kwargs:
            return DOCUMENTED_GET_PRODUCTS_OUTPUT
        assert kwargs["NextToken"] == DOCUMENTED_GET_PRODUCTS_OUTPUT["NextToken"]
        return {"FormatVersion": "aws_v1", "PriceList": []}


def test_the_documented_get_products_response_is_priced() -> None:
    client = DocumentedResponsePriceList()
    query = PriceQuery("ebs_io1_gb_month", "AmazonEC2", "EBS:VolumeUsage.piops", {"volumeType": "Provisioned IOPS"})
    assert _find(client, query, "ca-central-1") == 0.138
    (request,) = client.calls  # the first page held the product
    # The request asks what the documented input asks (plus the region), in the same format version.
    assert request["ServiceCode"] == "AmazonEC2"
    assert request["FormatVersion"] == DOCUMENTED_GET_PRODUCTS_INPUT["FormatVersion"]
    assert DOCUMENTED_GET_PRODUCTS_INPUT["Filters"][1] in request["Filters"]


def test_the_documented_next_token_is_followed_to_the_last_page() -> None:
    client = DocumentedResponsePriceList()
    products = list(_products(client, "AmazonEC2", {"volumeType": "Provisioned IOPS"}))
    assert [p["product"]["sku"] for p in products] == ["WQGC34PB2AWS8R4U"]
    first, second = client.calls
    assert "NextToken" not in first
    assert second["NextToken"] == DOCUMENTED_GET_PRODUCTS_OUTPUT["NextToken"]
