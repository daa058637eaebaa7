"""The model service on Kubernetes: namespace, identity, one Argo Rollout, the Services its strategy routes through,
autoscaling, a disruption budget, the analysis that gates releases and the ALB Ingress.

The program declares the release policy; the Rollout controller carries it out and owns the release state:
- canary (ALB traffic routing): the stable and canary Services; Rollouts writes the Ingress's forward action
  (`alb.ingress.kubernetes.io/actions.model-service`) with the current weights. The program never writes that
  annotation, so under server-side apply it stays the controller's.
- blue-green: the active and preview Services; the controller switches the active Service's selector after the
  analysis passes and scales the previous version down after `scaleDownDelaySeconds`.
- The HorizontalPodAutoscaler targets the Rollout and owns `spec.replicas`, which the program never sets.
- The Rollout is not awaited (`pulumi.com/skipAwait`): a release in progress may hold at a pause for as long as a
  human takes to promote it, and `mlstack release status` shows it. Its Services are awaited until they have ready
  endpoints, and the pods load the model the stack published before them (infra/storage/bundled_model.py).
- TLS (a certificate in the stack's `ingress` config): the ALB listens on 443 with it, HTTP on 80 only redirects,
  and a second Ingress in the same ALB group sends gRPC (`/inference.GRPCInferenceService/*`) to the Service's
  `grpc` port, in target groups of protocol version GRPC. Argo Rollouts' ALB routing writes one weighted action per
  Ingress for a single `servicePort` (argo-rollouts v1.9.0 pkg/apis/rollouts/v1alpha1/types.go ALBTrafficRouting),
  so it cannot also split gRPC: gRPC goes to the stable (canary) or active (blue-green) Service, whose selector
  Rollouts moves to the new pods when it promotes them. Without a certificate gRPC stays in the cluster (an ALB
  carries gRPC on HTTPS listeners only).
"""

import json

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra.compute.eks_cluster import EksCluster
from infra.compute.node_pools import POOL_LABEL, NodePools
from infra.config import Environment
from infra.registry.ecr import ContainerRegistry
from infra.release_state import service_image_tag
from infra.security.api_client_keys import GeneratedClientKeys
from infra.security.iam import policy_document
from infra.security.kms import EncryptionKeys
from infra.security.pod_identity import pod_identity_role
from infra.security.security_groups import SecurityGroups
from infra.storage.bundled_model import model_sha256_pin
from infra.storage.label_prefixes import service_env, serving_statements
from infra.storage.model_bucket import ModelBucket
from infra.versions import ALB_SSL_POLICY
from infra.workloads.alb_ingress import PREFIX as ALB_PREFIX
from infra.workloads.alb_ingress import alb_annotations, load_balancer_hostname
from infra.workloads.analysis_template import TEMPLATE_NAME, analysis_template_spec
from infra.workloads.objects import create
from infra.workloads.pod_template import (
    API_KEYS_FILE,
    FEEDBACK_KEYS_FILE,
    GRPC_PORT_NAME,
    INTERNAL_PORT_NAME,
    PREDICTION_ID_KEY_FILE,
    READY_PATH,
    container_env,
    pod_template,
    prediction_id_key_env,
)
from infra.workloads.release_tracks import (
    APP,
    INGRESS_SERVICE,
    SERVICE_PORT,
    rollout_strategy,
    track_services,
)

NAMESPACE = "mlstack"
SERVICE_ACCOUNT = "model-service"
ROLLOUT = APP
INGRESS = APP
GRPC_INGRESS = f"{APP}-grpc"
# The Services' gRPC port, for in-cluster clients (model-service.mlstack:8081) and the gRPC Ingress.
GRPC_SERVICE_PORT = 8081
# The OIP v2 gRPC service's methods are /inference.GRPCInferenceService/<Method> (HTTP/2 paths).
GRPC_PATH = "/inference.GRPCInferenceService"
GRPC_HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check"
# gRPC status OK; what the ALB's gRPC health check expects (annotation `success-codes`).
GRPC_OK = "0"
# Both Ingresses share one ALB through this IngressGroup; gRPC's rules come first (lower order), because the REST
# Ingress ends in a catch-all `/`. An explicit group from the start, so that turning TLS on (which adds the gRPC
# Ingress) never moves the REST Ingress to another group, which would replace its ALB and its DNS name.
GROUP_ORDER_GRPC = 10
GROUP_ORDER_REST = 20
LABELS = {"app.kubernetes.io/name": APP}
PREDICTION_ID_KEY_SECRET = f"{APP}-prediction-id-key"
# Served by Prometheus Adapter (infra/monitoring/kube_prometheus_stack.py) from the service's request counter.
REQUESTS_PER_SECOND_METRIC = "mlstack_requests_per_second"
ROLLOUT_API_VERSION = "argoproj.io/v1alpha1"
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
CLIENT_KEYS_SECRET = f"{APP}-client-keys"
# The Service Prometheus scrapes (/metrics on the internal port); no Ingress or ALB action ever names it.
INTERNAL_SERVICE = f"{APP}-internal"
INTERNAL_SERVICE_LABEL = "mlstack.io/internal"
# The ALB answers these with 404 before any rule that reaches the pods (belt and braces: the public port serves
# neither /metrics nor feedback). ALB path patterns: `*` matches any characters.
INTERNAL_ROUTES_ACTION = "internal-routes"
INTERNAL_PATHS = (
    ("/metrics", "Exact"),
    ("/v2/models/*/feedback", "ImplementationSpecific"),
    ("/v2/models/*/versions/*/feedback", "ImplementationSpecific"),
)
NOT_FOUND_ACTION = {
    "type": "fixed-response",
    "fixedResponseConfig": {
        "contentType": "application/json",
        "statusCode": "404",
        "messageBody": '{"error":"not found"}',
    },
}


def client_keys_file(clients: dict[str, str]) -> str:
    """The keys file the service reads (mlstack_service.auth): `<client name> <sha256 of its key>` a line."""
    return "".join(f"{name} {digest}\n" for name, digest in sorted(clients.items()))


class ModelService(pulumi.ComponentResource):
    """Everything that serves the model in the cluster, released by Argo Rollouts the way the stack says."""

    namespace: str
    namespace_resource: k8s.core.v1.Namespace
    service_account: str
    rollout_name: str
    service_url: pulumi.Output[str]
    load_balancer_hostname: pulumi.Output[str]
    grpc_endpoint: pulumi.Output[str]
    role: aws.iam.Role
    provider: pulumi.ProviderResource
    generated_api_keys: dict[str, pulumi.Output[str]]

    def __init__(
        self,
        name: str,
        env: Environment,
        *,
        cluster: EksCluster,
        pools: NodePools,
        registry: ContainerRegistry,
        bucket: ModelBucket,
        keys: EncryptionKeys,
        security_groups: SecurityGroups,
        rollouts_controller: pulumi.Resource,
        load_balancer_controller: pulumi.Resource,
        model_package: list[pulumi.Resource],
        web_acl_arn: pulumi.Output[str] | None,
        access_logs_bucket: pulumi.Output[str] | None,
        certificate_arn: pulumi.Output[str] | None,
        depends_on: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:workloads:ModelService", name, None, opts)
        self._name = name
        self._env = env
        self._release = env.config.release
        self._k8s = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=depends_on)
        self.namespace = NAMESPACE
        self.service_account = SERVICE_ACCOUNT
        self.rollout_name = ROLLOUT
        self.provider = cluster.provider

        namespace = create(
            k8s.core.v1.Namespace,
            f"{name}-namespace",
            metadata={"name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
            opts=self._k8s,
        )
        # What the stack's other objects in this namespace depend on (batch job, network policies).
        self.namespace_resource = namespace
        self._in_namespace = pulumi.ResourceOptions.merge(self._k8s, pulumi.ResourceOptions(depends_on=[namespace]))
        # Custom resources wait for the controller that installs their CRDs; Services and the Ingress for the
        # LB controller, whose webhook admits them.
        self._after_rollouts = pulumi.ResourceOptions.merge(
            self._in_namespace, pulumi.ResourceOptions(depends_on=[rollouts_controller])
        )
        self._after_lb_controller = pulumi.ResourceOptions.merge(
            self._in_namespace, pulumi.ResourceOptions(depends_on=[load_balancer_controller])
        )
        self._create_identity(cluster, bucket, keys)
        self._client_keys_secret = self._create_client_keys()
        prediction_id_key = self._create_prediction_id_key()
        self._create_internal_service()
        for role_name, service_name in track_services(self._release).items():
            self._create_service(role_name, service_name)
        ingress = self._create_ingress(security_groups, web_acl_arn, access_logs_bucket, certificate_arn)
        if certificate_arn is not None:
            self._create_grpc_ingress(security_groups, web_acl_arn, access_logs_bucket, certificate_arn)
        template = create(
            k8s.apiextensions.CustomResource,
            f"{name}-analysis-template",
            api_version=ROLLOUT_API_VERSION,
            kind="AnalysisTemplate",
            metadata={"name": TEMPLATE_NAME, "namespace": NAMESPACE, "labels": LABELS},
            spec=analysis_template_spec(env, NAMESPACE),
            opts=self._after_rollouts,
        )
        keys_secret = [self._client_keys_secret, prediction_id_key] if self._client_keys_secret else [prediction_id_key]
        rollout = self._create_rollout(registry, bucket, pools, after=[template, ingress, *keys_secret, *model_package])
        self._create_autoscaling(rollout)
        self.load_balancer_hostname = ingress.status.apply(lambda status: load_balancer_hostname(status) or "")
        domain = env.config.ingress.domain
        scheme = "https" if certificate_arn is not None else "http"
        self.service_url = self.load_balancer_hostname.apply(
            lambda host: f"{scheme}://{domain or host}" if host else ""
        )
        self.grpc_endpoint = (
            self.load_balancer_hostname.apply(lambda host: f"{domain or host}:443" if host else "")
            if certificate_arn is not None
            else pulumi.Output.from_input(f"{INGRESS_SERVICE}.{NAMESPACE}.svc:{GRPC_SERVICE_PORT}")
        )
        self.register_outputs({"serviceUrl": self.service_url, "grpcEndpoint": self.grpc_endpoint})

    def _create_identity(self, cluster: EksCluster, bucket: ModelBucket, keys: EncryptionKeys) -> None:
        """A service account whose IAM role (Pod Identity) reads the model prefix, and writes the prediction log and
        labels (monitoring.predictionLog)."""
        child = pulumi.ResourceOptions(parent=self)
        log = self._env.config.monitoring.prediction_log
        self.role = pod_identity_role(
            self._name,
            cluster_name=cluster.name,
            cluster_arn=cluster.cluster.arn,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            policy=policy_document(
                [
                    *bucket.read_models_statements(keys.models.arn),
                    # The sampled prediction log and the labels, write-only; the label join's summary, read.
                    *(
                        serving_statements(bucket.bucket_arn, keys.models.arn, log, self._env.config.service.model_name)
                        if log.enabled
                        else []
                    ),
                ]
            ),
            opts=child,
        ).role
        create(
            k8s.core.v1.ServiceAccount,
            f"{self._name}-service-account",
            metadata={"name": SERVICE_ACCOUNT, "namespace": NAMESPACE, "labels": LABELS},
            opts=self._in_namespace,
        )

    def _create_client_keys(self) -> k8s.core.v1.Secret | None:
        """The keys files the service checks callers against (digests of keys, never keys), when it needs any.

        API clients are those the stack file lists with their key's digest, plus those it names for the stack to
        generate a key for (GeneratedClientKeys; the keys leave the stack only as the secret output apiClientKeys).
        """
        service = self._env.config.service
        generated = GeneratedClientKeys(
            f"{self._name}-api-key", service.generated_api_clients, pulumi.ResourceOptions(parent=self)
        )
        self.generated_api_keys = generated.keys
        api_keys_file = generated.digests.apply(lambda digests: client_keys_file({**service.api_clients, **digests}))
        files: dict[str, pulumi.Input[str]] = {
            **({API_KEYS_FILE: api_keys_file} if service.authentication == "api-keys" else {}),
            **({FEEDBACK_KEYS_FILE: client_keys_file(service.feedback_clients)} if service.feedback_clients else {}),
        }
        if not files:
            return None
        return create(
            k8s.core.v1.Secret,
            f"{self._name}-client-keys",
            metadata={"name": CLIENT_KEYS_SECRET, "namespace": NAMESPACE, "labels": LABELS},
            string_data=files,
            opts=self._in_namespace,
        )

    def _create_prediction_id_key(self) -> k8s.core.v1.Secret:
        """The key every replica signs and checks prediction ids with (service/mlstack_service/prediction_ids.py):
        random, drawn once and kept in the stack's state as a secret, so a label is accepted by any replica, also
        after a rollout or a restart."""
        key = random.RandomPassword(
            f"{self._name}-prediction-id-key", length=64, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        return create(
            k8s.core.v1.Secret,
            f"{self._name}-prediction-id-key",
            metadata={"name": PREDICTION_ID_KEY_SECRET, "namespace": NAMESPACE, "labels": LABELS},
            string_data={PREDICTION_ID_KEY_FILE: key.result},
            opts=self._in_namespace,
        )

    def _create_internal_service(self) -> None:
        """ClusterIP on the internal port only, for Prometheus (ServiceMonitor) and in-cluster feedback senders."""
        create(
            k8s.core.v1.Service,
            f"{self._name}-internal-service",
            metadata={
                "name": INTERNAL_SERVICE,
                "namespace": NAMESPACE,
                "labels": {**LABELS, INTERNAL_SERVICE_LABEL: "true"},
            },
            spec={
                "type": "ClusterIP",
                "selector": dict(LABELS),
                "ports": [
                    {
                        "name": INTERNAL_PORT_NAME,
                        "port": self._env.config.service.internal_port,
                        "targetPort": INTERNAL_PORT_NAME,
                        "protocol": "TCP",
                    }
                ],
            },
            opts=self._in_namespace,
        )

    def _create_service(self, role_name: str, service_name: str) -> None:
        """A Service over the service's pods; Rollouts narrows its selector to one ReplicaSet's pods."""
        create(
            k8s.core.v1.Service,
            f"{self._name}-{role_name}-service",
            metadata={
                "name": service_name,
                "namespace": NAMESPACE,
                "labels": {**LABELS, "mlstack.io/track": role_name},
            },
            spec={
                "type": "ClusterIP",
                "selector": dict(LABELS),
                "ports": [
                    {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"},
                    {
                        "name": GRPC_PORT_NAME,
                        "port": GRPC_SERVICE_PORT,
                        "targetPort": GRPC_PORT_NAME,
                        "protocol": "TCP",
                        "appProtocol": "grpc",
                    },
                ],
            },
            opts=self._after_lb_controller,
        )

    def _create_rollout(
        self, registry: ContainerRegistry, bucket: ModelBucket, pools: NodePools, after: list[pulumi.Resource]
    ) -> k8s.apiextensions.CustomResource:
        """The Rollout: the pod template and the strategy; no `replicas` (the autoscaler's)."""
        release = self._release
        service = self._env.config.service
        gpu = release.accelerator == "gpu"
        pool = pools.spec("gpu" if gpu else "cpu")
        assert pool is not None  # config validation: a GPU release needs the GPU pool
        image = pulumi.Output.concat(registry.repository_url, ":", service_image_tag(gpu))
        model_uri = bucket.model_uri(service.model_name, service.model_version)
        resources = {
            "requests": {"cpu": release.resources.cpu_request, "memory": release.resources.memory_request},
            "limits": {"cpu": release.resources.cpu_limit, "memory": release.resources.memory_limit},
        }
        prediction_log = self._env.config.monitoring.prediction_log
        template = pulumi.Output.all(image, model_uri, bucket.bucket_name).apply(
            lambda values: pod_template(
                labels=dict(LABELS),
                image=values[0],
                env=[
                    *container_env(
                        service.port,
                        values[1],
                        gpu,
                        self._env.region,
                        internal_port=service.internal_port,
                        grpc_port=service.grpc_port,
                        model_sha256=model_sha256_pin(self._env),
                        api_keys=service.authentication == "api-keys",
                        feedback_keys=bool(service.feedback_clients),
                        drift=self._env.config.monitoring.drift,
                    ),
                    *prediction_id_key_env(),
                    *service_env(values[2], prediction_log, service.model_name),
                ],
                port=service.port,
                internal_port=service.internal_port,
                grpc_port=service.grpc_port,
                client_keys_secret=CLIENT_KEYS_SECRET if self._client_keys_secret else None,
                resources=resources,
                service_account=SERVICE_ACCOUNT,
                node_selector={POOL_LABEL: pool.labels[POOL_LABEL]},
                gpu_taints=pool.taints if gpu else None,
                prediction_id_key_secret=PREDICTION_ID_KEY_SECRET,
            )
        )
        return create(
            k8s.apiextensions.CustomResource,
            f"{self._name}-rollout",
            api_version=ROLLOUT_API_VERSION,
            kind="Rollout",
            metadata={"name": ROLLOUT, "namespace": NAMESPACE, "labels": LABELS, "annotations": dict(SKIP_AWAIT)},
            spec={
                "selector": {"matchLabels": dict(LABELS)},
                "template": template,
                "minReadySeconds": 5,
                "revisionHistoryLimit": 5,
                # Pods that never become ready abort the release like a failed analysis would.
                "progressDeadlineSeconds": 900,
                "progressDeadlineAbort": True,
                # Going back to the previous revision (a reverted commit) skips the steps and analysis.
                "rollbackWindow": {"revisions": 1},
                "strategy": rollout_strategy(release, INGRESS, TEMPLATE_NAME),
            },
            opts=pulumi.ResourceOptions.merge(self._after_rollouts, pulumi.ResourceOptions(depends_on=after)),
        )

    def _create_autoscaling(self, rollout: k8s.apiextensions.CustomResource) -> None:
        """The HorizontalPodAutoscaler on the Rollout (it owns the replica count) and a disruption budget."""
        release = self._release
        after_rollout = pulumi.ResourceOptions.merge(self._after_rollouts, pulumi.ResourceOptions(depends_on=[rollout]))
        create(
            k8s.autoscaling.v2.HorizontalPodAutoscaler,
            f"{self._name}-hpa",
            metadata={"name": APP, "namespace": NAMESPACE, "labels": LABELS},
            spec={
                "scaleTargetRef": {"apiVersion": ROLLOUT_API_VERSION, "kind": "Rollout", "name": ROLLOUT},
                "minReplicas": release.replicas,
                "maxReplicas": release.max_replicas,
                # The larger of the two wins: CPU for heavy rows, request rate for many small requests.
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": release.target_cpu_utilization},
                        },
                    },
                    {
                        "type": "Pods",
                        "pods": {
                            "metric": {"name": REQUESTS_PER_SECOND_METRIC},
                            "target": {"type": "AverageValue", "averageValue": str(release.target_requests_per_second)},
                        },
                    },
                ],
            },
            opts=after_rollout,
        )
        create(
            k8s.policy.v1.PodDisruptionBudget,
            f"{self._name}-pdb",
            metadata={"name": APP, "namespace": NAMESPACE, "labels": LABELS},
            spec={"maxUnavailable": 1, "selector": {"matchLabels": dict(LABELS)}},
            opts=self._in_namespace,
        )

    def _shared_alb_annotations(
        self,
        security_groups: SecurityGroups,
        web_acl_arn: pulumi.Output[str] | None,
        access_logs_bucket: pulumi.Output[str] | None,
        certificate_arn: pulumi.Output[str] | None,
        *,
        health_path: str,
    ) -> pulumi.Output[dict[str, str]]:
        """What every Ingress of the service's ALB group says alike: the load balancer's own settings, which the
        controller requires identical across the group (`Exclusive` in v3.5.0 docs/guide/ingress/annotations.md),
        and the certificate with its TLS policy and the HTTP -> HTTPS redirect."""
        settings = self._env.config.ingress
        return pulumi.Output.all(
            security_groups.load_balancer_group_id,
            web_acl_arn if web_acl_arn is not None else "",
            access_logs_bucket if access_logs_bucket is not None else "",
            certificate_arn if certificate_arn is not None else "",
        ).apply(
            lambda values: {
                **alb_annotations(
                    scheme=settings.scheme,
                    health_path=health_path,
                    security_group_id=values[0],
                    deletion_protection=self._env.config.protect,
                    access_logs_bucket=values[2] or None,
                ),
                f"{ALB_PREFIX}/group.name": f"{self._env.prefix}-{APP}",
                **({f"{ALB_PREFIX}/wafv2-acl-arn": values[1]} if values[1] else {}),
                **(
                    {
                        f"{ALB_PREFIX}/certificate-arn": values[3],
                        f"{ALB_PREFIX}/ssl-policy": ALB_SSL_POLICY.value,
                        # Every HTTP listener of the group answers with a redirect to 443 and nothing else.
                        f"{ALB_PREFIX}/ssl-redirect": "443",
                    }
                    if values[3]
                    else {}
                ),
            }
        )

    def _create_ingress(
        self,
        security_groups: SecurityGroups,
        web_acl_arn: pulumi.Output[str] | None,
        access_logs_bucket: pulumi.Output[str] | None,
        certificate_arn: pulumi.Output[str] | None,
    ) -> k8s.networking.v1.Ingress:
        """An ALB through the Load Balancer Controller: the stack's LB security group, health checks on ready, 404
        for the internal routes, the stack's WAF web ACL and access logs where the stack has them; with a
        certificate, HTTPS on 443 and HTTP on 80 redirected to it.

        Canary: the rule's backend is the action Rollouts writes (`use-annotation`); the program leaves it alone.
        """
        listen = [{"HTTP": 80}] + ([{"HTTPS": 443}] if certificate_arn is not None else [])
        port = {"name": "use-annotation"} if self._release.strategy == "canary" else {"number": SERVICE_PORT}
        annotations = self._shared_alb_annotations(
            security_groups, web_acl_arn, access_logs_bucket, certificate_arn, health_path=READY_PATH
        ).apply(
            lambda shared: {
                **shared,
                f"{ALB_PREFIX}/group.order": str(GROUP_ORDER_REST),
                f"{ALB_PREFIX}/actions.{INTERNAL_ROUTES_ACTION}": json.dumps(NOT_FOUND_ACTION),
                f"{ALB_PREFIX}/listen-ports": json.dumps(listen),
            }
        )
        backend = {"service": {"name": INGRESS_SERVICE, "port": port}}
        not_found = {"service": {"name": INTERNAL_ROUTES_ACTION, "port": {"name": "use-annotation"}}}
        paths = [
            *({"path": path, "pathType": path_type, "backend": not_found} for path, path_type in INTERNAL_PATHS),
            {"path": "/", "pathType": "Prefix", "backend": backend},
        ]
        return create(
            k8s.networking.v1.Ingress,
            f"{self._name}-ingress",
            metadata={"name": INGRESS, "namespace": NAMESPACE, "annotations": annotations, "labels": LABELS},
            spec={
                "ingressClassName": "alb",
                "rules": [{"http": {"paths": paths}}],
            },
            opts=self._after_lb_controller,
        )

    def _create_grpc_ingress(
        self,
        security_groups: SecurityGroups,
        web_acl_arn: pulumi.Output[str] | None,
        access_logs_bucket: pulumi.Output[str] | None,
        certificate_arn: pulumi.Output[str],
    ) -> k8s.networking.v1.Ingress:
        """gRPC on the same ALB's 443: target groups of protocol version GRPC on the pods' gRPC port, health-checked
        with grpc.health.v1 (gRPC status 0), reached through the stable or active Service (module docstring)."""
        annotations = self._shared_alb_annotations(
            security_groups, web_acl_arn, access_logs_bucket, certificate_arn, health_path=GRPC_HEALTH_CHECK_PATH
        ).apply(
            lambda shared: {
                **shared,
                f"{ALB_PREFIX}/group.order": str(GROUP_ORDER_GRPC),
                f"{ALB_PREFIX}/listen-ports": json.dumps([{"HTTPS": 443}]),
                f"{ALB_PREFIX}/backend-protocol-version": "GRPC",
                f"{ALB_PREFIX}/success-codes": GRPC_OK,
            }
        )
        backend = {"service": {"name": INGRESS_SERVICE, "port": {"name": GRPC_PORT_NAME}}}
        return create(
            k8s.networking.v1.Ingress,
            # Named to sort after the REST Ingress: the cost estimate names the group's ALB after its first Ingress.
            f"{self._name}-ingress-grpc",
            metadata={"name": GRPC_INGRESS, "namespace": NAMESPACE, "annotations": annotations, "labels": LABELS},
            spec={
                "ingressClassName": "alb",
                "rules": [{"http": {"paths": [{"path": GRPC_PATH, "pathType": "Prefix", "backend": backend}]}}],
            },
            opts=self._after_lb_controller,
        )
