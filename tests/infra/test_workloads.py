"""The model service on Kubernetes: valid manifests, hardened pods, an Argo Rollout per strategy, its analysis."""

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from infra.monitoring.kube_prometheus_stack import NAMESPACE as MONITORING_NAMESPACE
from infra.monitoring.kube_prometheus_stack import RELEASE as MONITORING_RELEASE
from infra.preview.engine import RecordedResource, StackRun
from infra.preview.plan import PlanRenderer, kubernetes_manifests
from infra.versions import ARGO_ROLLOUTS_CHART
from tests.conftest import COMMITTED_STACKS, RunStack, stack_config
from tests.graph import environment_of
from tests.service.conftest import infer_body, start_server, wait_for

ROLLOUT = "kubernetes:argoproj.io/v1alpha1:Rollout"
ANALYSIS_TEMPLATE = "kubernetes:argoproj.io/v1alpha1:AnalysisTemplate"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
SERVICE = "kubernetes:core/v1:Service"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
ACTION_ANNOTATION = "alb.ingress.kubernetes.io/actions.model-service"
# Custom resources: their schemas come with their CRDs (the Prometheus Operator's: tests/infra/test_monitoring.py;
# Argo Rollouts': checked against the pinned version's CRDs, see the README's release section).
CUSTOM_RESOURCE_GROUPS = ("monitoring.coreos.com/", "argoproj.io/")
SHA = re.compile(r"^[0-9a-f]{40}$")


def manifests(run: StackRun) -> list[dict[str, Any]]:
    renderer = PlanRenderer(run.invented)
    return [renderer.value(resource.inputs) for resource in kubernetes_manifests(run)]


def one(run: StackRun, kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [m for m in manifests(run) if m["kind"] == kind and name in (None, m["metadata"]["name"])]
    return found


def rollout(run: StackRun) -> dict[str, Any]:
    return one(run, "Rollout")


def container(workload: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = workload["spec"]["template"]["spec"]["containers"][0]
    return found


def env_of(workload: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(workload)["env"]}


def recorded(run: StackRun, type_token: str, name_suffix: str = "") -> RecordedResource:
    (found,) = [r for r in run.of_type(type_token) if r.name.endswith(name_suffix)]
    return found


def depends_on(run: StackRun, resource: RecordedResource, target: RecordedResource) -> bool:
    """`target` among the resource's dependencies, directly or through a dependency's."""
    seen: set[str] = set()
    todo = list(resource.dependencies)
    while todo:
        urn = todo.pop()
        if urn == target.urn:
            return True
        if urn not in seen:
            seen.add(urn)
            todo.extend(next((r.dependencies for r in run.resources if r.urn == urn), []))
    return False


def _pod_specs(run: StackRun) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for manifest in manifests(run):
        spec = manifest.get("spec", {})
        template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
        if template:
            specs.append((f"{manifest['kind']}/{manifest['metadata']['name']}", template["spec"]))
    return specs


@pytest.mark.parametrize("stack", [s for s in COMMITTED_STACKS if s != "dev"])
def test_every_manifest_validates_against_the_clusters_kubernetes_schema(
    committed_runs: dict[str, StackRun], stack: str
) -> None:
    version = environment_of(committed_runs[stack], stack_config(stack)).config.compute.eks.version  # type: ignore[union-attr]
    found = manifests(committed_runs[stack])
    custom = [m for m in found if m["apiVersion"].startswith(CUSTOM_RESOURCE_GROUPS)]
    assert {m["kind"] for m in custom} >= {"Rollout", "AnalysisTemplate", "PodMonitor"}
    for manifest in found:
        if manifest not in custom:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_dev_has_no_kubernetes_objects(committed_runs: dict[str, StackRun]) -> None:
    assert manifests(committed_runs["dev"]) == []


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_no_per_track_deployments_no_jobs_one_rollout(committed_runs: dict[str, StackRun], stack: str) -> None:
    kinds = [m["kind"] for m in manifests(committed_runs[stack])]
    assert kinds.count("Rollout") == 1
    assert "Job" not in kinds
    deployments = [m for m in manifests(committed_runs[stack]) if m["kind"] == "Deployment"]
    assert not [d for d in deployments if d["metadata"]["name"].startswith("model-service")]


def test_no_container_runs_as_root_or_with_a_writable_root(stack_run: StackRun) -> None:
    specs = list(_pod_specs(stack_run))
    # dev runs on an EC2 host, with no Kubernetes object; the EKS stacks must have pod specs to check.
    assert bool(specs) is (stack_run.stack != "dev"), [where for where, _ in specs]
    for where, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for each in spec["containers"]:
            security = each["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where


def test_pods_drain_before_they_stop_and_spread_over_zones(committed_runs: dict[str, StackRun]) -> None:
    service = rollout(committed_runs["prod"])
    pod = service["spec"]["template"]["spec"]
    pre_stop = int(container(service)["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + int(env_of(service)["MLSTACK_GRACE_PERIOD_SECONDS"])
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    # The platform's NetworkPolicies and the PodMonitor select the pods by this label.
    assert service["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "model-service"


def test_prod_canaries_through_the_alb_with_the_stack_files_steps(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["prod"]
    canary = rollout(run)["spec"]["strategy"]["canary"]
    env = environment_of(run, stack_config("prod"))
    services = {m["metadata"]["name"]: m for m in manifests(run) if m["kind"] == "Service"}
    ingress = one(run, "Ingress", "model-service")
    alb = canary["trafficRouting"]["alb"]
    assert alb["ingress"] == ingress["metadata"]["name"]
    assert {canary["stableService"], canary["canaryService"]} <= set(services)
    assert alb["servicePort"] == services[canary["stableService"]]["spec"]["ports"][0]["port"]
    # The rule forwards to the action Rollouts writes, named after the stable Service (no rootService).
    backend = ingress["spec"]["rules"][0]["http"]["paths"][-1]["backend"]["service"]
    assert backend == {"name": canary["stableService"], "port": {"name": "use-annotation"}}
    assert ACTION_ANNOTATION not in ingress["metadata"]["annotations"], "the controller owns the action"
    weights = [step["setWeight"] for step in canary["steps"] if "setWeight" in step]
    assert weights == [step.weight for step in env.config.release.canary.steps] == [5, 25, 50]  # type: ignore[union-attr]
    assert [s for s in canary["steps"] if "pause" in s] == [
        {"pause": {"duration": "5m"}},
        {"pause": {"duration": "10m"}},
        {"pause": {"duration": "10m"}},
    ]


def test_every_canary_weight_is_followed_by_an_analysis_before_the_next(committed_runs: dict[str, StackRun]) -> None:
    steps = rollout(committed_runs["prod"])["spec"]["strategy"]["canary"]["steps"]
    template = one(committed_runs["prod"], "AnalysisTemplate")["metadata"]["name"]
    weight_at = [index for index, step in enumerate(steps) if "setWeight" in step]
    for start, end in zip(weight_at, [*weight_at[1:], len(steps)], strict=True):
        analyses = [step["analysis"] for step in steps[start:end] if "analysis" in step]
        assert [a["templates"] for a in analyses] == [[{"templateName": template}]], steps[start:end]
    assert "analysis" in steps[-1], "the last analysis gates the promotion to 100%"


def test_staging_is_blue_green_gated_by_the_analysis(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["staging"]
    blue_green = rollout(run)["spec"]["strategy"]["blueGreen"]
    services = {m["metadata"]["name"] for m in manifests(run) if m["kind"] == "Service"}
    assert {blue_green["activeService"], blue_green["previewService"]} <= services
    assert blue_green["scaleDownDelaySeconds"] == 600
    assert blue_green["autoPromotionEnabled"] is True
    template = one(run, "AnalysisTemplate")["metadata"]["name"]
    assert blue_green["prePromotionAnalysis"]["templates"] == [{"templateName": template}]
    backend = one(run, "Ingress", "model-service")["spec"]["rules"][0]["http"]["paths"][-1]["backend"]["service"]
    assert backend == {"name": blue_green["activeService"], "port": {"number": 80}}


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_autoscaler_owns_the_rollouts_replica_count(committed_runs: dict[str, StackRun], stack: str) -> None:
    run = committed_runs[stack]
    env = environment_of(run, stack_config(stack))
    assert "replicas" not in recorded(run, ROLLOUT).inputs["spec"]
    hpa = one(run, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "name": rollout(run)["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (
        env.config.release.replicas,
        env.config.release.max_replicas,
    )


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_custom_resources_wait_for_the_controller_and_services_for_the_lb_controller(
    committed_runs: dict[str, StackRun], stack: str
) -> None:
    run = committed_runs[stack]
    releases = {r.inputs["name"]: r for r in run.of_type(HELM_RELEASE)}
    rollouts = releases["argo-rollouts"]
    assert (rollouts.inputs["chart"], rollouts.inputs["version"]) == (
        ARGO_ROLLOUTS_CHART.chart,
        ARGO_ROLLOUTS_CHART.version,
    )
    assert rollouts.inputs["values"]["installCRDs"] is True, "a chart bump upgrades the CRDs"
    for resource in (recorded(run, ROLLOUT), recorded(run, ANALYSIS_TEMPLATE)):
        assert depends_on(run, resource, rollouts), resource.name
    for resource in [*run.of_type(SERVICE), *run.of_type(INGRESS)]:
        if resource.inputs["metadata"]["namespace"] == "mlstack":
            assert depends_on(run, resource, releases["aws-load-balancer-controller"]), resource.name
    model = next(r for r in run.of_type("aws:s3/bucketObjectv2:BucketObjectv2") if r.name.endswith("metadata-json"))
    assert depends_on(run, recorded(run, ROLLOUT), model), "the pods need the model published first"
    # A release may hold at a pause for hours: `pulumi up` must not wait on it.
    assert recorded(run, ROLLOUT).inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}


def test_the_analysis_queries_the_stacks_prometheus_against_its_slo(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["prod"]
    env = environment_of(run, stack_config("prod"))
    metrics = {m["name"]: m for m in one(run, "AnalysisTemplate")["spec"]["metrics"]}
    assert set(metrics) == {"error-ratio", "latency-p99", "prediction-drift"}
    (prometheus,) = [r for r in run.of_type(HELM_RELEASE) if r.inputs["name"] == MONITORING_RELEASE]
    assert prometheus.inputs["namespace"] == MONITORING_NAMESPACE
    slo, analysis = env.config.monitoring.slo, env.config.release.analysis
    thresholds = {
        "error-ratio": slo.error_ratio,
        "latency-p99": slo.latency_p99_seconds,
        "prediction-drift": analysis.max_prediction_drift_psi,
    }
    for name, metric in metrics.items():
        provider = metric["provider"]["prometheus"]
        assert provider["address"] == f"http://{MONITORING_RELEASE}-prometheus.{MONITORING_NAMESPACE}.svc:9090"
        assert 'pod=~"model-service-{{args.new-hash}}-.*"' in provider["query"], "the new pods only"
        assert metric["failureCondition"].endswith(f"result[0] > {thresholds[name]}")
        assert (metric["count"], metric["failureLimit"]) == (analysis.count, analysis.failure_limit)
    drift = metrics["prediction-drift"]["provider"]["prometheus"]["query"]
    assert (
        'unless on (model_version) mlstack_model_info{namespace="mlstack", pod=~"model-service-{{args.stable-hash}}'
        in drift
    )


def test_the_analysis_reads_series_the_real_service_exports(
    committed_runs: dict[str, StackRun], tmp_path: Path
) -> None:
    queries = " ".join(
        metric["provider"]["prometheus"]["query"]
        for metric in one(committed_runs["prod"], "AnalysisTemplate")["spec"]["metrics"]
    )
    used = set(re.findall(r"\b(mlstack_[a-z0-9_]+)\{", queries))
    # Drift gauges appear once a refresh has seen the minimum sample: one row and a fast refresh here.
    server = start_server(tmp_path, drift_min_samples="1", drift_refresh_seconds="0.1")
    try:
        assert server.client.post("/v2/models/loan-approval/infer", json=infer_body(4)).status_code == 200
        wait_for(lambda: "mlstack_prediction_drift_psi{" in server.internal.get("/metrics").text, 10, "a drift refresh")
        exported = server.internal.get("/metrics").text
    finally:
        server.stop()
    assert used >= {"mlstack_requests_total", "mlstack_request_duration_seconds_bucket", "mlstack_prediction_drift_psi"}
    for series in used:
        assert re.search(rf"^{series}\{{[^}}]*model_version=", exported, re.MULTILINE), series
    # PromQL's =~ is anchored: the inference route label must match the queries' pattern as a whole.
    (pattern,) = set(re.findall(r'route=~"([^"]+)"', queries))
    routes = set(re.findall(r'^mlstack_requests_total\{[^}]*route="([^"]+)"', exported, re.MULTILINE))
    assert [route for route in routes if re.fullmatch(pattern, route)] == ["/v2/models/{name}/infer"]


def test_every_image_is_the_deployed_commits(stack_run: StackRun) -> None:
    tag = stack_run.outputs["imageTag"]
    assert SHA.match(tag)
    repository = stack_run.outputs["repositoryUrl"]
    specs = list(_pod_specs(stack_run))
    assert bool(specs) is (stack_run.stack != "dev"), "the EKS stacks' pod specs: what this test checks"
    for where, spec in specs:
        for each in spec["containers"]:
            image_repository, image_tag = each["image"].rsplit(":", 1)
            # "[unknown]": a repository URL the preview cannot know yet at the time the object is registered.
            assert image_repository in (repository, "[unknown]"), where
            assert image_tag in (tag, f"{tag}-gpu"), where


def test_gpu_pods_carry_the_toleration_and_the_gpu_image_cpu_pods_neither(
    run_stack: RunStack, committed_runs: dict[str, StackRun]
) -> None:
    config = stack_config("prod")
    config["mlstack:release"] = {**config["mlstack:release"], "accelerator": "gpu"}
    gpu_run = run_stack("prod", config)
    (gpu_group,) = [g for g in gpu_run.of_type("aws:eks/nodeGroup:NodeGroup") if g.inputs["amiType"].endswith("NVIDIA")]
    service = rollout(gpu_run)
    pod = service["spec"]["template"]["spec"]
    assert container(service)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {t["key"] for t in pod["tolerations"]} == {t["key"] for t in gpu_group.inputs["taints"]}
    assert pod["nodeSelector"] == {"mlstack.io/pool": "gpu"}
    assert env_of(service)["MLSTACK_DEVICE"] == "cuda"
    assert container(service)["image"].endswith(f":{gpu_run.outputs['imageTag']}-gpu")
    cpu = rollout(committed_runs["prod"])
    assert "tolerations" not in cpu["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in container(cpu)["resources"]["limits"]
    assert cpu["spec"]["template"]["spec"]["nodeSelector"] == {"mlstack.io/pool": "cpu"}


def test_probes_are_routes_the_real_service_answers(committed_runs: dict[str, StackRun], tmp_path: Path) -> None:
    service = container(rollout(committed_runs["prod"]))
    ports = {port["name"]: port["containerPort"] for port in service["ports"]}
    server = start_server(tmp_path)
    try:
        assert int(env_of(rollout(committed_runs["prod"]))["MLSTACK_PORT"]) == ports["http"]
        for probe in ("startupProbe", "livenessProbe"):
            get = service[probe]["httpGet"]
            assert get["port"] in ports, f"{probe} names no container port"
            response = server.client.get(get["path"])
            assert response.status_code == 200, f"{probe} {get['path']} answered {response.status_code}"
        # Readiness is the native gRPC probe (grpc.health.v1, service ""), on the port the service's gRPC server
        # listens on: a number, as core/v1 GRPCAction takes no port name.
        assert service["readinessProbe"]["grpc"] == {"port": ports["grpc"], "service": ""}
        assert int(env_of(rollout(committed_runs["prod"]))["MLSTACK_GRPC_PORT"]) == ports["grpc"]
    finally:
        server.stop()


def test_batch_cronjob_runs_the_scorer_with_its_own_service_account(committed_runs: dict[str, StackRun]) -> None:
    cron = one(committed_runs["prod"], "CronJob", "model-service-batch")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 2
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "model-service-batch"
    assert (
        pod["serviceAccountName"] != rollout(committed_runs["prod"])["spec"]["template"]["spec"]["serviceAccountName"]
    )
    batch = pod["containers"][0]
    assert batch["command"] == ["python", "-m", "mlstack_service.batch"]
    args = dict(zip(batch["args"][::2], batch["args"][1::2], strict=True))
    assert args["--input"].endswith("/batch/input/")
    assert args["--output"].endswith("/batch/output/")
    assert args["--model"] == env_of(rollout(committed_runs["prod"]))["MLSTACK_MODEL_URI"]
    assert batch["image"].rsplit(":", 1)[1] == container(rollout(committed_runs["prod"]))["image"].rsplit(":", 1)[1]


def test_ingress_uses_the_stacks_load_balancer_group_and_the_ready_route(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["prod"]
    annotations = one(run, "Ingress", "model-service")["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/healthcheck-path"] == "/v2/health/ready"
    assert annotations["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    lb_group = next(g for g in run.of_type("aws:ec2/securityGroup:SecurityGroup") if g.name.endswith("-lb"))
    raw = recorded(run, INGRESS, "model-service-ingress")
    assert raw.inputs["metadata"]["annotations"]["alb.ingress.kubernetes.io/security-groups"] == lb_group.id


def test_autoscaling_follows_cpu_and_the_request_rate_prometheus_adapter_serves(
    committed_runs: dict[str, StackRun],
) -> None:
    run = committed_runs["prod"]
    env = environment_of(run, stack_config("prod"))
    hpa = one(run, "HorizontalPodAutoscaler")
    metrics = {metric["type"]: metric for metric in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["target"]["averageUtilization"] == env.config.release.target_cpu_utilization
    pods = metrics["Pods"]["pods"]
    assert pods["target"]["averageValue"] == str(env.config.release.target_requests_per_second)
    (adapter,) = [r for r in run.of_type(HELM_RELEASE) if r.inputs["name"] == "prometheus-adapter"]
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
    ingresses = [m for m in manifests(run) if m["kind"] == "Ingress"]
    # prod has a certificate, so its ALB carries gRPC through a second Ingress of the service's ALB group.
    grpc = {"model-service-grpc"} if stack == "prod" else set()
    assert {i["metadata"]["name"] for i in ingresses} == {"model-service", "grafana"} | grpc
    for ingress in ingresses:
        assert _load_balancer_attributes(ingress)["deletion_protection.enabled"] == protected
        assert _load_balancer_attributes(ingress)["routing.http.drop_invalid_header_fields.enabled"] == "true"


def test_a_rolling_eks_stack_updates_in_place_without_traffic_routing(run_stack: RunStack) -> None:
    config = stack_config("prod")
    config["mlstack:release"] = {"strategy": "rolling", "replicas": 3, "maxReplicas": 6}
    run = run_stack("prod", config)
    assert rollout(run)["spec"]["strategy"] == {"canary": {"maxSurge": 1, "maxUnavailable": 0}}
    backend = one(run, "Ingress", "model-service")["spec"]["rules"][0]["http"]["paths"][-1]["backend"]["service"]
    assert backend == {"name": "model-service", "port": {"number": 80}}
    assert [
        m["metadata"]["name"]
        for m in manifests(run)
        if m["kind"] == "Service" and m["metadata"]["namespace"] == "mlstack"
    ] == ["model-service-internal", "model-service"]


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        (
            {"canary": {"steps": [{"weight": 25}, {"weight": 25}]}},
            "mlstack:release.canary.steps[1].weight: 25 is not above the previous step's 25",
        ),
        ({"canary": {"steps": []}}, "mlstack:release.canary.steps: [] is not allowed"),
        ({"canary": {"steps": [{"weight": 0}]}}, "mlstack:release.canary.steps[0].weight: 0 is not allowed"),
        (
            {"canary": {"steps": [{"weight": 5, "pause": "5 minutes"}]}},
            "mlstack:release.canary.steps[0].pause: '5 minutes' is not allowed",
        ),
        ({"canary": None}, "mlstack:release.canary: strategy 'canary' needs canary.steps"),
        (
            {"analysis": {"count": 3, "failureLimit": 3}},
            "mlstack:release.analysis.failureLimit: 3 would let every one of the 3 measurements fail",
        ),
    ],
)
def test_bad_release_settings_name_the_key(run_stack: RunStack, release: dict[str, Any], expected: str) -> None:
    config = stack_config("prod")
    settings = {**config["mlstack:release"], **release}
    config["mlstack:release"] = {key: value for key, value in settings.items() if value is not None}
    with pytest.raises(Exception, match=re.escape(expected)):
        run_stack("prod", config)
