"""The model service's pod, hardened: non-root, read-only root, no capabilities, probes on both protocols.

Probes, one per protocol, because Kubernetes allows one handler per probe:
- startup: REST `/v2/health/ready`, which answers only once the model is loaded (both protocols serve that model).
- readiness: the native gRPC probe (grpc.health.v1.Health/Check, service ""), which the service answers SERVING once
  the model is ready and NOT_SERVING while it drains (contract 1 of the gRPC work): the same meaning as the REST
  ready route, and a pod whose gRPC server is down leaves every Service's endpoints.
- liveness: REST `/v2/health/live`: a REST server that stops answering restarts the pod. Not gRPC health: it turns
  NOT_SERVING while draining, and a liveness failure then would kill the pod in the middle of its drain.
The ALB checks each protocol on its own as well: the REST target group on the ready route, the gRPC one on
grpc.health.v1 (infra/workloads/model_service.py).
"""

from typing import Any

from infra.compute.taints import Taint, tolerations_for
from infra.config.models import DriftConfig

CONTAINER_PORT_NAME = "http"
# OIP v2 over gRPC (inference.GRPCInferenceService) and grpc.health.v1, on the service's own port.
GRPC_PORT_NAME = "grpc"
# /metrics and feedback: reachable in the cluster only (no Service the ALB routes to names it; NetworkPolicies).
INTERNAL_PORT_NAME = "internal"
# The client keys files (digests) from the Secret CLIENT_KEYS_SECRET, read by the service at start.
CLIENT_KEYS_DIR = "/etc/mlstack/clients"
API_KEYS_FILE = "api-keys"
FEEDBACK_KEYS_FILE = "feedback-keys"
# The MAC key prediction ids are signed with, shared by the replicas so any of them accepts any one's feedback.
PREDICTION_ID_KEY_DIR = "/etc/mlstack/prediction-id"
PREDICTION_ID_KEY_FILE = "key"
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
RUN_AS = 10001
GPU_RESOURCE = "nvidia.com/gpu"
# Kubernetes stops routing to a terminating pod a few seconds after it starts terminating; the preStop
# pause covers that window, then SIGTERM starts the service's own drain (its grace period below).
PRE_STOP_SECONDS = 10
SERVICE_GRACE_SECONDS = 25
TERMINATION_GRACE_SECONDS = PRE_STOP_SECONDS + SERVICE_GRACE_SECONDS + 5
MODEL_CACHE_DIR = "/tmp/models"


def pod_security_context() -> dict[str, Any]:
    """Every mlstack pod: an unprivileged user, the runtime's default seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Every mlstack container: no privilege escalation, a read-only root, no capabilities."""
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def container_env(
    port: int,
    model_uri: str,
    gpu: bool,
    region: str,
    *,
    internal_port: int,
    grpc_port: int,
    model_sha256: str | None,
    api_keys: bool,
    feedback_keys: bool,
    drift: DriftConfig | None = None,
) -> list[dict[str, str]]:
    """The service's settings (service/mlstack_service/settings.py, MLSTACK_*): the package and its sha256 pin, the
    public REST, gRPC and internal ports, the keys files when the stack asks for keys, and the stack's drift budget
    (the same `monitoring.drift` the fleet's rules are rendered from, so a replica's verdicts and the fleet's agree)."""
    drift = drift or DriftConfig()
    optional = [
        *([{"name": "MLSTACK_MODEL_SHA256", "value": model_sha256}] if model_sha256 else []),
        *([{"name": "MLSTACK_API_KEYS_FILE", "value": f"{CLIENT_KEYS_DIR}/{API_KEYS_FILE}"}] if api_keys else []),
        *(
            [{"name": "MLSTACK_FEEDBACK_KEYS_FILE", "value": f"{CLIENT_KEYS_DIR}/{FEEDBACK_KEYS_FILE}"}]
            if feedback_keys
            else []
        ),
    ]
    return [
        {"name": "MLSTACK_MODEL_URI", "value": model_uri},
        *optional,
        {"name": "MLSTACK_PORT", "value": str(port)},
        {"name": "MLSTACK_INTERNAL_PORT", "value": str(internal_port)},
        {"name": "MLSTACK_GRPC_PORT", "value": str(grpc_port)},
        {"name": "MLSTACK_DEVICE", "value": "cuda" if gpu else "cpu"},
        {"name": "MLSTACK_MODEL_CACHE_DIR", "value": MODEL_CACHE_DIR},
        {"name": "MLSTACK_GRACE_PERIOD_SECONDS", "value": str(SERVICE_GRACE_SECONDS)},
        *drift_env(drift),
        {"name": "AWS_REGION", "value": region},
    ]


def prediction_id_key_env() -> list[dict[str, str]]:
    """MLSTACK_PREDICTION_ID_KEY_FILE, where pod_template mounts the `prediction_id_key_secret`."""
    return [{"name": "MLSTACK_PREDICTION_ID_KEY_FILE", "value": f"{PREDICTION_ID_KEY_DIR}/{PREDICTION_ID_KEY_FILE}"}]


def pod_template(
    *,
    labels: dict[str, str],
    image: str,
    env: list[dict[str, str]],
    port: int,
    internal_port: int,
    grpc_port: int,
    client_keys_secret: str | None,
    resources: dict[str, dict[str, str]],
    service_account: str,
    node_selector: dict[str, str],
    gpu_taints: list[Taint] | None,
    prediction_id_key_secret: str | None = None,
) -> dict[str, Any]:
    """A pod template; `gpu_taints` set means a GPU pod: it requests a GPU and tolerates the GPU pool.
    `client_keys_secret`: the Secret whose keys files are mounted read-only at CLIENT_KEYS_DIR."""
    gpu = gpu_taints is not None
    limits = dict(resources["limits"])
    if gpu:
        limits[GPU_RESOURCE] = "1"
    spec: dict[str, Any] = {
        "serviceAccountName": service_account,
        # The service never calls the Kubernetes API; its AWS credentials come through Pod Identity, whose
        # webhook mounts a token of its own (audience pods.eks.amazonaws.com), not the service-account one.
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {**pod_security_context(), "fsGroup": RUN_AS},
        "nodeSelector": node_selector,
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": labels},
            }
        ],
        "containers": [
            {
                "name": "model-service",
                "image": image,
                "ports": [
                    {"name": CONTAINER_PORT_NAME, "containerPort": port, "protocol": "TCP"},
                    {"name": INTERNAL_PORT_NAME, "containerPort": internal_port, "protocol": "TCP"},
                    {"name": GRPC_PORT_NAME, "containerPort": grpc_port, "protocol": "TCP"},
                ],
                "env": env,
                "resources": {"requests": dict(resources["requests"]), "limits": limits},
                "securityContext": {**container_security_context(), "runAsNonRoot": True},
                "startupProbe": {
                    "httpGet": {"path": READY_PATH, "port": CONTAINER_PORT_NAME},
                    "periodSeconds": 2,
                    "failureThreshold": 60,
                },
                "readinessProbe": {
                    # A gRPC probe takes a port number only (core/v1 GRPCAction), not a name.
                    "grpc": {"port": grpc_port, "service": ""},
                    "periodSeconds": 5,
                    "failureThreshold": 2,
                },
                "livenessProbe": {
                    "httpGet": {"path": LIVE_PATH, "port": CONTAINER_PORT_NAME},
                    "periodSeconds": 10,
                    "failureThreshold": 3,
                },
                "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SECONDS)]}}},
                "volumeMounts": [
                    {"name": "tmp", "mountPath": "/tmp"},
                    *(
                        [{"name": "client-keys", "mountPath": CLIENT_KEYS_DIR, "readOnly": True}]
                        if client_keys_secret
                        else []
                    ),
                    *(
                        [{"name": "prediction-id-key", "mountPath": PREDICTION_ID_KEY_DIR, "readOnly": True}]
                        if prediction_id_key_secret
                        else []
                    ),
                ],
            }
        ],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
            *(
                [{"name": "client-keys", "secret": {"secretName": client_keys_secret, "defaultMode": 0o440}}]
                if client_keys_secret
                else []
            ),
            *(
                [
                    {
                        "name": "prediction-id-key",
                        "secret": {"secretName": prediction_id_key_secret, "defaultMode": 0o440},
                    }
                ]
                if prediction_id_key_secret
                else []
            ),
        ],
    }
    if gpu:
        spec["tolerations"] = tolerations_for(gpu_taints or [])
    return {"metadata": {"labels": labels}, "spec": spec}


def drift_env(drift: DriftConfig) -> list[dict[str, str]]:
    """The stack's drift budget as the service's settings: the pods' env here, the dev host's .env (ec2_host.py)."""
    return [
        {"name": "MLSTACK_DRIFT_MIN_SAMPLES", "value": str(drift.min_samples)},
        {"name": "MLSTACK_DRIFT_FALSE_ALARM_DAYS", "value": str(drift.false_alarm_days)},
        {"name": "MLSTACK_DRIFT_HOLD_MINUTES", "value": str(drift.hold_minutes)},
        {"name": "MLSTACK_DRIFT_MAX_ACCURACY_DROP", "value": str(drift.max_accuracy_drop)},
    ]
