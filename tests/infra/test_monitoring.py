"""Monitoring on EKS: pinned charts, the repository's rules and dashboards, secrets kept secret."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import StackConfigError
from infra.config.models import SloConfig
from infra.monitoring.slo_rules import DASHBOARDS_DIR, RULES_DIR, slo_rules
from infra.preview.engine import SECRET, StackRun
from infra.preview.plan import PlanRenderer
from infra.versions import DCGM_EXPORTER_CHART, KUBE_PROMETHEUS_STACK_CHART
from tests.conftest import RunStack, stack_config

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"


@pytest.fixture(params=["staging", "prod"])
def eks_run(request: pytest.FixtureRequest, committed_runs: dict[str, StackRun]) -> StackRun:
    return committed_runs[request.param]


def _release(run: StackRun, name: str) -> dict[str, Any]:
    (release,) = [r for r in run.of_type(HELM_RELEASE) if r.inputs["name"] == name]
    rendered: dict[str, Any] = PlanRenderer(run.invented).value(release.inputs)
    return rendered


def test_charts_are_pinned(eks_run: StackRun) -> None:
    stack = _release(eks_run, "kube-prometheus-stack")
    assert (stack["chart"], stack["version"]) == KUBE_PROMETHEUS_STACK_CHART[1:]
    dcgm = _release(eks_run, "dcgm-exporter")
    assert (dcgm["chart"], dcgm["version"]) == DCGM_EXPORTER_CHART[1:]


def test_release_values_are_readable_and_credentials_are_referenced(eks_run: StackRun) -> None:
    values = _release(eks_run, "kube-prometheus-stack")["values"]
    assert values["grafana"]["admin"]["existingSecret"] == "grafana-admin"
    assert values["alertmanager"]["alertmanagerSpec"]["configSecret"] == "alertmanager-mlstack"
    assert values["prometheus"]["prometheusSpec"]["retention"].endswith("d")


def test_rules_are_the_repository_files_with_the_stacks_slo(eks_run: StackRun, tmp_path: Path) -> None:
    rules = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in eks_run.of_type(RULE)}
    assert rules["mlstack-model-service"] == yaml.safe_load((RULES_DIR / "model-service.rules.yml").read_text())
    assert rules["mlstack-slo"] == yaml.safe_load(slo_rules(SloConfig()))
    promtool = shutil.which("promtool")
    assert promtool
    for name, spec in rules.items():
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump(spec))
        result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_committed_slo_file_holds_the_defaults() -> None:
    assert (RULES_DIR / "slo.rules.yml").read_text() == slo_rules(SloConfig())


def test_slo_targets_come_from_the_stack_config(run_stack: RunStack) -> None:
    config = stack_config("prod")
    config["mlstack:monitoring"] = {"slo": {"latencyP99Seconds": 0.5, "errorRatio": 0.002}}
    run = run_stack("prod", config)
    (slo,) = [r.inputs["spec"] for r in run.of_type(RULE) if r.inputs["metadata"]["name"] == "mlstack-slo"]
    exprs = {rule["record"]: rule["expr"] for rule in slo["groups"][0]["rules"]}
    assert exprs == {"mlstack:slo_latency_p99_seconds": "vector(0.5)", "mlstack:slo_error_ratio": "vector(0.002)"}


def test_dashboards_are_the_repository_files_for_the_grafana_sidecar(eks_run: StackRun) -> None:
    maps = [r for r in eks_run.of_type(CONFIG_MAP) if r.inputs["metadata"].get("labels", {}).get("grafana_dashboard")]
    loaded = {name: text for r in maps for name, text in r.inputs["data"].items()}
    assert loaded == {path.name: path.read_text() for path in DASHBOARDS_DIR.glob("*.json")}


def test_service_monitor_selects_the_model_services(eks_run: StackRun) -> None:
    (monitor,) = eks_run.of_type("kubernetes:monitoring.coreos.com/v1:ServiceMonitor")
    selector = monitor.inputs["spec"]["selector"]["matchLabels"]
    services = [
        s for s in eks_run.of_type("kubernetes:core/v1:Service") if s.inputs["metadata"]["namespace"] == "mlstack"
    ]
    assert services
    for service in services:
        assert selector.items() <= service.inputs["metadata"]["labels"].items()
        assert monitor.inputs["spec"]["endpoints"][0]["port"] in {p["name"] for p in service.inputs["spec"]["ports"]}


def test_dcgm_exporter_runs_on_the_gpu_pool_only(eks_run: StackRun) -> None:
    (group,) = [g for g in eks_run.of_type("aws:eks/nodeGroup:NodeGroup") if g.inputs["amiType"].endswith("NVIDIA")]
    values = _release(eks_run, "dcgm-exporter")["values"]
    assert values["nodeSelector"] == group.inputs["labels"]
    assert [t["key"] for t in values["tolerations"]] == [t["key"] for t in group.inputs["taints"]]


def test_alert_receivers_must_be_secrets(run_stack: RunStack) -> None:
    config = stack_config("prod")
    config["mlstack:slackWebhookUrl"] = "https://hooks.example.invalid/T000/B000"
    with pytest.raises(StackConfigError, match=r"mlstack:slackWebhookUrl: holds a credential and must be a secret"):
        run_stack("prod", config)
    run = run_stack("prod", config, ["mlstack:slackWebhookUrl"])
    (secret,) = [
        r for r in run.of_type("kubernetes:core/v1:Secret") if r.inputs["metadata"]["name"] == "alertmanager-mlstack"
    ]
    assert PlanRenderer(run.invented).value(secret.inputs["stringData"]) == {"alertmanager.yaml": SECRET}
    assert "hooks.example.invalid" not in str(PlanRenderer(run.invented).value([r.inputs for r in run.resources]))


def test_grafana_is_port_forward_by_default_or_behind_an_ingress(
    run_stack: RunStack, committed_runs: dict[str, StackRun]
) -> None:
    assert committed_runs["prod"].outputs["grafanaUrl"].startswith("kubectl -n monitoring port-forward")
    assert committed_runs["prod"].outputs["grafanaAdminPassword"] == SECRET
    config = stack_config("prod")
    config["mlstack:monitoring"] = {"grafanaExposure": "ingress"}
    run = run_stack("prod", config)
    ingresses = [
        i for i in run.of_type("kubernetes:networking.k8s.io/v1:Ingress") if i.inputs["metadata"]["name"] == "grafana"
    ]
    assert len(ingresses) == 1
    url = run.outputs["grafanaUrl"]
    assert url.startswith("http://k8s-")
    assert url.removeprefix("http://") in run.invented, "the URL is the ALB the controller publishes"
