"""`mlstack cost refresh`: rebuild the price snapshot from the AWS Price List API (boto3 `pricing`, GetProducts).

Every unit price of every region is fetched, or nothing is written: a snapshot with a silently missing price would
estimate that line at zero. Prices are on-demand, Linux, shared tenancy, in USD; where a product has tiers, the first
tier's (from 0) price is used.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from infra.preview.cost.prices import PriceSnapshot

PRICING_REGION = "us-east-1"  # the Price List API answers from us-east-1 (and ap-south-1)
SOURCE = "AWS Price List API (GetProducts), on-demand, fetched by `mlstack cost refresh`"


class PriceRefreshError(Exception):
    """A price the snapshot needs could not be found; the message names it and the region."""


class PricingClient(Protocol):
    def get_products(self, **kwargs: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PriceQuery:
    """One unit price: the product whose usage type ends with `usage_suffix`, among those the filters select."""

    key: str
    service_code: str
    usage_suffix: str
    filters: dict[str, str] = field(default_factory=dict)


UNIT_QUERIES = (
    PriceQuery("eks_cluster_hour", "AmazonEKS", "AmazonEKS-Hours:perCluster"),
    PriceQuery("nat_gateway_hour", "AmazonEC2", "NatGateway-Hours", {"productFamily": "NAT Gateway"}),
    PriceQuery("public_ipv4_hour", "AmazonVPC", "PublicIPv4:InUseAddress"),
    PriceQuery("alb_hour", "AWSELB", "LoadBalancerUsage", {"productFamily": "Load Balancer-Application"}),
    PriceQuery("alb_lcu_hour", "AWSELB", "LCUUsage", {"productFamily": "Load Balancer-Application"}),
    PriceQuery("ebs_gp3_gb_month", "AmazonEC2", "EBS:VolumeUsage.gp3", {"volumeApiName": "gp3"}),
    PriceQuery("kms_key_month", "awskms", "KMS-Keys"),
    PriceQuery("logs_ingest_gb", "AmazonCloudWatch", "DataProcessing-Bytes"),
    PriceQuery("logs_storage_gb_month", "AmazonCloudWatch", "TimedStorage-ByteHrs"),
)
INSTANCE_FILTERS = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
    "licenseModel": "No License required",
}


def _products(client: PricingClient, service_code: str, filters: dict[str, str]) -> Iterable[dict[str, Any]]:
    arguments: dict[str, Any] = {
        "ServiceCode": service_code,
        "Filters": [{"Type": "TERM_MATCH", "Field": name, "Value": value} for name, value in filters.items()],
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }
    while True:
        page = client.get_products(**arguments)
        for document in page.get("PriceList", []):
            yield json.loads(document) if isinstance(document, str) else document
        token = page.get("NextToken")
        if not token:
            return
        arguments["NextToken"] = token


def on_demand_usd(product: dict[str, Any]) -> float | None:
    """The first-tier on-demand USD price of a Price List product document."""
    for term in (product.get("terms", {}).get("OnDemand") or {}).values():
        dimensions = list((term.get("priceDimensions") or {}).values())
        dimensions.sort(key=lambda dimension: float(dimension.get("beginRange", "0") or 0))
        for dimension in dimensions:
            price = (dimension.get("pricePerUnit") or {}).get("USD")
            if price is not None:
                return float(price)
    return None


def _find(client: PricingClient, query: PriceQuery, region: str) -> float:
    for product in _products(client, query.service_code, {"regionCode": region, **query.filters}):
        usage = product.get("product", {}).get("attributes", {}).get("usagetype", "")
        if usage.endswith(query.usage_suffix):
            price = on_demand_usd(product)
            if price is not None:
                return price
    raise PriceRefreshError(
        f"{query.key} in {region}: no {query.service_code} product with usage type *{query.usage_suffix} "
        f"and an on-demand USD price"
    )


def _instance_price(client: PricingClient, instance_type: str, region: str) -> float:
    filters = {"regionCode": region, "instanceType": instance_type, **INSTANCE_FILTERS}
    for product in _products(client, "AmazonEC2", filters):
        if "BoxUsage" in product.get("product", {}).get("attributes", {}).get("usagetype", ""):
            price = on_demand_usd(product)
            if price is not None:
                return price
    raise PriceRefreshError(f"instance type {instance_type} in {region}: no on-demand Linux price found")


def refresh_snapshot(
    client: PricingClient, regions: Iterable[str], instance_types: Iterable[str], hours_per_month: float = 730
) -> PriceSnapshot:
    tables: dict[str, dict[str, Any]] = {}
    for region in sorted(set(regions)):
        table: dict[str, Any] = {"ec2_instance_hour": {}}
        for instance_type in sorted(set(instance_types)):
            table["ec2_instance_hour"][instance_type] = _instance_price(client, instance_type, region)
        for query in UNIT_QUERIES:
            price = _find(client, query, region)
            # CloudWatch bills storage per GB-month and ingestion per GB, as listed; nothing to convert.
            table[query.key] = price
        tables[region] = table
    return PriceSnapshot(
        currency="USD",
        as_of=datetime.now(UTC).date().isoformat(),
        source=SOURCE,
        hours_per_month=hours_per_month,
        regions=tables,
    )
