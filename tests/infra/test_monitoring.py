"""Monitoring on EKS: pinned charts, the repository's rules and dashboards, secrets kept secret."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from infra.config import StackConfigError
from infra.config.models import SloConfig
from infra.monitoring.retrain_relay import NAME, WEBHOOK_URL
from infra.monitoring.slo_rules import DASHBOARDS_DIR, RULES_DIR, slo_rules
from infra.preview.engine import SECRET, StackRun, unwrap_secret
from infra.preview.plan import PlanRenderer, kubernetes_manifests
from infra.versions import DCGM_EXPORTER_CHART, KUBE_PROMETHEUS_STACK_CHART, PROMETHEUS_OPERATOR_CRDS_CHART
from tests.conftest import RunStack, stack_config
from tests.graph import environment_of

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
    assert (stack["chart"], stack["version"]) == (
        KUBE_PROMETHEUS_STACK_CHART.chart,
        KUBE_PROMETHEUS_STACK_CHART.version,
    )
    dcgm = _release(eks_run, "dcgm-exporter")
    assert (dcgm["chart"], dcgm["version"]) == (DCGM_EXPORTER_CHART.chart, DCGM_EXPORTER_CHART.version)


def _release_resource(run: StackRun, name: str) -> Any:
    (release,) = [r for r in run.of_type(HELM_RELEASE) if r.inputs["name"] == name]
    return release


def test_operator_crds_come_from_their_own_release_that_every_custom_resource_waits_for(eks_run: StackRun) -> None:
    crds = _release_resource(eks_run, "prometheus-operator-crds")
    assert (crds.inputs["chart"], crds.inputs["version"]) == (
        PROMETHEUS_OPERATOR_CRDS_CHART.chart,
        PROMETHEUS_OPERATOR_CRDS_CHART.version,
    )
    # Same operator release in both charts, so the CRDs match what the operator expects.
    assert PROMETHEUS_OPERATOR_CRDS_CHART.app_version == KUBE_PROMETHEUS_STACK_CHART.app_version
    assert crds.inputs["values"]["crds"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    stack = _release_resource(eks_run, "kube-prometheus-stack")
    assert stack.inputs["values"]["crds"] == {"enabled": False}
    assert crds.urn in stack.dependencies
    custom = [r for r in eks_run.resources if str(r.inputs.get("apiVersion", "")).startswith("monitoring.coreos.com/")]
    assert {r.inputs["kind"] for r in custom} >= {"PrometheusRule", "PodMonitor"}
    for resource in custom:
        assert crds.urn in resource.dependencies, resource.name
    # dcgm-exporter's chart renders a ServiceMonitor of its own.
    assert _release_resource(eks_run, "dcgm-exporter").inputs["values"]["serviceMonitor"]["enabled"] is True
    assert crds.urn in _release_resource(eks_run, "dcgm-exporter").dependencies


def test_releases_that_create_services_wait_for_the_load_balancer_controllers_webhook(eks_run: StackRun) -> None:
    controller = _release_resource(eks_run, "aws-load-balancer-controller")
    # Each of these charts renders at least one Service (checked with `helm template` at the pinned versions).
    for name in ("cluster-autoscaler", "kube-prometheus-stack", "prometheus-adapter", "dcgm-exporter"):
        assert controller.urn in _release_resource(eks_run, name).dependencies, name


def test_kube_prometheus_stack_gets_longer_than_the_default_await(eks_run: StackRun) -> None:
    assert _release_resource(eks_run, "kube-prometheus-stack").inputs["timeout"] > 300


def test_release_values_are_readable_and_credentials_are_referenced(eks_run: StackRun) -> None:
    values = _release(eks_run, "kube-prometheus-stack")["values"]
    assert values["grafana"]["admin"]["existingSecret"] == "grafana-admin"
    assert values["alertmanager"]["alertmanagerSpec"]["configSecret"] == "alertmanager-mlstack"
    assert values["prometheus"]["prometheusSpec"]["retention"].endswith("d")


def test_retention_and_storage_follow_the_stack_file(run_stack: RunStack) -> None:
    config = stack_config("staging")
    config["mlstack:monitoring"] = {"retentionDays": 45, "storageGb": 123}  # no tier's default
    spec = _release(run_stack("staging", config), "kube-prometheus-stack")["values"]["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "45d"
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "123Gi"


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


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def _in_namespace(monitor: dict[str, Any], monitor_namespace: str, namespace: str) -> bool:
    selector = monitor["spec"].get("namespaceSelector", {})
    if selector.get("any"):
        return True
    return namespace in selector.get("matchNames", [monitor_namespace])


def scrapes_per_pod(
    pod_labels: dict[str, str], namespace: str, monitors: list[dict[str, Any]], services: list[dict[str, Any]]
) -> int:
    """How many scrape targets the Prometheus operator makes of one pod: one per PodMonitor endpoint that selects it,
    and one per ServiceMonitor endpoint per Service it selects whose selector covers the pod."""
    count = 0
    for monitor in monitors:
        if not _in_namespace(monitor, monitor["metadata"]["namespace"], namespace):
            continue
        selector = monitor["spec"]["selector"]["matchLabels"]
        if monitor["kind"] == "PodMonitor" and _matches(selector, pod_labels):
            count += len(monitor["spec"]["podMetricsEndpoints"])
        if monitor["kind"] == "ServiceMonitor":
            for service in services:
                if (
                    service["metadata"]["namespace"] == namespace
                    and _matches(selector, service["metadata"].get("labels", {}))
                    and _matches(service["spec"].get("selector", {}), pod_labels)
                ):
                    count += len(monitor["spec"]["endpoints"])
    return count


def test_each_model_service_pod_is_scraped_once(eks_run: StackRun) -> None:
    """Several Services (stable/canary or active/preview) select the same pods: scraping through them would count
    each request twice in Prometheus Adapter's per-pod rate, and the HPA would scale at half its target."""
    monitors = [
        r.inputs
        for r in eks_run.resources
        if r.inputs.get("kind") in ("PodMonitor", "ServiceMonitor")
        and str(r.inputs.get("apiVersion", "")).startswith("monitoring.coreos.com/")
    ]
    services = [{**s.inputs, "kind": "Service"} for s in eks_run.of_type("kubernetes:core/v1:Service")]
    (rollout,) = [r.inputs for r in eks_run.resources if r.inputs.get("kind") == "Rollout"]
    namespace = rollout["metadata"]["namespace"]
    template = rollout["spec"]["template"]
    pod_labels = template["metadata"]["labels"]
    service_pods = [s for s in services if _matches(s["spec"].get("selector") or {"-": "-"}, pod_labels)]
    assert len(service_pods) >= 2, "the Rollout's Services: the case this test guards"
    assert scrapes_per_pod(pod_labels, namespace, monitors, services) == 1
    # The same pods under a ServiceMonitor on the app label would be scraped once per Service: the count sees it.
    per_service = {
        "kind": "ServiceMonitor",
        "metadata": {"namespace": "monitoring"},
        "spec": {
            "namespaceSelector": {"matchNames": [namespace]},
            "selector": {"matchLabels": {"app.kubernetes.io/name": "model-service"}},
            "endpoints": [{"port": "http"}],
        },
    }
    assert scrapes_per_pod(pod_labels, namespace, [per_service], services) == len(service_pods)
    (monitor,) = [m for m in monitors if m["kind"] == "PodMonitor"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (container,) = [c for c in template["spec"]["containers"] if c["name"] == "model-service"]
    assert endpoint["port"] in {port["name"] for port in container["ports"]}
    assert endpoint["path"] == "/metrics"
    # kube-prometheus-stack's Prometheus selects PodMonitors without its release label only with this value.
    values = _release(eks_run, "kube-prometheus-stack")["values"]
    assert values["prometheus"]["prometheusSpec"]["podMonitorSelectorNilUsesHelmValues"] is False


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


def _with_retrain(stack: str) -> dict[str, Any]:
    config = stack_config(stack)
    config["mlstack:monitoring"] = {"retrain": {"repository": "example-org/mlstack", "cooldownHours": 2}}
    config["mlstack:retrainGithubToken"] = "ghp_not-a-real-token-0123456789"
    return config


def test_drift_alerts_reach_the_retrain_relay_when_a_repository_is_configured(run_stack: RunStack) -> None:
    run = run_stack("prod", _with_retrain("prod"), ["mlstack:retrainGithubToken"])
    renderer = PlanRenderer(run.invented)
    (deployment,) = [d for d in run.of_type("kubernetes:apps/v1:Deployment") if d.inputs["metadata"]["name"] == NAME]
    container = renderer.value(deployment.inputs)["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}
    assert env["MLSTACK_RELAY_REPOSITORY"] == "example-org/mlstack"
    assert env["MLSTACK_RELAY_COOLDOWN_SECONDS"] == "7200"
    assert env["MLSTACK_RELAY_GITHUB_TOKEN"] == {"secretKeyRef": {"name": "retrain-relay-github", "key": "token"}}
    # The relay refuses to start without the token Alertmanager sends: both read one generated Secret, Alertmanager
    # as a mounted file (alertmanagerSpec.secrets), the relay as its env, and the relay waits for the Secret.
    assert env["MLSTACK_RELAY_WEBHOOK_TOKEN"] == {"secretKeyRef": {"name": "retrain-relay-webhook", "key": "token"}}
    (webhook_secret,) = [
        r for r in run.of_type("kubernetes:core/v1:Secret") if r.inputs["metadata"]["name"] == "retrain-relay-webhook"
    ]
    assert webhook_secret.inputs["metadata"]["namespace"] == deployment.inputs["metadata"]["namespace"]
    (token,) = [
        r for r in run.of_type("random:index/randomPassword:RandomPassword") if r.name.endswith("retrain-webhook-token")
    ]
    assert token.inputs["length"] >= 32
    assert unwrap_secret(webhook_secret.inputs["stringData"])["token"] == token.outputs["result"]
    assert webhook_secret.urn in deployment.dependencies
    (release,) = [
        r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "kube-prometheus-stack"
    ]
    assert release.inputs["values"]["alertmanager"]["alertmanagerSpec"]["secrets"] == ["retrain-relay-webhook"]
    assert container["command"] == ["python", "-m", "mlstack_service.retrain_relay"]
    assert "ghp_not-a-real-token" not in str(renderer.value([r.inputs for r in run.resources]))
    (service,) = [s for s in run.of_type("kubernetes:core/v1:Service") if s.inputs["metadata"]["name"] == NAME]
    assert service.inputs["spec"]["selector"] == deployment.inputs["spec"]["selector"]["matchLabels"]
    assert WEBHOOK_URL.startswith(f"http://{NAME}.{service.inputs['metadata']['namespace']}.svc")

    (secret,) = [
        r for r in run.of_type("kubernetes:core/v1:Secret") if r.inputs["metadata"]["name"] == "alertmanager-mlstack"
    ]
    config = yaml.safe_load(unwrap_secret(secret.inputs["stringData"])["alertmanager.yaml"])
    (route,) = [r for r in config["route"]["routes"] if r["receiver"] == "retrain"]
    assert route["matchers"] == ['action="retrain"']
    (receiver,) = [r for r in config["receivers"] if r["name"] == "retrain"]
    assert receiver["webhook_configs"][0]["url"] == WEBHOOK_URL
    assert receiver["webhook_configs"][0]["http_config"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/etc/alertmanager/secrets/retrain-relay-webhook/token",
    }
    rules = yaml.safe_load((RULES_DIR / "drift.rules.yml").read_text())
    drift = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "ModelDecisionDrift"]
    assert drift[0]["labels"]["action"] == "retrain", "the route matches what the alert carries"
    version = environment_of(run, _with_retrain("prod")).config.compute.eks.version  # type: ignore[union-attr]
    relay_manifests = [
        manifest
        for manifest in (renderer.value(resource.inputs) for resource in kubernetes_manifests(run))
        if manifest["metadata"]["name"].startswith(NAME)
    ]
    assert sorted(m["kind"] for m in relay_manifests) == [
        "Deployment",
        "NetworkPolicy",
        "Secret",
        "Secret",
        "Service",
        "ServiceAccount",
    ]
    for manifest in relay_manifests:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_retrain_relay_needs_its_token_and_a_cluster(run_stack: RunStack) -> None:
    config = _with_retrain("prod")
    del config["mlstack:retrainGithubToken"]
    with pytest.raises(StackConfigError, match=r"mlstack:retrainGithubToken: missing; monitoring.retrain.repository"):
        run_stack("prod", config)
    with pytest.raises(StackConfigError, match=r"mlstack:retrainGithubToken: holds a credential and must be a secret"):
        run_stack("prod", _with_retrain("prod"))
    dev = _with_retrain("dev")
    dev["mlstack:monitoring"] = {"retrain": {"repository": "example-org/mlstack"}}
    with pytest.raises(StackConfigError, match=r"monitoring.retrain.repository: needs compute.mode eks"):
        run_stack("dev", dev, ["mlstack:retrainGithubToken"])


def test_no_relay_without_a_repository(committed_runs: dict[str, StackRun]) -> None:
    for run in committed_runs.values():
        assert not [d for d in run.of_type("kubernetes:apps/v1:Deployment") if d.inputs["metadata"]["name"] == NAME]
