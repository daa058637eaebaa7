"""The retrain relay on EKS: Alertmanager's drift alerts become `workflow_dispatch` runs of retrain.yml.

One small pod from the service image (`python -m mlstack_service.retrain_relay`) in the monitoring namespace,
reached by Alertmanager through a ClusterIP Service. The GitHub token comes from the stack's
`mlstack:retrainGithubToken` secret (a fine-grained token with Actions: write only) into a Kubernetes Secret, never
into the Deployment's spec.
"""

import pulumi
import pulumi_kubernetes as k8s

from infra.compute.eks_cluster import EksCluster
from infra.compute.node_pools import POOL_LABEL
from infra.config import Environment
from infra.config.errors import StackConfigError
from infra.config.load import NAMESPACE as CONFIG_NAMESPACE
from infra.config.load import stack_file
from infra.monitoring.kube_prometheus_stack import NAMESPACE, RETRAIN_WEBHOOK_SECRET
from infra.registry.ecr import ContainerRegistry
from infra.release_state import deployed_image_tag
from infra.workloads.objects import create
from infra.workloads.pod_template import container_security_context, pod_security_context

NAME = "retrain-relay"
PORT = 8080
TOKEN_KEY = "retrainGithubToken"
HEALTH_CHECK = {"path": "/healthz", "port": "http"}
# What Alertmanager posts to; the Service below answers on it.
WEBHOOK_URL = f"http://{NAME}.{NAMESPACE}.svc.cluster.local:{PORT}/alerts"


class RetrainRelay(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        env: Environment,
        *,
        cluster: EksCluster,
        registry: ContainerRegistry,
        depends_on: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:monitoring:RetrainRelay", name, None, opts)
        settings = env.config.monitoring.retrain
        token = pulumi.Config(CONFIG_NAMESPACE).get_secret(TOKEN_KEY)
        if token is None:
            raise StackConfigError(
                f"{stack_file(env.name)}: {CONFIG_NAMESPACE}:{TOKEN_KEY}: missing; monitoring.retrain.repository is "
                f"set, so the relay needs a fine-grained GitHub token with Actions: write on "
                f"{settings.repository} (and no other permission): "
                f"`pulumi config set --secret {CONFIG_NAMESPACE}:{TOKEN_KEY} ...`"
            )
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=depends_on)
        labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "mlstack"}
        # Its own identity, with no API token: the relay talks to GitHub, never to the Kubernetes API.
        service_account = create(
            k8s.core.v1.ServiceAccount,
            f"{name}-service-account",
            metadata={"name": NAME, "namespace": NAMESPACE, "labels": labels},
            automount_service_account_token=False,
            opts=k8s_opts,
        )
        secret = create(
            k8s.core.v1.Secret,
            f"{name}-token",
            metadata={"name": f"{NAME}-github", "namespace": NAMESPACE, "labels": labels},
            string_data={"token": token},
            opts=k8s_opts,
        )
        settings_env = {
            "MLSTACK_RELAY_REPOSITORY": settings.repository or "",
            "MLSTACK_RELAY_WORKFLOW": settings.workflow,
            "MLSTACK_RELAY_REF": settings.ref,
            "MLSTACK_RELAY_COOLDOWN_SECONDS": str(int(settings.cooldown_hours * 3600)),
            "MLSTACK_RELAY_PORT": str(PORT),
        }
        create(
            k8s.apps.v1.Deployment,
            f"{name}-deployment",
            metadata={"name": NAME, "namespace": NAMESPACE, "labels": labels},
            spec={
                # One replica: the cool-down lives in memory, and two relays would both dispatch.
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "nodeSelector": {POOL_LABEL: "cpu"},
                        "serviceAccountName": NAME,
                        "automountServiceAccountToken": False,
                        "securityContext": pod_security_context(),
                        "containers": [
                            {
                                "name": NAME,
                                "image": pulumi.Output.concat(registry.repository_url, ":", deployed_image_tag()),
                                "command": ["python", "-m", "mlstack_service.retrain_relay"],
                                "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
                                "env": [
                                    *({"name": key, "value": value} for key, value in settings_env.items()),
                                    {
                                        "name": "MLSTACK_RELAY_GITHUB_TOKEN",
                                        "valueFrom": {"secretKeyRef": {"name": f"{NAME}-github", "key": "token"}},
                                    },
                                    {
                                        # What Alertmanager sends (its credentials_file); the relay answers 401 to
                                        # any webhook without it, and refuses to start without it.
                                        "name": "MLSTACK_RELAY_WEBHOOK_TOKEN",
                                        "valueFrom": {"secretKeyRef": {"name": RETRAIN_WEBHOOK_SECRET, "key": "token"}},
                                    },
                                ],
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"cpu": "200m", "memory": "128Mi"},
                                },
                                "securityContext": container_security_context(),
                                "readinessProbe": {
                                    "httpGet": {"path": "/healthz", "port": "http"},
                                    "periodSeconds": 10,
                                },
                                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 30},
                            }
                        ],
                    },
                },
            },
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[secret, service_account])),
        )
        create(
            k8s.core.v1.Service,
            f"{name}-service",
            metadata={"name": NAME, "namespace": NAMESPACE, "labels": labels},
            spec={
                "type": "ClusterIP",
                "selector": labels,
                "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
            },
            opts=k8s_opts,
        )
        self.register_outputs({})
