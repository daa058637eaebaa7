"""Training data: a labelled CSV or Parquet file, or every such file under a prefix, local or s3://.

Each file holds the model's feature columns and a label column of 0/1. Rows with a missing or non-numeric feature
or label are dropped and counted; a file without the columns, or a label other than 0 or 1, is an error naming it.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from mlstack_service.batch import BatchError, expand_inputs, filesystem_for, input_format


class DatasetError(Exception):
    """Training data that cannot be used; the message names the file and the column."""


@dataclass(frozen=True)
class Dataset:
    features: NDArray[np.float32]
    labels: NDArray[np.int64]
    sources: list[str]
    dropped_rows: int


def load_dataset(uri: str, feature_names: list[str], label_column: str) -> Dataset:
    try:
        files = [source for source, _ in expand_inputs(uri, uri)]
    except BatchError as error:
        raise DatasetError(str(error)) from None
    features, labels, dropped = [], [], 0
    for source in files:
        table = _read_table(source, [*feature_names, label_column])
        columns = [_as_float(table, name, source) for name in [*feature_names, label_column]]
        matrix = np.column_stack(columns)
        usable = np.all(np.isfinite(matrix), axis=1)
        dropped += int(np.count_nonzero(~usable))
        matrix = matrix[usable]
        label_values = matrix[:, -1]
        unexpected = sorted({float(value) for value in label_values if value not in (0.0, 1.0)})[:5]
        if unexpected:
            raise DatasetError(f"{source}: column {label_column!r} must hold 0 or 1; found {unexpected}")
        features.append(matrix[:, :-1].astype(np.float32))
        labels.append(label_values.astype(np.int64))
    combined_labels = np.concatenate(labels)
    if len(combined_labels) == 0 or len(np.unique(combined_labels)) < 2:
        raise DatasetError(f"{uri}: training needs rows of both classes; it has {len(combined_labels)} usable rows")
    return Dataset(np.concatenate(features), combined_labels, files, dropped)


def _read_table(source: str, columns: list[str]) -> pa.Table:
    filesystem, path = filesystem_for(source)
    try:
        if input_format(source, None) == "parquet":
            table = pq.read_table(path, filesystem=filesystem)
        else:
            with filesystem.open_input_stream(path) as stream:
                table = pa_csv.read_csv(stream)  # type: ignore[arg-type]  # the stubs omit pyarrow's NativeFile
    except BatchError as error:
        raise DatasetError(str(error)) from None
    except FileNotFoundError:
        raise DatasetError(f"{source}: no such file") from None
    except (OSError, pa.ArrowInvalid) as error:
        raise DatasetError(f"{source}: cannot read it: {error}") from None
    missing = [name for name in columns if name not in table.column_names]
    if missing:
        raise DatasetError(f"{source}: missing columns {missing}; the file has {table.column_names}")
    return table


def _as_float(table: pa.Table, name: str, source: str) -> NDArray[np.float64]:
    column: Any = table.column(name)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        # Text that is not a number becomes null, and the row is dropped with the others.
        numeric = pc.match_substring_regex(column, r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
        column = pc.if_else(numeric, column, pa.scalar(None, pa.string()))
    try:
        # Nulls come out as NaN, and load_dataset drops those rows.
        return np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise DatasetError(f"{source}: column {name!r} is not numeric: {error}") from None
