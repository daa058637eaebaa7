"""A folder that answers the few S3 calls the prediction log, the feedback store and the summary reader make.

For `file://` URIs: on the dev host no container can reach the instance role (IMDS hop limit 1), so the service
writes its log and labels into a host folder, and the host's timer (host_user_data.sh) copies them to the model
bucket with the host's role; it then copies the bucket's log and labels into a folder for the label join, which runs
in a container without a network, and copies its output back. `If-None-Match: *` keeps its meaning: the file is
created exclusively, so the first label for an id wins here too.
"""

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import ClientError


def _error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


class LocalObjects:
    """`put_object`, `get_object`, `upload_file` and the `list_objects_v2` paginator on `<root>/<bucket>/<key>`:
    file:///a/b/c/ is bucket "a", prefix "b/c/"."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, bucket: str, key: str) -> Path:
        return self.root / bucket / key

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, IfNoneMatch: str | None = None, **_: Any) -> None:  # noqa: N803 (boto3's names)
        path = self._path(Bucket, Key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if IfNoneMatch == "*":
            try:
                with path.open("xb") as created:
                    created.write(Body)
                    created.flush()
                    os.fsync(created.fileno())
            except FileExistsError:
                raise _error("PreconditionFailed", "PutObject") from None
            return
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as staged:
            staged.write(Body)
        Path(staged.name).replace(path)

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        try:
            return {"Body": _Body(self._path(Bucket, Key).read_bytes())}
        except FileNotFoundError:
            raise _error("NoSuchKey", "GetObject") from None

    def upload_file(self, filename: str, bucket: str, key: str, ExtraArgs: Any = None) -> None:  # noqa: N803
        self.put_object(Bucket=bucket, Key=key, Body=Path(filename).read_bytes())

    def get_paginator(self, operation: Literal["list_objects_v2"]) -> "_KeyPages":
        """The one listing the label join makes; the type admits no other operation."""
        return _KeyPages(self.root)


class _KeyPages:
    """One page holding every file under the prefix, as S3 names them (keys relative to the bucket)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def paginate(self, *, Bucket: str, Prefix: str = "") -> Iterator[dict[str, Any]]:  # noqa: N803 (boto3's names)
        bucket = self.root / Bucket
        keys = (
            sorted(path.relative_to(bucket).as_posix() for path in bucket.rglob("*") if path.is_file())
            if bucket.is_dir()
            else []
        )
        yield {"Contents": [{"Key": key} for key in keys if key.startswith(Prefix)]}


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self) -> bytes:
        return self._data
