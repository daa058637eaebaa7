"""Labels in S3, where every replica (and the label join) finds them: one object per prediction id.

    <prefix><prediction id>.json    {"id": ..., "labels": [0, 1, ...], "received_at": <unix time>}

The first valid label for an id wins: the object is written with `If-None-Match: *`, so S3 itself refuses a second
write for the same id, from any replica, even two racing ones. A label is acknowledged (the feedback route's 200)
only after S3 stored it, so a restart or a lost pod loses no acknowledged label; when S3 can't be reached the route
answers 503 and the labelling system retries. The prediction id is checked before anything is written (its MAC,
prediction_ids.py), so a guessed id never reaches the bucket.
"""

import time
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from mlstack_service.errors import ServiceError

ALREADY_EXISTS = ("PreconditionFailed", "412", "ConditionalRequestConflict")


class FeedbackStoreUnavailableError(ServiceError):
    """S3 did not store the label: nothing was acknowledged, the sender should retry."""

    status = 503


class FeedbackStore:
    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        self.outcomes = {"recorded": 0, "duplicate": 0, "failed": 0}

    def key_for(self, prediction_id: str) -> str:
        return f"{self.prefix}{prediction_id}.json"

    def record(self, prediction_id: str, labels: list[int]) -> bool:
        """True when stored now; False when an earlier label for the id holds (it wins, this one is dropped)."""
        body = orjson.dumps({"id": prediction_id, "labels": labels, "received_at": round(time.time(), 3)})
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self.key_for(prediction_id),
                Body=body,
                IfNoneMatch="*",
                ContentType="application/json",
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "error")
            if code in ALREADY_EXISTS:
                self.outcomes["duplicate"] += 1
                return False
            self.outcomes["failed"] += 1
            raise FeedbackStoreUnavailableError(
                f"the label for {prediction_id!r} was not stored ({code}); nothing was recorded, retry"
            ) from None
        except BotoCoreError as error:
            self.outcomes["failed"] += 1
            raise FeedbackStoreUnavailableError(
                f"the label for {prediction_id!r} was not stored ({type(error).__name__}); nothing was recorded, retry"
            ) from None
        self.outcomes["recorded"] += 1
        return True
