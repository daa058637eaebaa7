"""The model service on Kubernetes: valid manifests, hardened pods, release strategies and the runbook."""

import copy
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from infra.preview.engine import StackRun
from infra.preview.plan import PlanRenderer, kubernetes_manifests
from tests.conftest import COMMITTED_STACKS, RunStack, stack_config
from tests.graph import environment_of
from tests.service.conftest import start_server

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
WEIGHTED = "alb.ingress.kubernetes.io/actions.weighted-forward"
# Custom resources (their schemas come with the Prometheus Operator's CRDs); tests/infra/test_monitoring.py checks them.
CUSTOM_RESOURCE_GROUPS = ("monitoring.coreos.com/",)


def _manifests(run: StackRun) -> list[dict[str, Any]]:
    renderer = PlanRenderer(run.invented)
    return [renderer.value(resource.inputs) for resource in kubernetes_manifests(run)]


def _pod_specs(run: StackRun) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for manifest in _manifests(run):
        spec = manifest.get("spec", {})
        template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
        if template:
            specs.append((f"{manifest['kind']}/{manifest['metadata']['name']}", template["spec"]))
    return specs


def _deployments(run: StackRun) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _manifests(run) if d["kind"] == "Deployment"}


def _ingress(run: StackRun) -> dict[str, Any]:
    (ingress,) = [m for m in _manifests(run) if m["kind"] == "Ingress"]
    return ingress


def _traffic(run: StackRun) -> dict[str, int]:
    return traffic_of(_ingress(run))


def traffic_of(ingress: dict[str, Any]) -> dict[str, int]:
    """Service name -> percent of traffic, read from the Ingress as the ALB controller would."""
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    if backend["port"].get("name") == "use-annotation":
        forward = json.loads(ingress["metadata"]["annotations"][f"alb.ingress.kubernetes.io/actions.{backend['name']}"])
        return {group["serviceName"]: group["weight"] for group in forward["forwardConfig"]["targetGroups"]}
    return {backend["name"]: 100}


def _image(deployment: dict[str, Any]) -> str:
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def _env(deployment: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("stack", [s for s in COMMITTED_STACKS if s != "dev"])
def test_every_manifest_validates_against_the_clusters_kubernetes_schema(
    committed_runs: dict[str, StackRun], stack: str
) -> None:
    version = environment_of(committed_runs[stack], stack_config(stack)).config.compute.eks.version  # type: ignore[union-attr]
    manifests = _manifests(committed_runs[stack])
    assert len(manifests) >= 8
    custom = [m for m in manifests if m["apiVersion"].startswith(CUSTOM_RESOURCE_GROUPS)]
    assert custom, "the Prometheus Operator's objects are expected here"
    for manifest in manifests:
        if manifest not in custom:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_dev_has_no_kubernetes_objects(committed_runs: dict[str, StackRun]) -> None:
    assert _manifests(committed_runs["dev"]) == []


def test_no_container_runs_as_root_or_with_a_writable_root(stack_run: StackRun) -> None:
    for where, spec in _pod_specs(stack_run):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where


def test_deployments_roll_without_downtime_and_drain_before_they_stop(committed_runs: dict[str, StackRun]) -> None:
    for deployment in _deployments(committed_runs["prod"]).values():
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
        service_grace = int(_env(deployment)["MLSTACK_GRACE_PERIOD_SECONDS"])
        assert pod["terminationGracePeriodSeconds"] > pre_stop + service_grace
        assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"


def _prod_with(run_stack: RunStack, **release: Any) -> StackRun:
    config = stack_config("prod")
    config["mlstack:release"] = {**config["mlstack:release"], **release}
    return run_stack("prod", config)


@pytest.mark.parametrize("weight", [1, 10, 50, 100])
def test_canary_weights_follow_config_and_sum_to_100(run_stack: RunStack, weight: int) -> None:
    run = _prod_with(run_stack, canary={"weight": weight, "version": {"imageTag": "0.2.0", "modelVersion": "1.1.0"}})
    traffic = _traffic(run)
    expected = {"model-service": 100 - weight, "model-service-canary": weight}
    assert traffic == {name: share for name, share in expected.items() if share > 0}
    assert sum(traffic.values()) == 100
    canary = _deployments(run)["model-service-canary"]
    assert _image(canary).endswith(":0.2.0")
    assert _env(canary)["MLSTACK_MODEL_URI"].endswith("/loan-approval/1.1.0/")


def test_a_canary_at_weight_zero_is_removed(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["prod"]
    assert set(_deployments(run)) == {"model-service"}
    assert _traffic(run) == {"model-service": 100}
    assert WEIGHTED not in _ingress(run)["metadata"]["annotations"]


def _staging_blue_green(run_stack: RunStack, **blue_green: Any) -> StackRun:
    config = stack_config("staging")
    settings = config["mlstack:release"]["blueGreen"]
    settings.update(green={"imageTag": "0.2.0", "modelVersion": "1.1.0"}, **blue_green)
    return run_stack("staging", config)


def _plan_by_urn(run: StackRun) -> dict[str, Any]:
    renderer = PlanRenderer(run.invented)
    return {resource.urn: renderer.value(resource.inputs) for resource in run.resources}


def _changed(before: StackRun, after: StackRun) -> dict[str, str]:
    """URN -> added / removed / changed, between two previews."""
    old, new = _plan_by_urn(before), _plan_by_urn(after)
    changes = dict.fromkeys(old.keys() - new.keys(), "removed")
    changes |= dict.fromkeys(new.keys() - old.keys(), "added")
    changes |= {urn: "changed" for urn in old.keys() & new.keys() if old[urn] != new[urn]}
    return changes


def _names(changes: dict[str, str]) -> dict[str, str]:
    return {urn.rsplit("::", 1)[-1]: change for urn, change in changes.items()}


def test_switching_the_active_colour_changes_only_the_traffic_target(run_stack: RunStack) -> None:
    blue = _staging_blue_green(run_stack, activeColor="blue", idle="warm")
    green = _staging_blue_green(run_stack, activeColor="green", idle="warm")
    assert _traffic(blue) == {"model-service-blue": 100}
    assert _traffic(green) == {"model-service-green": 100}
    assert _names(_changed(blue, green)) == {"model-service-ingress": "changed"}


def test_with_scale_down_the_idle_colour_gets_a_fresh_countdown_and_keeps_its_pods(run_stack: RunStack) -> None:
    blue = _staging_blue_green(run_stack, activeColor="blue")
    green = _staging_blue_green(run_stack, activeColor="green")
    changes = _names(_changed(blue, green))
    assert changes["model-service-ingress"] == "changed"
    # Both colours' Deployments keep their pod templates; only the scale-down machinery moves.
    assert "model-service-blue" not in changes
    assert "model-service-green" not in changes
    jobs = [name for name in changes if "scale-down" in name]
    assert sorted(changes[name] for name in jobs) == ["added", "removed"]
    (job,) = [m for m in _manifests(green) if m["kind"] == "Job"]
    command = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert command == "sleep 600 && kubectl -n mlstack scale deployment/model-service-blue --replicas=0"
    idle = next(r for r in green.of_type(DEPLOYMENT) if r.name == "model-service-blue")
    assert idle.inputs["spec"]["replicas"] == 2  # Pulumi leaves the count to the job (ignore_changes)


def test_gpu_pods_carry_the_toleration_and_the_resource_cpu_pods_neither(
    run_stack: RunStack, committed_runs: dict[str, StackRun]
) -> None:
    gpu_run = _prod_with(run_stack, accelerator="gpu")
    (gpu_group,) = [g for g in gpu_run.of_type("aws:eks/nodeGroup:NodeGroup") if g.inputs["amiType"].endswith("NVIDIA")]
    for deployment in _deployments(gpu_run).values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert pod["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
        ]
        assert {t["key"] for t in pod["tolerations"]} == {t["key"] for t in gpu_group.inputs["taints"]}
        assert pod["nodeSelector"] == {"mlstack.io/pool": "gpu"}
        assert _env(deployment)["MLSTACK_DEVICE"] == "cuda"
        assert _image(deployment).endswith("-gpu")
    for deployment in _deployments(committed_runs["prod"]).values():
        pod = deployment["spec"]["template"]["spec"]
        assert "tolerations" not in pod
        assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
        assert pod["nodeSelector"] == {"mlstack.io/pool": "cpu"}


def test_probes_are_routes_the_real_service_answers(committed_runs: dict[str, StackRun], tmp_path: Path) -> None:
    deployment = _deployments(committed_runs["prod"])["model-service"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    server = start_server(tmp_path)
    try:
        assert int(_env(deployment)["MLSTACK_PORT"]) == ports["http"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["port"] in ports, f"{probe} names no container port"
            response = server.client.get(get["path"])
            assert response.status_code == 200, f"{probe} {get['path']} answered {response.status_code}"
    finally:
        server.stop()


# --- the runbook: each step is one config change, compared preview to preview ---------------------------


def test_runbook_roll_forward_changes_only_the_stable_image(
    run_stack: RunStack, committed_runs: dict[str, StackRun]
) -> None:
    config = copy.deepcopy(stack_config("prod"))
    config["mlstack:service"] = {"imageTag": "0.2.0"}
    after = run_stack("prod", config)
    assert _names(_changed(committed_runs["prod"], after)) == {
        "model-service-stable": "changed",
        "batch-cronjob": "changed",
    }
    assert _image(_deployments(after)["model-service"]).endswith(":0.2.0")


def test_runbook_promote_the_canary(run_stack: RunStack) -> None:
    canary_version = {"imageTag": "0.2.0", "modelVersion": "1.1.0"}
    during = _prod_with(run_stack, canary={"weight": 10, "version": canary_version})
    config = stack_config("prod")
    config["mlstack:service"] = canary_version
    config["mlstack:release"]["canary"] = {"weight": 0}
    promoted = run_stack("prod", config)
    stable = _deployments(promoted)["model-service"]
    assert _image(stable).endswith(":0.2.0")
    assert _env(stable)["MLSTACK_MODEL_URI"].endswith("/loan-approval/1.1.0/")
    assert set(_deployments(promoted)) == {"model-service"}
    assert _traffic(promoted) == {"model-service": 100}
    removed = {name for name, change in _names(_changed(during, promoted)).items() if change == "removed"}
    assert {"model-service-canary", "model-service-canary-service", "model-service-canary-hpa"} <= removed


def test_runbook_roll_back_the_model_is_one_value(run_stack: RunStack, committed_runs: dict[str, StackRun]) -> None:
    config = stack_config("prod")
    config["mlstack:service"] = {"modelVersion": "0.9.0"}
    rolled_back = run_stack("prod", config)
    # The serving Deployment and the batch job, which scores with the same model; nothing else.
    assert _names(_changed(committed_runs["prod"], rolled_back)) == {
        "model-service-stable": "changed",
        "batch-cronjob": "changed",
    }
    assert _env(_deployments(rolled_back)["model-service"])["MLSTACK_MODEL_URI"].endswith("/loan-approval/0.9.0/")


def test_batch_cronjob_runs_the_scorer_with_the_service_account(committed_runs: dict[str, StackRun]) -> None:
    (cron,) = [m for m in _manifests(committed_runs["prod"]) if m["kind"] == "CronJob"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 2
    assert cron["spec"]["successfulJobsHistoryLimit"] == 3
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "model-service"
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "mlstack_service.batch"]
    args = dict(zip(container["args"][::2], container["args"][1::2], strict=True))
    assert args["--input"].endswith("/batch/input/")
    assert args["--output"].endswith("/batch/output/")
    stable = _deployments(committed_runs["prod"])["model-service"]
    assert container["image"] == _image(stable)


def test_ingress_uses_the_stacks_load_balancer_group_and_the_ready_route(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["prod"]
    annotations = _ingress(run)["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/healthcheck-path"] == "/v2/health/ready"
    assert annotations["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    lb_group = next(g for g in run.of_type("aws:ec2/securityGroup:SecurityGroup") if g.name.endswith("-lb"))
    raw = next(r for r in run.of_type(INGRESS))
    assert raw.inputs["metadata"]["annotations"]["alb.ingress.kubernetes.io/security-groups"] == lb_group.id


def test_autoscaling_follows_cpu_and_the_request_rate_prometheus_adapter_serves(
    committed_runs: dict[str, StackRun],
) -> None:
    run = committed_runs["prod"]
    env = environment_of(run, stack_config("prod"))
    (hpa,) = [m for m in _manifests(run) if m["kind"] == "HorizontalPodAutoscaler"]
    metrics = {metric["type"]: metric for metric in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["target"]["averageUtilization"] == env.config.release.target_cpu_utilization
    pods = metrics["Pods"]["pods"]
    assert pods["target"]["averageValue"] == str(env.config.release.target_requests_per_second)
    (adapter,) = [r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "prometheus-adapter"]
    (rule,) = adapter.inputs["values"]["rules"]["custom"]
    assert rule["name"]["as"] == pods["metric"]["name"]
    assert "mlstack_requests_total" in rule["seriesQuery"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (
        env.config.release.replicas,
        env.config.release.max_replicas,
    )


def _load_balancer_attributes(ingress: dict[str, Any]) -> dict[str, str]:
    value = ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/load-balancer-attributes"]
    return dict(item.split("=", 1) for item in value.split(","))


@pytest.mark.parametrize(("stack", "protected"), [("prod", "true"), ("staging", "false")])
def test_alb_deletion_protection_is_always_stated_so_unprotecting_a_stack_frees_its_alb(
    run_stack: RunStack, stack: str, protected: str
) -> None:
    # The controller never resets an attribute the annotation stops naming, so "off" must be said outright.
    config = stack_config(stack)
    config["mlstack:monitoring"] = {"grafanaExposure": "ingress"}
    run = run_stack(stack, config)
    ingresses = [m for m in _manifests(run) if m["kind"] == "Ingress"]
    assert {i["metadata"]["name"] for i in ingresses} == {"model-service", "grafana"}
    for ingress in ingresses:
        assert _load_balancer_attributes(ingress)["deletion_protection.enabled"] == protected
        assert _load_balancer_attributes(ingress)["routing.http.drop_invalid_header_fields.enabled"] == "true"
