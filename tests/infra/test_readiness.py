"""Deploy-readiness rules: each fails the preview on a fixture made from a real defect and passes its fixed twin.

The fixtures are small Pulumi programs (tests/fixtures/readiness/<rule>/{failing,passing}/__main__.py) run through
the same engine and the same preview function as `mlstack preview`, with the staging stack file as config.
"""

import json
from pathlib import Path
from typing import Any

import pytest

from infra.cli import EXIT_OK, EXIT_POLICY_VIOLATION, preview
from infra.preview.engine import StackRun, run_program
from infra.preview.readiness import (
    READINESS_RULES,
    builtin_groups,
    check_readiness,
    go_duration_seconds,
)
from infra.preview.stack_file import read_stack_file
from tests.conftest import COMMITTED_STACKS, REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "readiness"
# Per rule: the resources its failing fixture must be reported for (by name), the defect each one reproduces.
FAILING: dict[str, set[str]] = {
    "namespace-dependency": {"batch-cronjob"},
    "crd-dependency": {"service-monitor"},
    "webhook-ordering": {"web-service"},
    "schedulable": {"nvidia-device-plugin-release"},
    "storage-class": {"monitoring-release"},
    "hpa-field-ownership": {"web-deployment"},
    "await-timeout": {"scale-down", "gpu-worker"},
}


def _fixture(rule: str, variant: str) -> Path:
    return FIXTURES / rule.replace("-", "_") / variant


def _preview_fixture(
    rule: str, variant: str, out: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, dict[str, Any]]:
    monkeypatch.chdir(REPO_ROOT)
    code = preview("staging", out, debug=False, program_dir=_fixture(rule, variant))
    plan: dict[str, Any] = json.loads((out / "plan.json").read_text())
    return code, capsys.readouterr().err, plan


def _run_fixture(rule: str, variant: str) -> StackRun:
    config, secret_keys = read_stack_file(REPO_ROOT, "staging")
    return run_program("staging", config, secret_keys, program_dir=_fixture(rule, variant))


def test_every_rule_has_a_failing_fixture() -> None:
    assert set(FAILING) == {rule.name for rule in READINESS_RULES}


@pytest.mark.parametrize("rule", sorted(FAILING))
def test_a_failing_fixture_fails_the_preview_naming_the_rule_and_the_resource(
    rule: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, stderr, plan = _preview_fixture(rule, "failing", tmp_path, capsys, monkeypatch)
    assert code == EXIT_POLICY_VIOLATION
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"error: readiness rule {rule} violated by ")
    named = stderr.removeprefix(f"error: readiness rule {rule} violated by ").split(":", 1)[0]
    assert named in FAILING[rule]
    violations = plan["readiness"]["violations"]
    assert {violation["policy"] for violation in violations} == {rule}
    assert {violation["urn"].rsplit("::", 1)[-1] for violation in violations} == FAILING[rule]
    assert all(violation["level"] == "mandatory" and violation["message"] for violation in violations)
    assert plan["policy"] == {"violations": []}, "the fixture breaks only the rule it is for"


@pytest.mark.parametrize("rule", sorted(FAILING))
def test_a_passing_fixture_passes_the_preview(
    rule: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, stderr, plan = _preview_fixture(rule, "passing", tmp_path, capsys, monkeypatch)
    assert (code, stderr) == (EXIT_OK, "")
    assert plan["readiness"] == {"violations": []}


def test_the_preview_prints_readiness_findings_beside_the_policy_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    preview("staging", tmp_path, debug=False, program_dir=_fixture("hpa-field-ownership", "failing"))
    out = capsys.readouterr().out
    assert "Policy: no violations\nReadiness: 1 violation(s)\n  [mandatory] hpa-field-ownership: web-deployment:" in out


def test_a_parents_depends_on_reaches_its_children_through_ordering_not_through_their_dependencies() -> None:
    """What the SDK sends: a component's depends_on is not copied into its children's `dependencies`; the child
    waits because its registration waits for its parent's, which waited for the namespace."""
    run = _run_fixture("namespace-dependency", "passing")
    (namespace,) = [r for r in run.resources if r.name == "batch-namespace"]
    (component,) = [r for r in run.resources if r.name == "batch" and not r.custom]
    (cronjob,) = [r for r in run.resources if r.name == "batch-cronjob"]
    assert namespace.urn in component.dependencies
    assert namespace.urn not in cronjob.dependencies
    assert cronjob.parent == component.urn
    assert check_readiness(run) == []


def test_the_engine_records_custom_timeouts() -> None:
    run = _run_fixture("await-timeout", "passing")
    (deployment,) = [r for r in run.resources if r.name == "gpu-worker"]
    assert deployment.custom_timeouts == {"create": "30m", "update": "30m"}


def test_a_longer_timeout_than_the_work_passes_and_a_shorter_one_fails() -> None:
    assert go_duration_seconds("30m") == 1800
    assert go_duration_seconds("1h30m") == 5400
    assert go_duration_seconds("600") is None


def test_builtin_groups_come_from_the_kubernetes_sdk() -> None:
    groups = builtin_groups()
    assert {"apps", "batch", "core", "networking.k8s.io", "autoscaling", "storage.k8s.io"} <= groups
    assert not groups & {"monitoring.coreos.com", "argoproj.io", "helm.sh", "yaml"}


@pytest.mark.parametrize("stack", COMMITTED_STACKS)
def test_committed_stacks_are_ready(committed_runs: dict[str, StackRun], stack: str) -> None:
    assert [(v.policy, v.urn.rsplit("::", 1)[-1], v.message) for v in check_readiness(committed_runs[stack])] == []
