"""Batch scoring over CSV and Parquet, local and in S3, with rejects reported and memory bounded."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from mlstack_service.synthetic import FEATURE_NAMES, generate_applications
from tests.service.conftest import MotoS3, predictions_in_process
from tests.service.models import EXAMPLE_PACKAGE

BATCH = [sys.executable, "-m", "mlstack_service.batch", "--model", str(EXAMPLE_PACKAGE)]


def _table(rows: int, seed: int, first_id: int = 0) -> pa.Table:
    features, _ = generate_applications(rows, seed)
    columns: dict[str, object] = {"id": np.arange(first_id, first_id + rows)}
    columns |= {name: features[:, index].astype(np.float64) for index, name in enumerate(FEATURE_NAMES)}
    return pa.table(columns)


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BATCH, *args], capture_output=True, text=True, timeout=600, check=False, env={**os.environ, **(env or {})}
    )


def test_csv_scores_every_valid_row_and_rejects_the_rest_with_reasons(tmp_path: Path) -> None:
    source = tmp_path / "applications.csv"
    pa_csv.write_csv(_table(500, seed=3), source)
    lines = source.read_text().splitlines()
    for line_number, column, value in ((6, 3, "abc"), (10, 5, ""), (12, 2, "inf")):  # line 1 is the header
        cells = lines[line_number].split(",")
        cells[column] = value
        lines[line_number] = ",".join(cells)
    source.write_text("\n".join(lines) + "\n")

    result = _run("--input", str(source), "--output", str(tmp_path / "out" / "scores.csv"))
    assert result.returncode == 0, result.stderr
    assert "scored 497 rows" in result.stderr
    assert "rejected 3" in result.stderr
    assert "line 7 (id 5): loan_amount: 'abc' is not a number" in result.stderr
    assert "line 11 (id 9): credit_score: missing value" in result.stderr
    assert "line 13 (id 11): annual_income: inf is not a finite number" in result.stderr

    scores = pa_csv.read_csv(tmp_path / "out" / "scores.csv")
    assert scores.column_names == ["id", "predicted_class", "probability_rejected", "probability_approved"]
    assert scores.num_rows == 497
    assert set(scores.column("id").to_pylist()).isdisjoint({5, 9, 11})
    rejects = pa_csv.read_csv(tmp_path / "out" / "scores.csv.rejects.csv")
    assert rejects.column("id").to_pylist() == [5, 9, 11]
    assert rejects.column("line").to_pylist() == [7, 11, 13]
    assert rejects.column("content").to_pylist()[0] == ",".join(lines[6].split(",")[:13])

    clean = _table(500, seed=3).filter(pa.array(~np.isin(np.arange(500), [5, 9, 11])))
    matrix = np.column_stack([clean.column(name).to_numpy() for name in FEATURE_NAMES])
    labels, probabilities = predictions_in_process(matrix)
    assert scores.column("predicted_class").to_pylist() == [["rejected", "approved"][label] for label in labels]
    np.testing.assert_allclose(scores.column("probability_approved").to_numpy(), probabilities[:, 1], rtol=1e-6)


def test_a_line_with_the_wrong_number_of_fields_is_one_reject_and_the_rest_is_scored(tmp_path: Path) -> None:
    source = tmp_path / "applications.csv"
    pa_csv.write_csv(_table(300, seed=4), source)
    lines = source.read_text().splitlines()
    short, long = lines[3].rsplit(",", 2)[0], lines[200] + ",7" * 100  # ids 2 and 199: lines 4 and 201
    lines[3], lines[200] = short, long
    source.write_text("\n".join(lines) + "\n")

    result = _run("--input", str(source), "--output", str(tmp_path / "scores.parquet"))
    assert result.returncode == 0, result.stderr
    assert "scored 298 rows" in result.stderr
    assert "line 4: 11 fields, the header has 13" in result.stderr
    scored = pq.read_table(tmp_path / "scores.parquet").column("id").to_pylist()
    assert scored == [row for row in range(300) if row not in (2, 199)]
    rejects = pa_csv.read_csv(tmp_path / "scores.parquet.rejects.csv")
    assert rejects.column("line").to_pylist() == [4, 201]
    assert rejects.column("content").to_pylist() == [short, long[:199] + "…"]  # bounded
    assert rejects.column("reason").to_pylist()[1] == "113 fields, the header has 13"


def test_a_long_run_of_malformed_lines_is_rejected_line_by_line_and_later_lines_keep_their_numbers(
    tmp_path: Path,
) -> None:
    source = tmp_path / "applications.csv"
    pa_csv.write_csv(_table(3, seed=4), source)
    header, *rows = source.read_text().splitlines()
    rows[1] = rows[1].replace(rows[1].split(",")[2], "abc", 1)  # id 1
    source.write_text("\n".join([header, *["1,2"] * 5_000, *rows]) + "\n")  # more than one spill of 4096

    result = _run("--input", str(source), "--output", str(tmp_path / "scores.csv"))
    assert result.returncode == 0, result.stderr
    assert "scored 2 rows" in result.stderr
    assert "rejected 5001" in result.stderr
    rejects = pa_csv.read_csv(tmp_path / "scores.csv.rejects.csv")
    assert sorted(rejects.column("line").to_numpy().tolist()) == [*range(2, 5_002), 5_003]
    (bad_value,) = [row for row in rejects.to_pylist() if row["line"] == 5_003]
    assert bad_value["reason"] == "annual_income: 'abc' is not a number"


def test_a_run_that_scores_nothing_fails_and_writes_no_output(tmp_path: Path) -> None:
    source = tmp_path / "broken.csv"
    source.write_text("id," + ",".join(FEATURE_NAMES) + "\n1,2,3\n2,x,y\n")
    result = _run("--input", str(source), "--output", str(tmp_path / "scores.csv"))
    assert result.returncode == 2
    assert f"scored nothing from {source} (all 2 rows were rejected); {tmp_path / 'scores.csv'} was not written" in (
        result.stderr
    )
    assert result.stderr.strip().endswith(f"error: no row could be scored in {source}")
    assert not (tmp_path / "scores.csv").exists()
    assert pa_csv.read_csv(tmp_path / "scores.csv.rejects.csv").num_rows == 2


def test_rejects_go_beside_the_output_named_after_it_and_csv_and_parquet_runs_keep_theirs_apart(
    tmp_path: Path,
) -> None:
    source = tmp_path / "applications.csv"
    pa_csv.write_csv(_table(20, seed=5), source)
    lines = source.read_text().splitlines()
    lines[2] = lines[2].replace(lines[2].split(",")[1], "abc", 1)  # id 1
    source.write_text("\n".join(lines) + "\n")
    parquet_source = tmp_path / "applications.parquet"
    pq.write_table(_table(20, seed=5).slice(10), parquet_source)  # ids 10..19, one of them made bad below
    bad = pq.read_table(parquet_source).to_pydict()
    bad["age"][3] = float("nan")  # id 13, the 4th row
    pq.write_table(pa.table(bad), parquet_source)

    assert "default: <output>.rejects.csv" in " ".join(_run("--help").stdout.split())
    assert _run("--input", str(source), "--output", str(tmp_path / "out" / "scores.csv")).returncode == 0
    assert _run("--input", str(parquet_source), "--output", str(tmp_path / "out" / "scores.parquet")).returncode == 0
    assert pa_csv.read_csv(tmp_path / "out" / "scores.csv.rejects.csv").column("id").to_pylist() == [1]
    parquet_rejects = pa_csv.read_csv(tmp_path / "out" / "scores.parquet.rejects.csv")
    assert parquet_rejects.column("id").to_pylist() == [13]
    assert parquet_rejects.column("line").to_pylist() == [4]


def test_an_output_format_it_cannot_write_is_refused_before_scoring(tmp_path: Path) -> None:
    pa_csv.write_csv(_table(5, seed=6), tmp_path / "applications.csv")
    result = _run("--input", str(tmp_path / "applications.csv"), "--output", str(tmp_path / "scores.json"))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"error: {tmp_path / 'scores.json'}: cannot write .json files; name the output .csv or .parquet"
    )
    assert not (tmp_path / "scores.json").exists()


def test_parquet_in_chunks_keeps_ids_aligned(tmp_path: Path) -> None:
    table = _table(2_500, seed=4, first_id=1_000)
    pq.write_table(table, tmp_path / "applications.parquet", row_group_size=700)
    result = _run(
        "--input",
        str(tmp_path / "applications.parquet"),
        "--output",
        str(tmp_path / "scores.parquet"),
        "--chunk-rows",
        "300",
    )
    assert result.returncode == 0, result.stderr
    scores = pq.read_table(tmp_path / "scores.parquet")
    assert scores.column("id").to_pylist() == list(range(1_000, 3_500))
    matrix = np.column_stack([table.column(name).to_numpy() for name in FEATURE_NAMES])
    _, probabilities = predictions_in_process(matrix)
    np.testing.assert_allclose(scores.column("probability_approved").to_numpy(), probabilities[:, 1], rtol=1e-6)
    assert not (tmp_path / "scores.rejects.csv").exists()


def test_s3_input_and_output(tmp_path: Path, moto_s3: MotoS3) -> None:
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="batch")
    pq.write_table(_table(1_000, seed=5), tmp_path / "in.parquet")
    s3.upload_file(str(tmp_path / "in.parquet"), "batch", "incoming/applications.parquet")
    result = _run(
        "--input",
        "s3://batch/incoming/applications.parquet",
        "--output",
        "s3://batch/scored/applications.csv",
        env=moto_s3.env,
    )
    assert result.returncode == 0, result.stderr
    s3.download_file("batch", "scored/applications.csv", str(tmp_path / "scored.csv"))
    scored = pa_csv.read_csv(tmp_path / "scored.csv")
    assert scored.num_rows == 1_000
    assert scored.column("id").to_pylist() == list(range(1_000))


def test_clear_errors_for_missing_files_and_columns(tmp_path: Path) -> None:
    missing = _run("--input", str(tmp_path / "nope.csv"), "--output", str(tmp_path / "x.csv"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: {tmp_path / 'nope.csv'}: no such file"
    pa_csv.write_csv(_table(10, seed=6).drop_columns(["credit_score"]), tmp_path / "partial.csv")
    partial = _run("--input", str(tmp_path / "partial.csv"), "--output", str(tmp_path / "x.csv"))
    assert partial.returncode == 2
    assert "missing columns ['credit_score']" in partial.stderr
    assert "Traceback" not in partial.stderr + missing.stderr


# Measures a command's peak resident memory from a small launcher process: a child forked straight from
# the test process would count the test process's own pages in its peak.
PEAK_LAUNCHER = """
import json, os, subprocess, sys
process = subprocess.Popen(json.loads(sys.argv[1]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
_, status, usage = os.wait4(process.pid, 0)
sys.stderr.write(process.stderr.read().decode())
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _peak_mib(*args: str) -> float:
    """Run the scorer and return its peak resident memory (MiB), as the kernel measured it."""
    result = subprocess.run(
        [sys.executable, "-c", PEAK_LAUNCHER, json.dumps([*BATCH, *args])], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout) / 1024


def write_growing_csvs(small: str, big: str, chunk_rows: int, small_chunks: int, big_chunks: int) -> None:
    """Write the first `small_chunks` chunks to `small` and all `big_chunks` to `big`, one chunk in memory at a time."""
    schema = _table(1, seed=0).schema
    with pa_csv.CSVWriter(small, schema) as small_writer, pa_csv.CSVWriter(big, schema) as big_writer:
        for chunk in range(big_chunks):
            table = _table(chunk_rows, seed=chunk, first_id=chunk * chunk_rows).cast(schema)
            big_writer.write_table(table)
            if chunk < small_chunks:
                small_writer.write_table(table)


def test_memory_stays_bounded_whatever_the_file_size(tmp_path: Path) -> None:
    """Peak memory does not grow with the input, and stays well under the size of a large input."""
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    chunk_rows, small_chunks, big_chunks = 200_000, 3, 18
    generate = (
        "from tests.service.test_batch import write_growing_csvs; "
        f"write_growing_csvs({str(small)!r}, {str(big)!r}, {chunk_rows}, {small_chunks}, {big_chunks})"
    )
    subprocess.run([sys.executable, "-c", generate], check=True, timeout=300)
    big_mib = big.stat().st_size / 2**20

    small_peak = _peak_mib("--input", str(small), "--output", str(tmp_path / "small.parquet"))
    big_peak = _peak_mib("--input", str(big), "--output", str(tmp_path / "big.parquet"))
    assert pq.ParquetFile(tmp_path / "big.parquet").metadata.num_rows == chunk_rows * big_chunks
    assert big_peak < small_peak * 1.3, f"peak grew from {small_peak:.0f} to {big_peak:.0f} MiB with a 6x larger input"
    assert big_peak < big_mib * 0.6, f"peak {big_peak:.0f} MiB while scoring a {big_mib:.0f} MiB file"


def test_a_prefix_scores_every_file_under_it_into_the_output_prefix(tmp_path: Path, moto_s3: MotoS3) -> None:
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="nightly")
    for name, seed in (("monday.parquet", 11), ("tuesday.parquet", 12)):
        pq.write_table(_table(300, seed=seed), tmp_path / name)
        s3.upload_file(str(tmp_path / name), "nightly", f"batch/input/{name}")
    result = _run("--input", "s3://nightly/batch/input/", "--output", "s3://nightly/batch/output/", env=moto_s3.env)
    assert result.returncode == 0, result.stderr
    written = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="nightly", Prefix="batch/output/")["Contents"])
    assert written == ["batch/output/monday.parquet", "batch/output/tuesday.parquet"]
    one_rejects_file = _run(
        "--input",
        "s3://nightly/batch/input/",
        "--output",
        "s3://nightly/batch/output/",
        "--rejects",
        "r.csv",
        env=moto_s3.env,
    )
    assert one_rejects_file.returncode == 2
    assert "--rejects r.csv: names one file, but s3://nightly/batch/input/ is a prefix" in one_rejects_file.stderr
    refused = _run("--input", "s3://nightly/batch/input/", "--output", "s3://nightly/one-file.csv", env=moto_s3.env)
    assert refused.returncode == 2
    assert "the output must be a prefix too" in refused.stderr
