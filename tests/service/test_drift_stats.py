"""The drift tests' statistics: critical values, the bins both sides count alike, the false-alarm rate they hold."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats  # type: ignore[import-untyped]

from mlstack_service import drift_report, drift_stats
from mlstack_service.drift import DriftBudget, DriftMonitor
from mlstack_service.package import PackageError, load_package
from mlstack_service.synthetic import FEATURE_NAMES, generate_applications
from mlstack_service.train import MAX_DISCRETE_VALUES, infer_kind
from tests.service.conftest import predictions_in_process
from tests.service.models import EXAMPLE_PACKAGE

CLASSES = ["rejected", "approved"]


@pytest.mark.parametrize("alpha", [0.05, 1e-3, 3.9e-5, 1e-7])
def test_critical_values_match_scipy(alpha: float) -> None:
    assert drift_stats.ks_critical(alpha) == pytest.approx(scipy_stats.kstwobign.isf(alpha), rel=1e-6)
    assert drift_stats.normal_critical(alpha) == pytest.approx(scipy_stats.norm.isf(alpha), rel=1e-6)
    for df in (1, 2, 5, 19, 49):
        assert drift_stats.chi2_critical(alpha, df) == pytest.approx(scipy_stats.chi2.isf(alpha, df), rel=1e-6)


def test_p_values_match_scipy() -> None:
    for statistic, df in ((0.5, 1), (3.0, 2), (50.0, 5), (120.0, 40)):
        assert drift_stats.chi2_sf(statistic, df) == pytest.approx(scipy_stats.chi2.sf(statistic, df), rel=1e-8)
    for lam in (0.5, 1.0, 1.36, 2.5):
        assert drift_stats.kolmogorov_sf(lam) == pytest.approx(scipy_stats.kstwobign.sf(lam), rel=1e-8)


def test_the_budget_arithmetic() -> None:
    budget = DriftBudget(false_alarm_days=90, hold_minutes=60)
    looks = 90 * 24  # one look per hour held
    assert budget.alpha == pytest.approx(1 / looks)
    monitor = DriftMonitor(load_package(str(EXAMPLE_PACKAGE), EXAMPLE_PACKAGE).profile, FEATURE_NAMES, CLASSES, 100)
    assert monitor.feature_alpha == pytest.approx(1 / looks / len(FEATURE_NAMES))
    assert monitor.decision_alpha == pytest.approx(1 / looks / 3)


def test_kinds_follow_the_written_rule() -> None:
    assert infer_kind(np.array([12.0, 24, 36, 60, 72])) == "discrete"
    assert infer_kind(np.array([0.5, 1.0, 2.0])) == "continuous"
    assert infer_kind(np.arange(MAX_DISCRETE_VALUES + 1, dtype=np.float64)) == "continuous"
    assert infer_kind(np.array([0.5, 1.5]), declared="categorical") == "categorical"
    kinds = {name: f.kind for name, f in load_package(str(EXAMPLE_PACKAGE), EXAMPLE_PACKAGE).profile.features.items()}
    assert {name for name, kind in kinds.items() if kind == "discrete"} == {
        "loan_term_months",
        "open_credit_lines",
        "delinquencies_2y",
    }


def test_discrete_features_get_exact_value_bins_and_no_edge_bias() -> None:
    """The old KS counted the reference's edge values below an edge and the live ones above it: 0.67 for
    delinquencies_2y with no drift. Both sides now count with one function, over bins between values."""
    profile = load_package(str(EXAMPLE_PACKAGE), EXAMPLE_PACKAGE).profile
    term = profile.features["loan_term_months"]
    assert term.bin_edges == [18.0, 30.0, 42.0, 54.0, 66.0]  # 12, 24, 36, 48, 60, 72: one bin each
    live, _ = generate_applications(5_000, seed=5)
    monitor = DriftMonitor(profile, FEATURE_NAMES, CLASSES, 5_000)
    _, probabilities = predictions_in_process(live)
    monitor.record(live, probabilities[:, 1])
    state = monitor.refresh()
    assert state.ks["delinquencies_2y"] < 0.03
    assert max(state.psi.values()) < 0.02
    assert not any(result.detected for result in state.features.values())


def test_one_empty_bin_of_a_small_window_does_not_add_07_to_the_psi() -> None:
    """Clipped to 1e-4, an empty 10% bin added 0.1 * ln(1000) = 0.7 whatever the rows; smoothed by half a row, what
    it adds grows with the evidence that the bin is really empty."""
    counts = np.array([0, 11, 11, 11, 11, 11, 11, 11, 11, 11])  # 99 rows
    assert drift_stats.psi(np.full(10, 0.1), counts) < 0.35
    assert drift_stats.psi(np.full(10, 0.1), np.full(10, 100)) == pytest.approx(0.0, abs=1e-12)


def test_the_verdicts_false_alarm_rate_stays_within_a_loose_budget() -> None:
    """With an alpha large enough to count (0.2 per alert), replayed no-drift windows alarm about that often and
    not more: the tests' p-values are calibrated, not merely conservative to the point of blindness."""
    budget = DriftBudget(false_alarm_days=1, hold_minutes=288)  # alpha 0.2 per alert
    profile = load_package(str(EXAMPLE_PACKAGE), EXAMPLE_PACKAGE).profile
    rows, trials = 600, 300
    pool, _ = generate_applications(rows * trials, seed=2026)
    _, probabilities = predictions_in_process(pool)
    feature_alarms = decision_alarms = 0
    for trial in range(trials):
        window = slice(trial * rows, (trial + 1) * rows)
        monitor = DriftMonitor(profile, FEATURE_NAMES, CLASSES, rows, budget=budget)
        monitor.record(pool[window], probabilities[window, 1])
        state = monitor.refresh()
        feature_alarms += any(result.detected for result in state.features.values())
        decision_alarms += state.prediction_drift_detected
    # Binomial(300, 0.2) stays below 0.27 with probability above 0.999; Bonferroni and the binned KS are
    # conservative, so the rate sits under the budget, but not at zero.
    assert 0.02 < feature_alarms / trials < 0.27
    assert decision_alarms / trials < 0.27


def test_a_profile_of_an_unknown_format_is_refused_with_its_name(tmp_path: Path) -> None:
    package = tmp_path / "package"
    shutil.copytree(EXAMPLE_PACKAGE, package)
    profile_path = package / "reference_profile.json"
    profile = json.loads(profile_path.read_text())
    profile["format"] = 3
    profile_path.write_text(json.dumps(profile))
    with pytest.raises(PackageError, match=r"reference_profile.json: format: Input should be 1 or 2"):
        load_package(str(package), package)


def test_the_drift_report_prints_the_rows_each_scenario_needs(capsys: pytest.CaptureFixture[str]) -> None:
    assert drift_report.main(["--trials", "1"]) == 0
    lines = {line[:42].strip(): line[42:].split() for line in capsys.readouterr().out.splitlines()[3:]}
    assert set(lines) == {scenario.name for scenario in drift_report.SCENARIOS}
    for name, scenario in ((s.name, s) for s in drift_report.SCENARIOS):
        assert lines[name][0] != ">", f"{scenario.feature} is flagged within 10,000 rows"
    assert lines["every applicant 6 years older"][-3] == ">"  # decisions never move for an age shift
    assert lines["delinquent applicants +3 delinquencies"][-3] != ">"


@pytest.mark.parametrize(
    ("batches", "counted"),
    [
        ([[70], [20, 10], [100]], 200),  # each count finds at most a window-full: every row counted once
        ([[30, 250, 10]], 100),  # more than a window between two counts: the newest window-full is the sample
    ],
)
def test_the_per_bin_counters_count_the_windows_new_rows_once(batches: list[list[int]], counted: int) -> None:
    profile = load_package(str(EXAMPLE_PACKAGE), EXAMPLE_PACKAGE).profile
    rows, _ = generate_applications(sum(map(sum, batches)), seed=3)
    scores = np.linspace(0, 1, len(rows), dtype=np.float32)
    monitor = DriftMonitor(profile, FEATURE_NAMES, CLASSES, window=100)
    start, chosen = 0, []
    for between_counts in batches:
        for size in between_counts:
            monitor.record(rows[start : start + size], scores[start : start + size])
            start += size
        chosen.append(np.arange(max(0, start - 100), start)[-min(sum(between_counts), 100) :])
        monitor.count_pending()
        monitor.count_pending()  # counting again adds nothing
    sample = np.concatenate(chosen)
    assert monitor.rows_total == len(sample) == counted
    assert monitor.positive_total == int(np.count_nonzero(scores[sample] >= 0.5))
    for index, (name, bins) in enumerate(monitor.bins.items()):
        expected = drift_stats.bin_counts(rows[sample, index].astype(np.float64), bins.edges)
        assert bins.totals.tolist() == expected.tolist(), name


def test_a_kind_declared_in_the_metadata_must_match_the_profile(tmp_path: Path) -> None:
    package = tmp_path / "package"
    shutil.copytree(EXAMPLE_PACKAGE, package)
    metadata_path = package / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    (term,) = [feature for feature in metadata["features"] if feature["name"] == "loan_term_months"]
    assert term["kind"] == "discrete"  # training writes the kind it profiled
    term["kind"] = "continuous"
    metadata_path.write_text(json.dumps(metadata))
    with pytest.raises(PackageError, match=r"declares loan_term_months continuous, but reference_profile\.json"):
        load_package(str(package), package)
