"""Deploy-readiness rules: each fails the preview on a fixture made from a real defect and passes its fixed twin.

The fixtures are small Pulumi programs (tests/fixtures/readiness/<rule>/{failing,passing}/__main__.py) run through
the same engine and the same preview function as `mlstack preview`, with the staging stack file as config.
"""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.cli import EXIT_OK, EXIT_POLICY_VIOLATION, preview
from infra.preview.diff import render_markdown
from infra.preview.engine import RecordedResource, StackRun, run_program
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
    "schedulable": {"nvidia-device-plugin-release", "gpu-worker"},
    "storage-class": {"monitoring-release"},
    "hpa-field-ownership": {"web-deployment"},
    "await-timeout": {"scale-down", "gpu-worker", "web-ingress"},
    "certificate-issued": {"web-ingress"},
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
    assert plan["policy"]["violations"] == [], "the fixture breaks only the rule it is for"


@pytest.mark.parametrize("rule", sorted(FAILING))
def test_a_passing_fixture_passes_the_preview(
    rule: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, stderr, plan = _preview_fixture(rule, "passing", tmp_path, capsys, monkeypatch)
    assert (code, stderr) == (EXIT_OK, "")
    assert plan["readiness"]["violations"] == []


def test_the_preview_prints_readiness_findings_beside_the_policy_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    preview("staging", tmp_path, debug=False, program_dir=_fixture("hpa-field-ownership", "failing"))
    out = capsys.readouterr().out
    assert re.search(
        r"Policy: \d+ rules ran, no violations\nReadiness: 8 rules ran, 1 violation\(s\)\n"
        r"  \[mandatory\] hpa-field-ownership: web-deployment:",
        out,
    ), out


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


def test_diff_lists_the_new_plans_readiness_violations_and_reads_plans_from_before_them() -> None:
    resource = {"urn": "urn:pulumi:staging::mlstack::x::web", "type": "kubernetes:apps/v1:Deployment",
                "name": "web", "parent": None, "custom": True, "inputs": {"spec": {"replicas": 2}}}  # fmt: skip
    old = {"version": 1, "stack": "staging", "resources": [resource], "cost": {}, "policy": {"violations": []}}
    violation = {"policy": "hpa-field-ownership", "level": "mandatory", "urn": resource["urn"], "message": "replicas"}
    new = {**old, "resources": [{**resource, "dependencies": []}], "readiness": {"violations": [violation]}}
    markdown = render_markdown(old, new)
    assert "0 to add, 0 to change, 0 to remove." in markdown
    assert "**Readiness violations (1)**" in markdown
    assert "- **hpa-field-ownership**: web: replicas" in markdown
    assert "Readiness violations" not in render_markdown(new, old)


def _graph_run(*resources: RecordedResource) -> StackRun:
    return StackRun(project="mlstack", stack="unit", resources=list(resources), outputs={})


def _resource(name: str, type_token: str, inputs: dict[str, Any], **fields: Any) -> RecordedResource:
    urn = f"urn:pulumi:unit::mlstack::{type_token}::{name}"
    return RecordedResource(urn, type_token, name, None, True, None, inputs, name, **fields)


GPU_POOL = _resource(
    "gpu",
    "aws:eks/nodeGroup:NodeGroup",
    {"labels": {"pool": "gpu"}, "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}],
     "scalingConfig": {"desiredSize": 1.0}},
)  # fmt: skip


def _pod(tolerations: list[dict[str, str]]) -> RecordedResource:
    template = {"spec": {"nodeSelector": {"pool": "gpu"}, "tolerations": tolerations, "containers": [{"name": "c"}]}}
    return _resource(
        "pod-owner", "kubernetes:apps/v1:DaemonSet", {"metadata": {"name": "d"}, "spec": {"template": template}}
    )


@pytest.mark.parametrize(
    ("tolerations", "fits"),
    [
        ([], False),
        ([{"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}], True),
        ([{"key": "nvidia.com/gpu", "operator": "Equal", "value": "false", "effect": "NoSchedule"}], False),
        ([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NO_SCHEDULE"}], False),  # the EKS spelling
        ([{"key": "nvidia.com/gpu", "operator": "Exists"}], True),
        ([{"operator": "Exists"}], True),
    ],
)
def test_an_eks_taint_is_tolerated_only_in_kubernetes_terms(tolerations: list[dict[str, str]], fits: bool) -> None:
    rules = [rule for rule in READINESS_RULES if rule.name == "schedulable"]
    found = [v.policy for v in check_readiness(_graph_run(GPU_POOL, _pod(tolerations)), rules)]
    assert found == ([] if fits else ["schedulable"])
