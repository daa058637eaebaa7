"""Rows needed to detect each drift scenario, with the service's tests and the default false-alarm budget.

    python -m mlstack_service.drift_report [--package service/example_model] [--trials 5]

For each scenario and window size, `trials` windows of synthetic applications are shifted, scored by the package's
model and judged as the service judges its window; a size counts once every trial flags the scenario's feature (and,
for the scenarios that move decisions, the decisions). No-drift windows of every size are judged too: their verdicts
are false alarms, and the report counts them.
"""

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from mlstack_service.drift import DriftMonitor, DriftState
from mlstack_service.package import load_package
from mlstack_service.synthetic import FEATURE_NAMES, generate_applications

SIZES = (20, 50, 100, 200, 300, 500, 700, 1_000, 1_500, 2_000, 3_000, 5_000, 10_000)
Shift = Callable[[NDArray[np.float32]], NDArray[np.float32]]


@dataclass(frozen=True)
class Scenario:
    name: str
    feature: str
    shift: Shift


SCENARIOS = (
    Scenario("60-month loans become 72-month", "loan_term_months", lambda c: np.where(c == 60, 72, c)),
    Scenario("delinquent applicants +3 delinquencies", "delinquencies_2y", lambda c: np.where(c > 0, c + 3, c)),
    Scenario("every applicant 6 years older", "age", lambda c: c + 6),
    Scenario("credit scores 20 points lower", "credit_score", lambda c: c - 20),
)


def _first(sizes: list[int]) -> str:
    return f"{sizes[0]:,}" if sizes else f"> {SIZES[-1]:,}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path(__file__).resolve().parents[1] / "example_model")
    parser.add_argument("--trials", type=int, default=5, help="windows judged per scenario and size")
    args = parser.parse_args(argv)
    package = load_package(str(args.package), args.package)
    session = ort.InferenceSession(str(package.model_path), providers=["CPUExecutionProvider"])
    classes = list(package.metadata.class_names)

    def judge(rows: NDArray[np.float32]) -> DriftState:
        probabilities = session.run([package.metadata.probabilities_output], {package.metadata.input_name: rows})[0]
        monitor = DriftMonitor(package.profile, FEATURE_NAMES, classes, max(len(rows), 100))
        monitor.record(rows, probabilities[:, 1].astype(np.float32))
        return monitor.refresh()

    budget = DriftMonitor(package.profile, FEATURE_NAMES, classes, 100)
    print(  # noqa: T201 (the report)
        f"budget: one false alarm per {budget.budget.false_alarm_days:g} days per alert, verdicts held "
        f"{budget.budget.hold_minutes:g} min: alpha {budget.budget.alpha:.2e} per look, "
        f"{budget.feature_alpha:.2e} per feature test, {budget.decision_alpha:.2e} per decision test"
    )
    false_alarms = 0
    for size in SIZES:
        for trial in range(args.trials):
            rows, _ = generate_applications(size, seed=10_000 + 97 * size + trial)
            state = judge(rows)
            false_alarms += any(r.detected for r in state.features.values()) or state.prediction_drift_detected
    print(f"no drift: {false_alarms} verdict(s) in {args.trials * len(SIZES)} windows of 20 to 10,000 rows")  # noqa: T201
    print(f"{'scenario':42} {'feature flagged from':>22} {'decisions flagged from':>24}")  # noqa: T201
    for scenario in SCENARIOS:
        index = FEATURE_NAMES.index(scenario.feature)
        feature_sizes, decision_sizes = [], []
        for size in SIZES:
            states = []
            for trial in range(args.trials):
                rows, _ = generate_applications(size, seed=20_000 + 97 * size + trial)
                rows[:, index] = scenario.shift(rows[:, index])
                states.append(judge(rows))
            if all(state.features[scenario.feature].detected for state in states):
                feature_sizes.append(size)
            if all(state.prediction_drift_detected for state in states):
                decision_sizes.append(size)
        print(  # noqa: T201
            f"{scenario.name:42} {_first(feature_sizes) + ' rows':>22} {_first(decision_sizes) + ' rows':>24}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
