"""The fleet's drift rules: rendered from the stack config, and, run by promtool over counters that real drift monitors
exported (one replica restarting half-way), the same statistics and verdicts as the service's own tests on all rows."""

import base64
import gzip
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from infra.config.models import DriftConfig, MonitoringConfig
from infra.monitoring.drift_rules import DRIFT_RULES_FILE, drift_rules
from infra.monitoring.slo_rules import RULES_DIR, rule_files
from infra.workloads.pod_template import container_env
from mlstack_service.drift import DriftMonitor, DriftState, DriftTracking, FeedbackTracker
from mlstack_service.metrics import ServiceMetrics
from mlstack_service.package import ReferenceProfile, load_package
from mlstack_service.settings import Settings
from mlstack_service.synthetic import FEATURE_NAMES, generate_applications
from tests.conftest import REPO_ROOT, RunStack, stack_config
from tests.infra.test_workloads import env_of, rollout
from tests.service.conftest import predictions_in_process
from tests.service.models import EXAMPLE_PACKAGE

CLASSES = ["rejected", "approved"]
STEPS = 150  # one-minute samples
EVAL = "140m"
DRIFT_PREFIXES = ("mlstack_drift_", "mlstack_feature_drift_", "mlstack_prediction_drift_")


def test_the_committed_rule_file_is_the_default_rendering() -> None:
    assert (RULES_DIR / DRIFT_RULES_FILE).read_text() == drift_rules(DriftConfig())


def test_a_stack_renders_its_window_hold_and_minimum_into_the_rules_and_the_pods() -> None:
    drift = DriftConfig.model_validate({"window": "14d", "holdMinutes": 30, "minSamples": 500, "falseAlarmDays": 180})
    text = rule_files(MonitoringConfig.model_validate({"drift": drift.model_dump(by_alias=True)}))[DRIFT_RULES_FILE]
    rules = [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]
    assert all("[7d]" not in rule["expr"] for rule in rules)
    assert sum("[14d]" in rule["expr"] for rule in rules) == 6
    assert {rule["for"] for rule in rules if "alert" in rule} == {"30m"}
    assert all(">= bool 500" in rule["expr"] for rule in rules if rule.get("record", "").endswith("_judged:window"))
    env = {
        item["name"]: item["value"]
        for item in container_env(
            8080,
            "s3://b/m/1/",
            False,
            "us-east-1",
            internal_port=9090,
            grpc_port=8081,
            model_sha256=None,
            api_keys=False,
            feedback_keys=False,
            drift=drift,
        )
    }
    # The service reads what the pod is given, and its per-look alpha is the rules' hold over the budget.
    settings = Settings.model_validate(
        {key.removeprefix("MLSTACK_").lower(): value for key, value in env.items() if key.startswith("MLSTACK_DRIFT_")}
    )
    assert settings.drift_min_samples == 500
    assert settings.drift_hold_minutes / (settings.drift_false_alarm_days * 1440) == pytest.approx(30 / (180 * 1440))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("minSamples", 5, "greater than or equal to 20"),
        ("minSamples", 20_000, "less than or equal to 10000"),
        ("window", "7 days", "String should match pattern"),
        ("holdMinutes", 0, "greater than or equal to 5"),
    ],
)
def test_wrong_drift_settings_are_refused(key: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DriftConfig.model_validate({key: value})


def _exposed(monitor: DriftMonitor, model_name: str, instance: str) -> dict[str, float]:
    """The drift series a replica's /metrics shows, by their full name and labels."""
    metrics = ServiceMetrics(model_name, "1")
    metrics.attach_drift(DriftTracking(monitor, FeedbackTracker(100, 60, 10)), 0.2)
    monitor.refresh()
    series = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name.startswith(DRIFT_PREFIXES) and not math.isnan(sample.value):
                labels = {**sample.labels, "instance": instance}
                rendered = ", ".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
                series[f"{sample.name}{{{rendered}}}"] = sample.value
    return series


def _monitor(profile: ReferenceProfile, rows: np.ndarray, scores: np.ndarray) -> DriftMonitor:
    monitor = DriftMonitor(profile, FEATURE_NAMES, CLASSES, len(rows), min_samples=1)
    monitor.record(rows, scores)
    return monitor


def _replica_series(processes: list[dict[str, float]]) -> list[dict[str, str]]:
    """Each process runs for an equal share of the time; counters restart at 0 with a process, gauges just hold."""
    span = STEPS // len(processes)
    out = []
    for name in processes[0]:
        values = ["0"]
        for index, exposed in enumerate(processes):
            count = span - 1 if index < len(processes) - 1 else STEPS - 1 - span * index
            if name.split("{")[0].endswith("_total") and index > 0:
                values.append("0")  # the restart: the counter starts again
                count -= 1
            values.append(f"{exposed[name]}x{count}")
        out.append({"series": name, "values": " ".join(values)})
    return out


def _close(expression: str, expected: float) -> dict[str, Any]:
    tolerance = 1e-6 * max(1.0, abs(expected))
    return {
        "expr": f"abs(sum({expression}) - {expected!r}) <= bool {tolerance!r}",
        "eval_time": EVAL,
        "exp_samples": [{"labels": "{}", "value": 1}],
    }


def _top(results: dict[str, Any], top: int = 3) -> str:
    chosen = sorted(results, key=lambda name: results[name].ratio, reverse=True)[:top]
    return "".join(f"{name} " for name in sorted(chosen))


def _expected_alerts(fleet: DriftState, model: str) -> list[dict[str, Any]]:
    features = {name: result for name, result in fleet.features.items() if result.detected}
    moved = "".join(f"{name} " for name in sorted(n for n, r in fleet.decisions.items() if r.ratio >= 1))
    judged = {name: result for name, result in fleet.features.items() if fleet.rows >= result.min_rows}
    top = _top(judged)
    tests = []
    if fleet.prediction_drift_detected:
        tests.append(
            {
                "eval_time": EVAL,
                "alertname": "ModelDecisionDrift",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "ticket",
                            "action": "retrain",
                            "model_name": model,
                            "model_version": "1",
                        },
                        "exp_annotations": {
                            "summary": f"decisions of {model} 1 moved away from the training predictions: retraining",
                            "description": (
                                f"Over the fleet's last 7d, these moved beyond the false-alarm budget: {moved}"
                                f"- most drifted features: {top}"
                            ),
                            "runbook_url": "docs/runbooks/ModelDecisionDrift.md",
                            "features": top,
                        },
                    }
                ],
            }
        )
    tests.append(
        {
            "eval_time": EVAL,
            "alertname": "ModelFeatureDrift",
            "exp_alerts": [
                {
                    "exp_labels": {
                        "severity": "ticket",
                        "model_name": model,
                        "model_version": "1",
                        "feature": name,
                    },
                    "exp_annotations": {
                        "summary": f"feature {name} of {model} 1 has drifted from the training data",
                        "description": (
                            "Over the fleet's last 7d its test rejects the training distribution within the "
                            "false-alarm budget; decisions are judged apart (ModelDecisionDrift). Most drifted "
                            f"features: {top}"
                        ),
                        "runbook_url": "docs/runbooks/ModelFeatureDrift.md",
                        "features": top,
                    },
                }
                for name in sorted(features)
            ],
        }
    )
    return tests


def test_the_fleet_rules_judge_all_replicas_rows_like_the_service_and_alert_naming_the_features(
    tmp_path: Path,
) -> None:
    profile = load_package(str(EXAMPLE_PACKAGE), EXAMPLE_PACKAGE).profile
    delinquencies = FEATURE_NAMES.index("delinquencies_2y")
    calm, _ = generate_applications(9_000, seed=11)
    shifted, _ = generate_applications(3_000, seed=12)
    shifted[:, delinquencies] = np.where(shifted[:, delinquencies] > 0, shifted[:, delinquencies] + 3, 0)
    rows = {"calm": calm, "shifted": shifted}
    scores = {name: predictions_in_process(block)[1][:, 1] for name, block in rows.items()}

    def part(name: str, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return rows[name][start:stop], scores[name][start:stop]

    # Model "m": replica a serves 3,000 calm rows; replica b serves 1,500 shifted ones, restarts, serves 1,500 more.
    # Model "quiet": two replicas of calm rows only, 3,000 each.
    replicas = {
        ("m", "a"): [part("calm", 0, 3_000)],
        ("m", "b"): [part("shifted", 0, 1_500), part("shifted", 1_500, 3_000)],
        ("quiet", "a"): [part("calm", 3_000, 6_000)],
        ("quiet", "b"): [part("calm", 6_000, 9_000)],
    }
    input_series: list[dict[str, str]] = []
    for (model, instance), processes in replicas.items():
        exposed = [_exposed(_monitor(profile, *process), model, instance) for process in processes]
        input_series += _replica_series(exposed)
    expressions = []
    alert_tests = []
    for model in ("m", "quiet"):
        fleet_rows = np.concatenate([block for (name, _), ps in replicas.items() if name == model for block, _ in ps])
        fleet_scores = np.concatenate([s for (name, _), ps in replicas.items() if name == model for _, s in ps])
        fleet = _monitor(profile, fleet_rows, fleet_scores).refresh()
        selector = f'model_name="{model}"'
        for feature, result in fleet.features.items():
            expressions.append(
                _close(f'mlstack:drift_feature_statistic:window{{{selector}, feature="{feature}"}}', result.statistic)
            )
        for test, result in fleet.decisions.items():
            expressions.append(
                _close(f'mlstack:prediction_drift_statistic:window{{{selector}, test="{test}"}}', result.statistic)
            )
        expressions.append(_close(f"mlstack:estimated_accuracy:window{{{selector}}}", fleet.estimated_accuracy))
        if model == "m":
            assert {name for name, result in fleet.features.items() if result.detected} == {"delinquencies_2y"}
            assert fleet.prediction_drift_detected
            alert_tests = _expected_alerts(fleet, model)
        else:
            assert not any(result.detected for result in fleet.features.values())
            assert not fleet.prediction_drift_detected
    alert_tests.append({"eval_time": "30m", "alertname": "ModelDecisionDrift", "exp_alerts": []})  # not held yet
    rules = tmp_path / DRIFT_RULES_FILE
    rules.write_text((RULES_DIR / DRIFT_RULES_FILE).read_text())
    test_file = tmp_path / "drift.test.yml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rules)],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": input_series,
                        "promql_expr_test": expressions,
                        "alert_rule_test": alert_tests,
                    }
                ],
            },
            width=1000,
        )
    )
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: .ci/run installs Debian's prometheus package"
    completed = subprocess.run(
        [promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=300, check=False
    )
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-6000:]


def test_a_stacks_drift_settings_reach_its_pods_and_its_prometheus_rules(run_stack: RunStack) -> None:
    """The whole program for prod with monitoring.drift set: the Rollout's pods and the PrometheusRule agree."""
    config = stack_config("prod")
    config["mlstack:monitoring"] = {
        **config.get("mlstack:monitoring", {}),
        "drift": {"minSamples": 400, "window": "14d"},
    }
    run = run_stack("prod", config)
    env = env_of(rollout(run))
    assert env["MLSTACK_DRIFT_MIN_SAMPLES"] == "400"
    assert env["MLSTACK_DRIFT_HOLD_MINUTES"] == "60"
    specs = [resource.inputs["spec"] for resource in run.of_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule")]
    rules = [
        rule
        for spec in specs
        for group in spec["groups"]
        if group["name"] == "mlstack-drift"
        for rule in group["rules"]
    ]
    assert any("[14d]" in rule["expr"] for rule in rules)
    assert any(">= bool 400" in rule["expr"] for rule in rules)
    assert {rule["alert"] for rule in rules if "alert" in rule} == {"ModelDecisionDrift", "ModelFeatureDrift"}


def test_the_dev_hosts_service_gets_the_stacks_drift_budget_and_compose_defaults_to_the_services(
    run_stack: RunStack,
) -> None:
    """On the dev host the budget travels in compose's .env; without it (compose locally) the service's defaults."""
    config = stack_config("dev")
    config["mlstack:monitoring"] = {
        **config.get("mlstack:monitoring", {}),
        "drift": {"minSamples": 400, "falseAlarmDays": 30, "holdMinutes": 30, "maxAccuracyDrop": 0.05},
    }
    run = run_stack("dev", config)
    (template,) = run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    script = gzip.decompress(base64.b64decode(template.inputs["userData"])).decode()
    env_file = script[script.index("cat > /opt/mlstack/.env <<'ENV'") :].split("\nENV\n", 1)[0]
    env = dict(line.split("=", 1) for line in env_file.splitlines()[1:] if "=" in line)
    assert {key: env[key] for key in env if key.startswith("MLSTACK_DRIFT_")} == {
        "MLSTACK_DRIFT_MIN_SAMPLES": "400",
        "MLSTACK_DRIFT_FALSE_ALARM_DAYS": "30.0",
        "MLSTACK_DRIFT_HOLD_MINUTES": "30",
        "MLSTACK_DRIFT_MAX_ACCURACY_DROP": "0.05",
    }
    compose = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    passed = compose["services"]["model-service"]["environment"]
    defaults = Settings.model_fields
    for key in env:
        if key.startswith("MLSTACK_DRIFT_"):
            variable, _, default = passed[key].removeprefix("${").removesuffix("}").partition(":-")
            assert variable == key
            assert float(default) == defaults[key.removeprefix("MLSTACK_").lower()].default, key
