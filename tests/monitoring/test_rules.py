"""Alert rules: promtool checks every rule file and runs the unit tests beside them."""

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT

RULES = REPO_ROOT / "monitoring" / "rules"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: .ci/run installs Debian's prometheus package"
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, check=False, cwd=RULES)


def test_every_rule_file_passes_promtool_check() -> None:
    files = sorted(RULES.glob("*.rules.yml"))
    assert files
    result = _promtool("check", "rules", *[str(path) for path in files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    tests = sorted((RULES / "tests").glob("*.test.yml"))
    assert tests
    result = _promtool("test", "rules", *[str(path) for path in tests])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_and_annotated() -> None:
    alerts = {
        rule["alert"]: rule
        for path in RULES.glob("*.rules.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    tested = {
        case["alertname"]
        for path in (RULES / "tests").glob("*.test.yml")
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert set(alerts) == tested
    for name, rule in alerts.items():
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name


def test_a_broken_rule_fails_promtool(tmp_path: Path) -> None:
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: rate(mlstack_requests_total[5m]\n"
    )
    assert _promtool("check", "rules", str(broken)).returncode != 0


def test_compose_runs_prometheus_and_grafana_on_the_repositorys_files() -> None:
    compose = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    assert {"model-service", "prometheus", "grafana"} <= set(compose["services"])
    for service in ("prometheus", "grafana"):
        for volume in compose["services"][service]["volumes"]:
            source = volume.split(":", 1)[0]
            if source in compose.get("volumes", {}):  # a named volume (Prometheus's data), not a repository path
                continue
            assert (REPO_ROOT / source).exists(), f"{service} mounts {source}, which the repository lacks"
    scrape = yaml.safe_load((REPO_ROOT / "monitoring" / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    (target,) = job["static_configs"][0]["targets"]
    internal_port = compose["services"]["model-service"]["environment"]["MLSTACK_INTERNAL_PORT"]
    assert target == f"model-service:{internal_port}", "Prometheus scrapes the service's internal port by its name"
    for rule_file in scrape["rule_files"]:
        assert (REPO_ROOT / "monitoring" / rule_file).is_file()
