"""The benchmark's headline figures (`service/bench/results.json`): requests a second one core of the service
serves, per protocol and request size, with the machine and the date they were measured on.

`make bench` writes the file; the preview reads it to turn node prices into a price per prediction.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_RESULTS = Path("service") / "bench" / "results.json"  # relative to the repository root
# The checkout this program comes from: the results describe its service, as prices.json sits beside this module
# (a copied project with only Pulumi.yaml and stacks/ still uses them).
REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
PROTOCOLS = ("rest-json", "rest-binary", "grpc")
ROWS_PER_REQUEST = (1, 64)
# Every results file has these figures: what the stack serves today over its public REST port.
REQUIRED = tuple(("rest-json", rows) for rows in ROWS_PER_REQUEST)


class BenchResultsError(Exception):
    """The results file is missing or malformed; the message names the file and what is wrong."""


@dataclass(frozen=True)
class BenchFigure:
    protocol: str
    rows_per_request: int
    requests_per_second_per_core: float

    @property
    def predictions_per_second_per_core(self) -> float:
        """A prediction is one row: a 64-row request makes 64."""
        return self.requests_per_second_per_core * self.rows_per_request


@dataclass(frozen=True)
class BenchResults:
    measured_on: str
    machine: str
    cores: int
    headline: tuple[BenchFigure, ...]  # sorted by protocol (in PROTOCOLS' order), then rows per request

    def to_plan(self) -> dict[str, Any]:
        return {
            "measured_on": self.measured_on,
            "machine": self.machine,
            "cores": self.cores,
            "file": str(BENCH_RESULTS),
        }


def load_bench_results(root: Path | None = None) -> BenchResults:
    """The results file under the repository root (this checkout's unless `root` is given); BenchResultsError names
    what is wrong in one line."""
    path = (root or REPOSITORY_ROOT) / BENCH_RESULTS
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchResultsError(
            f"{path}: no benchmark results; run `make bench` (it writes them) or restore the committed file"
        ) from None
    except OSError as error:
        raise BenchResultsError(f"{path}: cannot read the benchmark results: {error.strerror or error}") from None
    except json.JSONDecodeError as error:
        raise BenchResultsError(f"{path}: not JSON: {error}") from None
    if not isinstance(document, dict):
        raise BenchResultsError(f"{path}: expected an object with measured_on, machine, cores and headline")
    measured_on, machine, cores = document.get("measured_on"), document.get("machine"), document.get("cores")
    if not isinstance(measured_on, str) or not measured_on:
        raise BenchResultsError(f"{path}: measured_on must be the date of the run (YYYY-MM-DD), got {measured_on!r}")
    if not isinstance(machine, str) or not machine:
        raise BenchResultsError(f"{path}: machine must name the CPU the bench ran on, got {machine!r}")
    if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
        raise BenchResultsError(f"{path}: cores must be the number of cores the server was pinned to, got {cores!r}")
    rows = document.get("headline")
    if not isinstance(rows, list):
        raise BenchResultsError(f"{path}: headline must be a list of figures, got {rows!r}")
    figures = [_figure(path, index, row) for index, row in enumerate(rows)]
    keys = [(figure.protocol, figure.rows_per_request) for figure in figures]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise BenchResultsError(f"{path}: headline has more than one figure for {_names(duplicates)}")
    missing = [key for key in REQUIRED if key not in keys]
    if missing:
        raise BenchResultsError(f"{path}: headline lacks the figures for {_names(missing)}")
    figures.sort(key=lambda figure: (PROTOCOLS.index(figure.protocol), figure.rows_per_request))
    return BenchResults(measured_on, machine, cores, tuple(figures))


def _figure(path: Path, index: int, row: Any) -> BenchFigure:
    where = f"{path}: headline[{index}]"
    if not isinstance(row, dict):
        raise BenchResultsError(f"{where}: expected an object, got {row!r}")
    protocol, rows, rate = row.get("protocol"), row.get("rows_per_request"), row.get("requests_per_second_per_core")
    if protocol not in PROTOCOLS:
        raise BenchResultsError(f"{where}: protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if rows not in ROWS_PER_REQUEST or isinstance(rows, bool):
        raise BenchResultsError(f"{where}: rows_per_request must be 1 or 64, got {rows!r}")
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not (rate > 0 and math.isfinite(rate)):
        raise BenchResultsError(f"{where}: requests_per_second_per_core must be a positive number, got {rate!r}")
    return BenchFigure(str(protocol), int(rows), float(rate))


def _names(keys: list[tuple[str, int]]) -> str:
    return ", ".join(f"{protocol} with {rows} row{'s' if rows > 1 else ''} a request" for protocol, rows in keys)
