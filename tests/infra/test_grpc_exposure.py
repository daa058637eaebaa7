"""OIP gRPC exposed by the stack: the pod's port and env, the Services' `grpc` port, the ALB's gRPC Ingress where
there is a certificate, NetworkPolicies and security groups that admit it only from where it must come, and the
dev host and compose publishing it."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.compute.ec2_host import render_user_data
from infra.config import StackConfigError, parse_stack_config
from infra.config.models import MonitoringConfig
from infra.preview.engine import StackRun
from tests.conftest import REPO_ROOT, RunStack, stack_config
from tests.infra.test_workloads import container, env_of, manifests, one, rollout

ALB = "alb.ingress.kubernetes.io"
POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
VALIDATION = "aws:acm/certificateValidation:CertificateValidation"


def _services(run: StackRun) -> dict[str, dict[str, Any]]:
    return {
        m["metadata"]["name"]: m
        for m in manifests(run)
        if m["kind"] == "Service" and m["metadata"].get("namespace") == "mlstack"
    }


@pytest.mark.parametrize(
    ("stack", "tracks"),
    [("staging", {"model-service", "model-service-preview"}), ("prod", {"model-service", "model-service-canary"})],
)
def test_every_track_service_carries_the_grpc_port_and_the_internal_one_does_not(
    committed_runs: dict[str, StackRun], stack: str, tracks: set[str]
) -> None:
    services = _services(committed_runs[stack])
    assert tracks <= set(services)
    for name in tracks:
        (grpc,) = [port for port in services[name]["spec"]["ports"] if port["name"] == "grpc"]
        assert grpc == {"name": "grpc", "port": 8081, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"}
    internal_ports = {port["name"] for port in services["model-service-internal"]["spec"]["ports"]}
    assert internal_ports == {"internal"}


def test_the_pod_listens_for_grpc_where_the_stack_says(run_stack: RunStack) -> None:
    config = stack_config("staging")
    config.setdefault("mlstack:service", {})["grpcPort"] = 9443
    workload = rollout(run_stack("staging", config))
    ports = {port["name"]: port["containerPort"] for port in container(workload)["ports"]}
    assert ports["grpc"] == 9443
    assert env_of(workload)["MLSTACK_GRPC_PORT"] == "9443"
    assert container(workload)["readinessProbe"]["grpc"] == {"port": 9443, "service": ""}
    # Startup and liveness stay on REST: liveness must not fail a draining pod, whose gRPC health is NOT_SERVING.
    assert container(workload)["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container(workload)["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


@pytest.mark.parametrize("port_key", ["port", "internalPort"])
def test_a_grpc_port_that_collides_with_another_is_refused(port_key: str) -> None:
    config = stack_config("prod")
    config["mlstack:service"] = {**config["mlstack:service"], "grpcPort": 7000, port_key: 7000}
    with pytest.raises(StackConfigError, match=r"service\.grpcPort: must differ from service\.port"):
        parse_stack_config("prod", config)


def test_with_a_certificate_the_alb_carries_grpc_on_443_to_the_stable_service(
    committed_runs: dict[str, StackRun],
) -> None:
    run = committed_runs["prod"]
    grpc = one(run, "Ingress", "model-service-grpc")
    rest = one(run, "Ingress", "model-service")
    annotations = grpc["metadata"]["annotations"]
    assert annotations[f"{ALB}/backend-protocol-version"] == "GRPC"
    assert json.loads(annotations[f"{ALB}/listen-ports"]) == [{"HTTPS": 443}]
    recorded_arns = {
        ingress.inputs["metadata"]["annotations"][f"{ALB}/certificate-arn"] for ingress in run.of_type(INGRESS)
    }
    assert recorded_arns == {run.of_type(VALIDATION)[0].outputs["certificateArn"]}
    assert annotations[f"{ALB}/healthcheck-path"] == "/grpc.health.v1.Health/Check"
    assert annotations[f"{ALB}/success-codes"] == "0"
    # gRPC's rules come before the REST Ingress's catch-all `/` in the shared listener.
    assert int(annotations[f"{ALB}/group.order"]) < int(rest["metadata"]["annotations"][f"{ALB}/group.order"])
    (path,) = grpc["spec"]["rules"][0]["http"]["paths"]
    assert path["path"] == "/inference.GRPCInferenceService"
    assert path["pathType"] == "Prefix"
    # The stable Service: Rollouts' ALB routing splits one servicePort only, so gRPC follows the stable track.
    canary = rollout(run)["spec"]["strategy"]["canary"]
    assert path["backend"]["service"] == {"name": canary["stableService"], "port": {"name": "grpc"}}
    assert canary["trafficRouting"]["alb"]["ingress"] == "model-service"
    assert run.outputs["grpcEndpoint"] == "api.ml.example.com:443"


def test_without_a_certificate_grpc_stays_in_the_cluster(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["staging"]
    assert [m["metadata"]["name"] for m in manifests(run) if m["kind"] == "Ingress"] == ["model-service"]
    assert run.outputs["grpcEndpoint"] == "model-service.mlstack.svc:8081"


def _grpc_peers(run: StackRun) -> list[dict[str, Any]]:
    return [
        peer
        for policy in run.of_type(POLICY)
        if policy.inputs["metadata"]["namespace"] == "mlstack"
        for rule in policy.inputs["spec"].get("ingress", [])
        if any(port["port"] == 8081 for port in rule["ports"])
        for peer in rule["from"]
    ]


def test_grpc_is_admitted_from_the_alb_only_with_a_certificate_and_from_named_namespaces(
    committed_runs: dict[str, StackRun], run_stack: RunStack
) -> None:
    assert _grpc_peers(committed_runs["staging"]) == []
    assert {"ipBlock"} == {key for peer in _grpc_peers(committed_runs["prod"]) for key in peer}
    config = stack_config("staging")
    config.setdefault("mlstack:service", {})["grpcNamespaces"] = ["scoring-clients"]
    peers = _grpc_peers(run_stack("staging", config))
    assert peers == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "scoring-clients"}}}]


def test_compose_publishes_the_grpc_port_and_tells_the_service() -> None:
    compose = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    service = compose["services"]["model-service"]
    assert service["environment"]["MLSTACK_GRPC_PORT"] == "8081"
    assert "${MLSTACK_GRPC_HOST_PORT:-8081}:8081" in service["ports"]


def test_the_dev_host_publishes_the_stacks_grpc_port_and_says_how_to_reach_it(
    committed_runs: dict[str, StackRun], tmp_path: Path
) -> None:
    script = render_user_data(
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/mlstack:abc",
        model_uri="s3://bucket/models/m/1.0.0/",
        region="us-east-1",
        log_group="/mlstack-dev/host",
        monitoring=MonitoringConfig(),
        host_port=8080,
        grpc_host_port=9443,
    )
    assert "\nMLSTACK_GRPC_HOST_PORT=9443\n" in script
    assert "${MLSTACK_GRPC_HOST_PORT:-8081}:8081" in script  # the compose file the host runs
    endpoint = committed_runs["dev"].outputs["grpcEndpoint"]
    assert "portNumber=8081,localPortNumber=8081" in endpoint
    assert endpoint.endswith("127.0.0.1:8081")
