"""The committed price snapshot (`prices.json`): on-demand prices per region, with their source and date."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SNAPSHOT_PATH = Path(__file__).with_name("prices.json")
# Every region's table holds these unit prices besides the instance types.
UNIT_PRICES = (
    "eks_cluster_hour",
    "nat_gateway_hour",
    "public_ipv4_hour",
    "alb_hour",
    "alb_lcu_hour",
    "ebs_gp3_gb_month",
    "kms_key_month",
    "logs_ingest_gb",
    "logs_storage_gb_month",
)


class PriceSnapshotError(Exception):
    """The snapshot file is missing or malformed; the message names what is wrong."""


@dataclass(frozen=True)
class PriceSnapshot:
    currency: str
    as_of: str
    source: str
    hours_per_month: float
    regions: dict[str, dict[str, Any]]

    def region(self, region: str) -> dict[str, Any] | None:
        return self.regions.get(region)

    def to_json(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "as_of": self.as_of,
            "source": self.source,
            "hours_per_month": self.hours_per_month,
            "regions": self.regions,
        }


def load_snapshot(path: Path = SNAPSHOT_PATH) -> PriceSnapshot:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise PriceSnapshotError(f"{path}: cannot read the price snapshot: {error}") from None
    try:
        snapshot = PriceSnapshot(
            currency=str(document["currency"]),
            as_of=str(document["as_of"]),
            source=str(document["source"]),
            hours_per_month=float(document["hours_per_month"]),
            regions=dict(document["regions"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise PriceSnapshotError(f"{path}: not a price snapshot: {error!r} missing or malformed") from None
    for name, table in snapshot.regions.items():
        missing = [key for key in (*UNIT_PRICES, "ec2_instance_hour") if key not in table]
        if missing:
            raise PriceSnapshotError(f"{path}: region {name} lacks {missing}")
    return snapshot
