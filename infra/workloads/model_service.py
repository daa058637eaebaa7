"""The model service on Kubernetes: namespace, identity, one Deployment per release track, Services,
autoscaling, disruption budgets and the ALB Ingress whose rules carry the release strategy's traffic split.
"""

import hashlib
import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.compute.eks_cluster import EksCluster
from infra.compute.node_pools import POOL_LABEL, NodePools
from infra.config import Environment
from infra.registry.ecr import ContainerRegistry
from infra.security.iam import policy_document
from infra.security.kms import EncryptionKeys
from infra.security.pod_identity import pod_identity_role
from infra.security.security_groups import SecurityGroups
from infra.storage.model_bucket import ModelBucket
from infra.versions import KUBECTL_IMAGE
from infra.workloads.alb_ingress import alb_annotations, load_balancer_hostname
from infra.workloads.objects import create
from infra.workloads.pod_template import READY_PATH, container_env, pod_template
from infra.workloads.release_tracks import APP, Track, release_tracks

NAMESPACE = "mlstack"
SERVICE_ACCOUNT = "model-service"
SERVICE_PORT = 80
# Served by Prometheus Adapter (infra/monitoring/kube_prometheus_stack.py) from the service's request counter.
REQUESTS_PER_SECOND_METRIC = "mlstack_requests_per_second"
WEIGHTED_ACTION = "weighted-forward"
GPU_IMAGE_SUFFIX = "-gpu"


def ingress_rule_backend(tracks: list[Track]) -> tuple[dict[str, Any], dict[str, str]]:
    """The Ingress backend and annotations for a set of tracks: one serving track, or a weighted forward."""
    serving = [track for track in tracks if track.weight > 0]
    if len(serving) == 1:
        return {"service": {"name": serving[0].resource_name, "port": {"number": SERVICE_PORT}}}, {}
    forward = {
        "type": "forward",
        "forwardConfig": {
            "targetGroups": [
                {"serviceName": track.resource_name, "servicePort": str(SERVICE_PORT), "weight": track.weight}
                for track in serving
            ]
        },
    }
    annotations = {f"alb.ingress.kubernetes.io/actions.{WEIGHTED_ACTION}": json.dumps(forward)}
    return {"service": {"name": WEIGHTED_ACTION, "port": {"name": "use-annotation"}}}, annotations


class ModelService(pulumi.ComponentResource):
    """Everything that serves the model in the cluster, driven by the stack's release strategy."""

    tracks: list[Track]
    namespace: str
    namespace_resource: k8s.core.v1.Namespace
    service_account: str
    service_url: pulumi.Output[str]
    role: aws.iam.Role
    provider: pulumi.ProviderResource

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
        depends_on: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:workloads:ModelService", name, None, opts)
        self._name = name
        self._env = env
        self._release = env.config.release
        self._k8s = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=depends_on)
        self.tracks = release_tracks(self._release, env.config.service)
        self.namespace = NAMESPACE
        self.service_account = SERVICE_ACCOUNT
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
        self._create_identity(cluster, bucket, keys)
        for track in self.tracks:
            self._create_track(track, registry, bucket, pools)
        ingress = self._create_ingress(security_groups)
        hostname = ingress.status.apply(load_balancer_hostname)
        scheme = "https" if env.config.ingress.certificate_arn else "http"
        self.service_url = hostname.apply(lambda host: f"{scheme}://{host}" if host else "")
        self.register_outputs({"serviceUrl": self.service_url})

    def _create_identity(self, cluster: EksCluster, bucket: ModelBucket, keys: EncryptionKeys) -> None:
        """A service account whose IAM role (Pod Identity) reads the model prefix and nothing else."""
        child = pulumi.ResourceOptions(parent=self)
        self.role = pod_identity_role(
            self._name,
            cluster_name=cluster.name,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            policy=policy_document(bucket.read_models_statements(keys.models.arn)),
            opts=child,
        ).role
        create(
            k8s.core.v1.ServiceAccount,
            f"{self._name}-service-account",
            metadata={"name": SERVICE_ACCOUNT, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/name": APP}},
            opts=self._in_namespace,
        )

    def _create_track(self, track: Track, registry: ContainerRegistry, bucket: ModelBucket, pools: NodePools) -> None:
        """Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget of one track."""
        release = self._release
        gpu = release.accelerator == "gpu"
        gpu_pool = pools.spec("gpu")
        cpu_pool = pools.spec("cpu")
        pool = gpu_pool if gpu else cpu_pool
        assert pool is not None  # config validation: a GPU release needs the GPU pool
        image = pulumi.Output.concat(registry.repository_url, ":", track.image_tag, GPU_IMAGE_SUFFIX if gpu else "")
        model_uri = bucket.model_uri(self._env.config.service.model_name, track.model_version)
        port = self._env.config.service.port
        resources = {
            "requests": {"cpu": release.resources.cpu_request, "memory": release.resources.memory_request},
            "limits": {"cpu": release.resources.cpu_limit, "memory": release.resources.memory_limit},
        }
        template = pulumi.Output.all(image, model_uri).apply(
            lambda values: pod_template(
                labels=track.labels,
                image=values[0],
                env=container_env(port, values[1], gpu, self._env.region),
                port=port,
                resources=resources,
                service_account=SERVICE_ACCOUNT,
                node_selector={POOL_LABEL: pool.labels[POOL_LABEL]},
                gpu_taints=pool.taints if gpu else None,
            )
        )
        idle = track.scale_down_after_seconds is not None
        deployment = create(
            k8s.apps.v1.Deployment,
            f"{self._name}-{track.name}",
            metadata={"name": track.resource_name, "namespace": NAMESPACE, "labels": track.labels},
            spec={
                "replicas": track.replicas,
                "selector": {"matchLabels": track.labels},
                # Zero-downtime rollouts: a new pod must be ready before an old one goes.
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "minReadySeconds": 5,
                "revisionHistoryLimit": 5,
                "template": template,
            },
            opts=pulumi.ResourceOptions.merge(
                self._in_namespace,
                # An idle colour's replica count belongs to its scale-down job and the autoscaler, not to Pulumi.
                pulumi.ResourceOptions(ignore_changes=["spec.replicas"] if idle else None),
            ),
        )
        create(
            k8s.core.v1.Service,
            f"{self._name}-{track.name}-service",
            metadata={"name": track.resource_name, "namespace": NAMESPACE, "labels": track.labels},
            spec={
                "type": "ClusterIP",
                "selector": track.labels,
                "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
            },
            opts=self._in_namespace,
        )
        if not idle:
            create(
                k8s.autoscaling.v2.HorizontalPodAutoscaler,
                f"{self._name}-{track.name}-hpa",
                metadata={"name": track.resource_name, "namespace": NAMESPACE, "labels": track.labels},
                spec={
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": track.resource_name},
                    "minReplicas": track.replicas,
                    "maxReplicas": max(track.replicas, release.max_replicas),
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
                                "target": {
                                    "type": "AverageValue",
                                    "averageValue": str(release.target_requests_per_second),
                                },
                            },
                        },
                    ],
                },
                opts=pulumi.ResourceOptions.merge(self._in_namespace, pulumi.ResourceOptions(depends_on=[deployment])),
            )
        create(
            k8s.policy.v1.PodDisruptionBudget,
            f"{self._name}-{track.name}-pdb",
            metadata={"name": track.resource_name, "namespace": NAMESPACE, "labels": track.labels},
            spec={"maxUnavailable": 1, "selector": {"matchLabels": track.labels}},
            opts=self._in_namespace,
        )
        if idle:
            self._scale_down_later(track, deployment)

    def _scale_down_later(self, track: Track, deployment: k8s.apps.v1.Deployment) -> None:
        """A one-off Job that scales the idle colour to zero once its delay has passed.

        Its name carries the release state, so each switch of colour starts a fresh countdown.
        """
        delay = track.scale_down_after_seconds
        state = json.dumps([(t.name, t.image_tag, t.model_version, t.weight) for t in self.tracks])
        suffix = hashlib.sha256(state.encode()).hexdigest()[:8]
        job_name = f"scale-down-{track.name}-{suffix}"
        account = f"{APP}-scaler"
        create(
            k8s.core.v1.ServiceAccount,
            f"{self._name}-scaler-account-{track.name}",
            metadata={"name": f"{account}-{track.name}", "namespace": NAMESPACE},
            opts=self._in_namespace,
        )
        create(
            k8s.rbac.v1.Role,
            f"{self._name}-scaler-role-{track.name}",
            metadata={"name": f"{account}-{track.name}", "namespace": NAMESPACE},
            rules=[
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments/scale"],
                    "resourceNames": [track.resource_name],
                    "verbs": ["get", "patch", "update"],
                },
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments"],
                    "resourceNames": [track.resource_name],
                    "verbs": ["get"],
                },
            ],
            opts=self._in_namespace,
        )
        create(
            k8s.rbac.v1.RoleBinding,
            f"{self._name}-scaler-binding-{track.name}",
            metadata={"name": f"{account}-{track.name}", "namespace": NAMESPACE},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{account}-{track.name}"},
            subjects=[{"kind": "ServiceAccount", "name": f"{account}-{track.name}", "namespace": NAMESPACE}],
            opts=self._in_namespace,
        )
        create(
            k8s.batch.v1.Job,
            f"{self._name}-{job_name}",
            metadata={"name": job_name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/name": f"{APP}-scaler"}},
            spec={
                "backoffLimit": 3,
                "ttlSecondsAfterFinished": 86_400,
                "template": {
                    "spec": {
                        "serviceAccountName": f"{account}-{track.name}",
                        "restartPolicy": "OnFailure",
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 1001,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "nodeSelector": {POOL_LABEL: "cpu"},
                        "containers": [
                            {
                                "name": "scale-down",
                                "image": KUBECTL_IMAGE,
                                "command": ["/bin/sh", "-c"],
                                "args": [
                                    f"sleep {delay} && kubectl -n {NAMESPACE} scale "
                                    f"deployment/{track.resource_name} --replicas=0"
                                ],
                                "resources": {
                                    "requests": {"cpu": "10m", "memory": "32Mi"},
                                    "limits": {"memory": "64Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }
                        ],
                    }
                },
            },
            opts=pulumi.ResourceOptions.merge(
                self._in_namespace, pulumi.ResourceOptions(depends_on=[deployment], delete_before_replace=True)
            ),
        )

    def _create_ingress(self, security_groups: SecurityGroups) -> k8s.networking.v1.Ingress:
        """An ALB through the Load Balancer Controller: the stack's LB security group, health checks on ready."""
        settings = self._env.config.ingress
        backend, weighted = ingress_rule_backend(self.tracks)
        listen = [{"HTTP": 80}] + ([{"HTTPS": 443}] if settings.certificate_arn else [])
        annotations = pulumi.Output.all(security_groups.load_balancer_group_id).apply(
            lambda values: {
                **alb_annotations(
                    scheme=settings.scheme,
                    health_path=READY_PATH,
                    security_group_id=values[0],
                    deletion_protection=self._env.config.protect,
                ),
                "alb.ingress.kubernetes.io/listen-ports": json.dumps(listen),
                **(
                    {
                        "alb.ingress.kubernetes.io/certificate-arn": settings.certificate_arn,
                        "alb.ingress.kubernetes.io/ssl-redirect": "443",
                    }
                    if settings.certificate_arn
                    else {}
                ),
                **weighted,
            }
        )
        return create(
            k8s.networking.v1.Ingress,
            f"{self._name}-ingress",
            metadata={
                "name": APP,
                "namespace": NAMESPACE,
                "annotations": annotations,
                "labels": {"app.kubernetes.io/name": APP},
            },
            spec={
                "ingressClassName": "alb",
                "rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}],
            },
            opts=self._in_namespace,
        )
