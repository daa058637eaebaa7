"""Batch scoring: predictions for a CSV or Parquet file, local or s3://, streamed in chunks.

    python -m mlstack_service.batch --input s3://bucket/applications.parquet --output s3://bucket/scores.parquet

Memory stays bounded by the chunk size whatever the input's size. Every output row carries the input row's
id. Rows that cannot be scored (a missing, non-numeric or infinite feature, or a CSV line with the wrong number
of fields) are counted, the first few are shown with their reasons, and all are written to a rejects file
(`<output>.rejects.csv`: id, line, reason and the row's content); none is dropped silently, and one bad row
never stops the run. A run that scores no row at all exits non-zero.
"""

import argparse
import os
import sys
import tempfile
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from numpy.typing import NDArray
from pyarrow import fs
from tqdm import tqdm

from mlstack_service.package import PackageError, load_package
from mlstack_service.runtime import OnnxModel
from mlstack_service.settings import Settings

DEFAULT_CHUNK_ROWS = 65_536
# Measured: 1 MiB blocks keep the peak near 150 MiB; 8 MiB blocks tripled it with no gain in speed.
CSV_BLOCK_BYTES = 1 << 20
SHOWN_REJECTS = 5
REJECT_CONTENT_CHARS = 200  # a reject shows this much of its row: enough to find it, never a whole wide line
EXIT_FAILED = 2
OUTPUT_FORMATS = {"csv": "csv", "parquet": "parquet", "pq": "parquet"}


class BatchError(Exception):
    """Scoring cannot proceed: the message names the file, column or setting at fault."""


class BatchWriter(Protocol):
    def write_batch(self, batch: pa.RecordBatch) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Reject:
    """A row that cannot be scored: its id (empty when the line could not be split), where it is, why, and what."""

    row_id: str
    line: int | None
    reason: str
    content: str


@dataclass
class Summary:
    scored: int = 0
    rejected: int = 0
    examples: list[str] = field(default_factory=list)

    def reject(self, reject: Reject) -> None:
        self.rejected += 1
        if len(self.examples) < SHOWN_REJECTS:
            where = f"line {reject.line}" if reject.line is not None else "a line"
            row = f" (id {reject.row_id})" if reject.row_id else ""
            self.examples.append(f"{where}{row}: {reject.reason}")


def bounded(text: str) -> str:
    return text if len(text) <= REJECT_CONTENT_CHARS else text[: REJECT_CONTENT_CHARS - 1] + "…"


class LineNumbers:
    """Where each row of a record batch sits in the input file.

    CSV: the line number as pyarrow counts it (the header is line 1; blank lines are not counted), with the lines
    it skipped for having the wrong number of fields left out of the sequence. Parquet: the row's number, from 1.
    """

    def __init__(self, first: int) -> None:
        self.next = first
        self.skipped: list[int] = []  # ascending, as the reader reports them

    def of(self, offset: int) -> int:
        """The line of the batch's row at `offset` (0-based), stepping over skipped lines."""
        base = self.next
        before = bisect_left(self.skipped, base)
        line = base + offset
        while True:
            candidate = base + offset + bisect_right(self.skipped, line) - before
            if candidate == line:
                return line
            line = candidate

    def advance(self, rows: int) -> None:
        if rows:
            self.next = self.of(rows - 1) + 1
        del self.skipped[: bisect_left(self.skipped, self.next)]


class InvalidCsvRows:
    """pyarrow's invalid-row handler: a line with the wrong number of fields is skipped and kept as a reject.

    pyarrow reads on past malformed lines until it has a row to return, so a long run of them is handed to
    `spill` every `SPILL_EVERY` lines rather than held until the next batch.
    """

    SPILL_EVERY = 4096

    def __init__(self, lines: LineNumbers) -> None:
        self.lines = lines
        self.pending: list[Reject] = []
        self.spill: Callable[[list[Reject]], None] | None = None

    def __call__(self, row: pa_csv.InvalidRow) -> Literal["skip", "error"]:
        number = row.number
        if number is not None:
            self.lines.skipped.append(number)
        fields = "field" if row.actual_columns == 1 else "fields"
        reason = f"{row.actual_columns} {fields}, the header has {row.expected_columns}"
        self.pending.append(Reject("", number, reason, bounded(row.text)))
        if self.spill is not None and len(self.pending) >= self.SPILL_EVERY:
            self.spill(self.drain())
        return "skip"

    def drain(self) -> list[Reject]:
        drained, self.pending = self.pending, []
        return drained


def filesystem_for(uri: str) -> tuple[fs.FileSystem, str]:
    """A pyarrow filesystem and path; s3:// honours AWS_ENDPOINT_URL(_S3) like boto3 does."""
    if not uri.startswith("s3://"):
        return fs.LocalFileSystem(), str(Path(uri).resolve())
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, Any] = {
        "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    }
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        options |= {"endpoint_override": host.rstrip("/"), "scheme": scheme}
    return fs.S3FileSystem(**options), uri.removeprefix("s3://")


def input_format(uri: str, declared: str | None) -> str:
    if declared:
        return declared
    suffix = uri.rsplit(".", 1)[-1].lower()
    if suffix in ("csv", "parquet", "pq"):
        return "parquet" if suffix == "pq" else suffix
    raise BatchError(f"{uri}: cannot tell the format from the name; pass --input-format csv or parquet")


def read_batches(
    uri: str, file_format: str, features: list[str], id_column: str, chunk_rows: int
) -> tuple[Iterator[pa.RecordBatch], int | None, LineNumbers, InvalidCsvRows | None]:
    """Record batches of the id and feature columns, the row count when the format records it, where each row
    sits in the file, and (CSV) the lines skipped for the wrong number of fields."""
    filesystem, path = filesystem_for(uri)
    wanted = [id_column, *features]
    try:
        if file_format == "parquet":
            parquet = pq.ParquetFile(filesystem.open_input_file(path))
            _check_columns(uri, parquet.schema_arrow.names, wanted)
            batches = parquet.iter_batches(batch_size=chunk_rows, columns=wanted)
            return batches, parquet.metadata.num_rows, LineNumbers(1), None
        lines = LineNumbers(2)
        invalid_rows = InvalidCsvRows(lines)
        stream = filesystem.open_input_stream(path)
        reader = pa_csv.open_csv(
            stream,  # type: ignore[arg-type]  # the stubs omit pyarrow's own NativeFile
            # No reader threads: they read ahead of a slower scorer and the queued blocks grow without bound.
            read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
            # A line with too few or too many fields is one reject, not the end of the run.
            parse_options=pa_csv.ParseOptions(invalid_row_handler=invalid_rows),
            # Features are read as text so that one bad value rejects one row, not the whole block.
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in features},
                include_columns=wanted,
                include_missing_columns=True,
            ),
        )
        _check_columns(uri, _csv_header(uri), wanted)
        return iter(reader), None, lines, invalid_rows
    except FileNotFoundError:
        raise BatchError(f"{uri}: no such file") from None
    except (OSError, pa.ArrowInvalid) as error:
        raise BatchError(f"{uri}: cannot read it as {file_format}: {error}") from None


def _csv_header(uri: str) -> list[str]:
    filesystem, path = filesystem_for(uri)
    with filesystem.open_input_stream(path) as stream:
        first_line = stream.read(1 << 16).split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()
    return [name.strip().strip('"') for name in first_line.split(",")]


def _check_columns(uri: str, present: list[str], wanted: list[str]) -> None:
    missing = [name for name in wanted if name not in present]
    if missing:
        raise BatchError(f"{uri}: missing columns {missing}; the file has {present}")


def feature_matrix(
    batch: pa.RecordBatch, features: list[str], id_column: str, lines: LineNumbers, rejects: list[Reject]
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """The batch's features as float32, and a mask of the rows that can be scored; the others go to `rejects`."""
    matrix = np.empty((batch.num_rows, len(features)), dtype=np.float32)
    reasons: list[str | None] = [None] * batch.num_rows
    for column_index, name in enumerate(features):
        column = batch.column(name)
        try:
            values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = _lenient_floats(column.to_pylist(), name, reasons)
        else:
            for row in np.flatnonzero(np.isnan(values) & np.asarray(column.is_null())):
                reasons[row] = reasons[row] or f"{name}: missing value"
        with np.errstate(over="ignore"):
            matrix[:, column_index] = values
        for row in np.flatnonzero(~np.isfinite(matrix[:, column_index])):
            reasons[row] = reasons[row] or f"{name}: {float(values[row])} is not a finite number"
    valid = np.array([reason is None for reason in reasons], dtype=bool)
    if not valid.all():
        wanted = [id_column, *features]
        for bad_row in np.flatnonzero(~valid).tolist():
            cells = [batch.column(name)[bad_row].as_py() for name in wanted]
            content = ",".join("" if cell is None else str(cell) for cell in cells)
            row_id = "" if cells[0] is None else str(cells[0])
            rejects.append(Reject(row_id, lines.of(bad_row), reasons[bad_row] or "invalid", bounded(content)))
    return matrix, valid


def _lenient_floats(items: list[Any], name: str, reasons: list[str | None]) -> NDArray[np.float64]:
    """Row-by-row conversion for a column that holds something other than numbers."""
    values = np.full(len(items), np.nan)
    for row, item in enumerate(items):
        if item is None or (isinstance(item, str) and not item.strip()):
            reasons[row] = reasons[row] or f"{name}: missing value"
            continue
        try:
            values[row] = float(item)
        except (TypeError, ValueError):
            reasons[row] = reasons[row] or f"{name}: {item!r} is not a number"
    return values


def open_writer(uri: str, schema: pa.Schema, file_format: str) -> BatchWriter:
    filesystem, path = filesystem_for(uri)
    if not uri.startswith("s3://"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    sink = filesystem.open_output_stream(path)
    if file_format == "parquet":
        return pq.ParquetWriter(sink, schema)
    return pa_csv.CSVWriter(sink, schema)  # type: ignore[arg-type]  # the stubs omit NativeFile


def default_rejects_uri(output: str) -> str:
    """`<output>.rejects.csv`: beside the output and named after all of it, so scores.csv and scores.parquet
    written side by side keep their rejects apart."""
    return f"{output}.rejects.csv"


def output_format(output_uri: str, source_format: str) -> str:
    """The output's format from its extension (the input's format when it has none); any other extension is
    refused rather than written as something else."""
    name = output_uri.rsplit("/", 1)[-1]
    if "." not in name:
        return source_format
    extension = name.rsplit(".", 1)[-1].lower()
    if extension not in OUTPUT_FORMATS:
        raise BatchError(f"{output_uri}: cannot write .{extension} files; name the output .csv or .parquet")
    return OUTPUT_FORMATS[extension]


def score(
    model: OnnxModel,
    *,
    input_uri: str,
    output_uri: str,
    rejects_uri: str,
    id_column: str,
    chunk_rows: int,
    file_format: str | None = None,
    progress: bool = False,
) -> Summary:
    metadata = model.metadata
    features = metadata.feature_names
    source_format = input_format(input_uri, file_format)
    target_format = output_format(output_uri, source_format)
    batches, total, lines, invalid_rows = read_batches(input_uri, source_format, features, id_column, chunk_rows)
    summary = Summary()
    writer: BatchWriter | None = None
    reject_writer: BatchWriter | None = None
    reject_columns: list[tuple[str, pa.DataType]] = [
        (id_column, pa.string()),
        ("line", pa.int64()),
        ("reason", pa.string()),
        ("content", pa.string()),
    ]
    reject_schema = pa.schema(reject_columns)

    def write_rejects(rejects: list[Reject]) -> None:
        nonlocal reject_writer
        if not rejects:
            return
        for reject in rejects:
            summary.reject(reject)
        if reject_writer is None:
            reject_writer = open_writer(rejects_uri, reject_schema, "csv")
        reject_writer.write_batch(
            pa.RecordBatch.from_pydict(
                {
                    id_column: [reject.row_id for reject in rejects],
                    "line": [reject.line for reject in rejects],
                    "reason": [reject.reason for reject in rejects],
                    "content": [reject.content for reject in rejects],
                },
                schema=reject_schema,
            )
        )

    if invalid_rows:
        invalid_rows.spill = write_rejects
    with tqdm(total=total, unit="rows", disable=not progress, file=sys.stderr) as bar:
        try:
            for batch in batches:
                rejects = invalid_rows.drain() if invalid_rows else []
                matrix, valid = feature_matrix(batch, features, id_column, lines, rejects)
                lines.advance(batch.num_rows)
                if valid.any():
                    prediction = model.predict(np.ascontiguousarray(matrix[valid]))
                    columns = {
                        id_column: batch.column(id_column).filter(pa.array(valid)),
                        "predicted_class": pa.array(np.asarray(metadata.class_names)[prediction.labels]),
                        **{
                            f"probability_{name}": pa.array(prediction.probabilities[:, index])
                            for index, name in enumerate(metadata.class_names)
                        },
                    }
                    table = pa.RecordBatch.from_pydict(columns)
                    if writer is None:
                        writer = open_writer(output_uri, table.schema, target_format)
                    writer.write_batch(table)
                    summary.scored += int(valid.sum())
                write_rejects(sorted(rejects, key=lambda reject: reject.line or 0))
                bar.update(batch.num_rows)
            if invalid_rows:  # lines skipped after the last batch with a valid row
                write_rejects(invalid_rows.drain())
        except (OSError, pa.ArrowInvalid) as error:
            raise BatchError(f"{input_uri}: reading failed part-way: {error}") from None
        finally:
            for open_one in (writer, reject_writer):
                if open_one is not None:
                    open_one.close()
    return summary


def expand_inputs(input_uri: str, output_uri: str) -> list[tuple[str, str]]:
    """(input, output) pairs: the file itself, or every CSV/Parquet file under a prefix ending in '/'."""
    if not input_uri.endswith("/"):
        return [(input_uri, output_uri)]
    if not output_uri.endswith("/"):
        raise BatchError(
            f"{output_uri}: with an input prefix ({input_uri}) the output must be a prefix too (end it with /)"
        )
    filesystem, path = filesystem_for(input_uri)
    scheme = "s3://" if input_uri.startswith("s3://") else ""
    try:
        found = filesystem.get_file_info(fs.FileSelector(path.rstrip("/"), recursive=False, allow_not_found=True))
    except OSError as error:
        raise BatchError(f"{input_uri}: cannot list it: {error}") from None
    names = sorted(
        info.base_name
        for info in found
        if info.type == fs.FileType.File and info.base_name.rsplit(".", 1)[-1] in ("csv", "parquet", "pq")
    )
    if not names:
        raise BatchError(f"{input_uri}: no .csv or .parquet files under it")
    return [(f"{input_uri}{name}" if scheme else str(Path(input_uri) / name), f"{output_uri}{name}") for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlstack_service.batch", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--input",
        required=True,
        help="CSV or Parquet file, local or s3://bucket/key; a prefix ending in / scores every file under it",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="where predictions go: .csv or .parquet (another extension is refused; none: the input's format); "
        "a prefix for a prefix",
    )
    parser.add_argument("--model", default=Settings().model_uri, help="model package: folder or s3:// prefix")
    parser.add_argument(
        "--rejects",
        help="where rows that cannot be scored go, as CSV with id, line, reason and content "
        "(default: <output>.rejects.csv; with an input prefix always that, one per output)",
    )
    parser.add_argument("--id-column", default="id", help="the input's row id column (default: id)")
    parser.add_argument("--input-format", choices=("csv", "parquet"), help="when the file name does not tell")
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="rows per chunk (Parquet)")
    args = parser.parse_args(argv)
    unscored: list[str] = []
    try:
        if args.rejects and args.input.endswith("/"):
            raise BatchError(
                f"--rejects {args.rejects}: names one file, but {args.input} is a prefix; "
                "leave it out and each output gets <output>.rejects.csv"
            )
        pairs = expand_inputs(args.input, args.output)
        for input_uri, output_uri in pairs:  # before the model loads: a typo costs nothing
            output_format(output_uri, input_format(input_uri, args.input_format))
        with tempfile.TemporaryDirectory(prefix="mlstack-model-") as cache:
            model = OnnxModel(load_package(args.model, Path(cache)), Settings(model_uri=args.model))
            for input_uri, output_uri in pairs:
                rejects_uri = args.rejects or default_rejects_uri(output_uri)
                summary = score(
                    model,
                    input_uri=input_uri,
                    output_uri=output_uri,
                    rejects_uri=rejects_uri,
                    id_column=args.id_column,
                    chunk_rows=args.chunk_rows,
                    file_format=args.input_format,
                    progress=sys.stderr.isatty(),
                )
                _report(summary, input_uri, output_uri, rejects_uri)
                if not summary.scored:
                    unscored.append(input_uri)
    except (BatchError, PackageError) as error:
        print(f"error: {error}", file=sys.stderr)  # noqa: T201 (the command's user interface)
        return EXIT_FAILED
    if unscored:
        print(f"error: no row could be scored in {', '.join(unscored)}", file=sys.stderr)  # noqa: T201
        return EXIT_FAILED
    return 0


def _report(summary: Summary, input_uri: str, output_uri: str, rejects_uri: str) -> None:
    if summary.scored:
        print(f"scored {summary.scored} rows into {output_uri}; rejected {summary.rejected}", file=sys.stderr)  # noqa: T201
    else:
        what = f"all {summary.rejected} rows were rejected" if summary.rejected else "it has no rows"
        print(f"scored nothing from {input_uri} ({what}); {output_uri} was not written", file=sys.stderr)  # noqa: T201
    if summary.rejected:
        print(f"rejected rows are in {rejects_uri}; the first {len(summary.examples)}:", file=sys.stderr)  # noqa: T201
        for example in summary.examples:
            print(f"  {example}", file=sys.stderr)  # noqa: T201


if __name__ == "__main__":
    sys.exit(main())
