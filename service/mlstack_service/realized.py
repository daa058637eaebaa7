"""The label join's realized performance (label_join.py's summary.json), read from S3 for /metrics.

Every replica reads the same object, so every replica exports the same values for the fleet: a query takes `max`
(or any one) of them, never a sum. The last summary read stays exported when a read fails (counted); its age
(`mlstack_realized_summary_age_seconds`) shows when the join stopped running.
"""

import math
import time
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError


class RealizedPerformance:
    def __init__(self, client: Any, bucket: str, key: str, model_version: str) -> None:
        self._client = client
        self.bucket = bucket
        self.key = key
        self._model_version = model_version
        self.accuracy = math.nan
        self.log_loss = math.nan
        self.labelled_rows = 0
        self.generated_at = math.nan
        self.read_failures = 0

    def refresh(self) -> None:
        """Reads the summary; a missing one (no join yet) leaves NaN, a failed read leaves the last one."""
        try:
            summary = orjson.loads(self._client.get_object(Bucket=self.bucket, Key=self.key)["Body"].read())
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404", "NotFound"):
                self.read_failures += 1
            return
        except (BotoCoreError, orjson.JSONDecodeError):
            self.read_failures += 1
            return
        version = summary.get("versions", {}).get(self._model_version) or {}
        accuracy, log_loss = version.get("accuracy"), version.get("log_loss")
        self.accuracy = float(accuracy) if isinstance(accuracy, int | float) else math.nan
        self.log_loss = float(log_loss) if isinstance(log_loss, int | float) else math.nan
        self.labelled_rows = int(version.get("labelled_rows") or 0)
        generated = summary.get("generated_at")
        self.generated_at = float(generated) if isinstance(generated, int | float) else math.nan

    def age_seconds(self) -> float:
        return time.time() - self.generated_at if not math.isnan(self.generated_at) else math.nan
