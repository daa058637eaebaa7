"""Monitoring on EKS: kube-prometheus-stack (Prometheus, Alertmanager, Grafana), the repository's rules and
dashboards, a PodMonitor for the model service's pods, and dcgm-exporter on the GPU pool.
"""

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from infra.compute.addons.helm import pinned_release
from infra.compute.eks_cluster import EksCluster
from infra.compute.node_pools import NodePools
from infra.compute.taints import tolerations_for
from infra.config import Environment
from infra.config.load import NAMESPACE as CONFIG_NAMESPACE
from infra.monitoring.slo_rules import dashboards, rule_files
from infra.versions import (
    DCGM_EXPORTER_CHART,
    KUBE_PROMETHEUS_STACK_CHART,
    PROMETHEUS_ADAPTER_CHART,
    PROMETHEUS_OPERATOR_CRDS_CHART,
)
from infra.workloads.alb_ingress import alb_annotations, load_balancer_hostname
from infra.workloads.model_service import NAMESPACE as SERVICE_NAMESPACE
from infra.workloads.model_service import REQUESTS_PER_SECOND_METRIC
from infra.workloads.objects import create
from infra.workloads.pod_template import INTERNAL_PORT_NAME
from infra.workloads.release_tracks import APP

NAMESPACE = "monitoring"
RELEASE = "kube-prometheus-stack"
GRAFANA_SERVICE = f"{RELEASE}-grafana"
GRAFANA_ADMIN_SECRET = "grafana-admin"
ALERTMANAGER_SECRET = "alertmanager-mlstack"
# The bearer token Alertmanager sends the retrain relay and the relay expects: one Secret, mounted into Alertmanager
# through alertmanagerSpec.secrets (chart 88.5.3 values.yaml: "mounted into /etc/alertmanager/secrets/", one folder
# per Secret) and read by the relay as MLSTACK_RELAY_WEBHOOK_TOKEN.
RETRAIN_WEBHOOK_SECRET = "retrain-relay-webhook"
RETRAIN_WEBHOOK_TOKEN_FILE = f"/etc/alertmanager/secrets/{RETRAIN_WEBHOOK_SECRET}/token"
DASHBOARD_LABEL = "grafana_dashboard"
# The model service's container port that serves /metrics, by name: the one place to re-point the scrape.
METRICS_PORT = INTERNAL_PORT_NAME
# The whole stack (operator, Grafana, kube-state-metrics, node-exporter on every node, the admission webhook's hook
# Jobs) must be ready before Helm's wait returns; on fresh nodes the image pulls alone can take minutes.
KUBE_PROMETHEUS_STACK_AWAIT_SECONDS = 900


def alertmanager_config(
    receivers: dict[str, str | None],
    retrain_webhook_url: str | None = None,
    retrain_webhook_credentials_file: str | None = None,
) -> dict[str, Any]:
    """Route every alert to the configured receivers; page-severity alerts to PagerDuty when it is set; alerts
    labelled `action: retrain` also to the retrain relay, once per model until the relay's cool-down has passed.

    The relay refuses a webhook without its bearer token: Alertmanager reads it from `retrain_webhook_credentials_file`
    (a mounted Secret's file, e.g. /etc/alertmanager/secrets/<secret>/<key>), so the token never enters this config.
    """
    slack, pagerduty, webhook = (
        receivers.get(key) for key in ("slackWebhookUrl", "pagerdutyRoutingKey", "alertWebhookUrl")
    )
    default: dict[str, Any] = {"name": "default"}
    if slack:
        default["slack_configs"] = [
            {"api_url": slack, "send_resolved": True, "title": "{{ .CommonAnnotations.summary }}"}
        ]
    if webhook:
        default["webhook_configs"] = [{"url": webhook, "send_resolved": True}]
    receivers_list = [default]
    routes = []
    if pagerduty:
        receivers_list.append(
            {"name": "pager", "pagerduty_configs": [{"routing_key": pagerduty, "send_resolved": True}]}
        )
        routes.append({"receiver": "pager", "matchers": ['severity="page"'], "continue": True})
    if retrain_webhook_url:
        relay_webhook: dict[str, Any] = {"url": retrain_webhook_url, "send_resolved": False}
        if retrain_webhook_credentials_file:
            # Alertmanager v0.34.0 docs/configuration.md, <http_config>: authorization.type (default Bearer) and
            # credentials_file; the same keys exist in the Debian v0.25.0 the tests run.
            relay_webhook["http_config"] = {
                "authorization": {"type": "Bearer", "credentials_file": retrain_webhook_credentials_file}
            }
        receivers_list.append({"name": "retrain", "webhook_configs": [relay_webhook]})
        routes.append(
            {
                "receiver": "retrain",
                "matchers": ['action="retrain"'],
                "group_by": ["model_name"],
                "group_wait": "1m",
                "group_interval": "30m",
                "repeat_interval": "12h",
                "continue": True,
            }
        )
    return {
        "route": {"receiver": "default", "group_by": ["alertname", "model_name"], "routes": routes},
        "receivers": receivers_list,
    }


def kube_prometheus_stack_values(env: Environment) -> dict[str, Any]:
    """Retention and storage from config; every ServiceMonitor, PodMonitor and PrometheusRule picked up; secrets by
    reference."""
    settings = env.config.monitoring
    return {
        # The CRDs come from the prometheus-operator-crds release, which Helm upgrades with the chart; this chart's
        # own crds/ would be installed once and never updated.
        "crds": {"enabled": False},
        "prometheus": {
            "prometheusSpec": {
                "retention": f"{settings.retention_days}d",
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "storageSpec": {
                    "volumeClaimTemplate": {
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": f"{settings.storage_gb}Gi"}},
                        }
                    }
                },
            }
        },
        "alertmanager": {
            "alertmanagerSpec": {
                "configSecret": ALERTMANAGER_SECRET,
                **({"secrets": [RETRAIN_WEBHOOK_SECRET]} if env.config.monitoring.retrain.repository else {}),
            }
        },
        "grafana": {
            "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
            "sidecar": {"dashboards": {"enabled": True, "label": DASHBOARD_LABEL, "searchNamespace": NAMESPACE}},
            # A Role in the monitoring namespace instead of a ClusterRole: the dashboard and datasource sidecars
            # read ConfigMaps and Secrets only where they look (grafana chart 12.11.1, values.yaml `rbac.namespaced`,
            # templates/role.yaml; grafana-community/helm-charts at 3386a115), never the cluster's secrets.
            "rbac": {"namespaced": True},
        },
    }


def prometheus_adapter_values() -> dict[str, Any]:
    """Serve the model service's per-pod request rate to the HorizontalPodAutoscaler as a custom metric."""
    return {
        "prometheus": {"url": f"http://{RELEASE}-prometheus.{NAMESPACE}.svc", "port": 9090},
        "rules": {
            "default": False,
            "custom": [
                {
                    "seriesQuery": 'mlstack_requests_total{namespace!="",pod!=""}',
                    "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
                    "name": {"matches": "^mlstack_requests_total$", "as": REQUESTS_PER_SECOND_METRIC},
                    "metricsQuery": (
                        'sum(rate(<<.Series>>{<<.LabelMatchers>>,route=~"/v2/models/.*infer"}[2m])) by (<<.GroupBy>>)'
                    ),
                }
            ],
        },
    }


class Monitoring(pulumi.ComponentResource):
    """Everything that watches the service and pages when it misbehaves."""

    grafana_url: pulumi.Output[str]
    grafana_admin_password: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        env: Environment,
        *,
        cluster: EksCluster,
        pools: NodePools,
        load_balancer_group_id: pulumi.Output[str],
        retrain_webhook_url: str | None,
        depends_on: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`depends_on` must hold the AWS Load Balancer Controller's release: every chart here creates Services,
        which that controller's webhook (failurePolicy Fail) must be up to admit."""
        super().__init__("mlstack:monitoring:Monitoring", name, None, opts)
        settings = env.config.monitoring
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=depends_on)
        namespace = create(k8s.core.v1.Namespace, f"{name}-namespace", metadata={"name": NAMESPACE}, opts=k8s_opts)
        self.namespace = namespace
        in_namespace = pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[namespace]))
        password = random.RandomPassword(
            f"{name}-grafana-admin", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        config = pulumi.Config(CONFIG_NAMESPACE)
        receivers = pulumi.Output.all(
            **{key: config.get_secret(key) for key in ("slackWebhookUrl", "pagerdutyRoutingKey", "alertWebhookUrl")}
        )
        # Credentials go into Secrets the chart references, so the release's values stay readable in a preview.
        create(
            k8s.core.v1.Secret,
            f"{name}-grafana-admin-secret",
            metadata={"name": GRAFANA_ADMIN_SECRET, "namespace": NAMESPACE},
            string_data={"admin-user": "admin", "admin-password": password.result},
            opts=in_namespace,
        )
        self.retrain_webhook_secret: pulumi.Resource | None = None
        if retrain_webhook_url:
            # Made here, before Alertmanager's pods that mount it; the relay (RetrainRelay) reads the same Secret.
            webhook_token = random.RandomPassword(
                f"{name}-retrain-webhook-token", length=48, special=False, opts=pulumi.ResourceOptions(parent=self)
            )
            self.retrain_webhook_secret = create(
                k8s.core.v1.Secret,
                f"{name}-retrain-webhook-secret",
                metadata={"name": RETRAIN_WEBHOOK_SECRET, "namespace": NAMESPACE},
                string_data={"token": webhook_token.result},
                opts=in_namespace,
            )
        credentials_file = RETRAIN_WEBHOOK_TOKEN_FILE if retrain_webhook_url else None
        create(
            k8s.core.v1.Secret,
            f"{name}-alertmanager-secret",
            metadata={"name": ALERTMANAGER_SECRET, "namespace": NAMESPACE},
            string_data={
                "alertmanager.yaml": pulumi.Output.secret(
                    receivers.apply(
                        lambda r: yaml.safe_dump(alertmanager_config(r, retrain_webhook_url, credentials_file))
                    )
                )
            },
            opts=in_namespace,
        )
        # The operator's CRDs as templates of their own release, so that a chart bump updates them too.
        crds = pinned_release(
            f"{name}-operator-crds",
            release_name="prometheus-operator-crds",
            chart=PROMETHEUS_OPERATOR_CRDS_CHART,
            namespace=NAMESPACE,
            # Deleting or replacing this release must never delete the CRDs, and with them every ServiceMonitor and
            # PrometheusRule in the cluster (values.yaml `crds.annotations`, applied to each CRD).
            values={"crds": {"annotations": {"helm.sh/resource-policy": "keep"}}},
            opts=in_namespace,
        )
        self.crds = crds
        release = pinned_release(
            f"{name}-release",
            release_name=RELEASE,
            chart=KUBE_PROMETHEUS_STACK_CHART,
            namespace=NAMESPACE,
            values=kube_prometheus_stack_values(env),
            opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[crds])),
            timeout_seconds=KUBE_PROMETHEUS_STACK_AWAIT_SECONDS,
        )
        # Custom resources (PrometheusRule, PodMonitor, dcgm-exporter's ServiceMonitor) need the CRDs' release;
        # the operator that acts on them comes with `release`.
        after_release = pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[crds, release]))
        for file_name, text in rule_files(settings).items():
            create(
                k8s.apiextensions.CustomResource,
                f"{name}-rules-{file_name.split('.')[0]}",
                api_version="monitoring.coreos.com/v1",
                kind="PrometheusRule",
                metadata={"name": f"mlstack-{file_name.split('.')[0]}", "namespace": NAMESPACE},
                spec=yaml.safe_load(text),
                opts=after_release,
            )
        for file_name, text in dashboards().items():
            create(
                k8s.core.v1.ConfigMap,
                f"{name}-dashboard-{file_name.removesuffix('.json')}",
                metadata={
                    "name": f"mlstack-dashboard-{file_name.removesuffix('.json')}",
                    "namespace": NAMESPACE,
                    "labels": {DASHBOARD_LABEL: "1"},
                },
                data={file_name: text},
                opts=in_namespace,
            )
        # The pods, not the Services: under Argo Rollouts several Services (stable and canary, active and preview)
        # select the same pods, and a ServiceMonitor would scrape each pod once per Service, doubling the per-pod
        # request rate Prometheus Adapter hands the HPA (which would then scale at half its target).
        create(
            k8s.apiextensions.CustomResource,
            f"{name}-pod-monitor",
            api_version="monitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata={"name": APP, "namespace": NAMESPACE},
            spec={
                "namespaceSelector": {"matchNames": [SERVICE_NAMESPACE]},
                "selector": {"matchLabels": {"app.kubernetes.io/name": APP}},
                "podMetricsEndpoints": [{"port": METRICS_PORT, "path": "/metrics", "interval": "15s"}],
            },
            opts=after_release,
        )
        pinned_release(
            f"{name}-prometheus-adapter",
            release_name="prometheus-adapter",
            chart=PROMETHEUS_ADAPTER_CHART,
            namespace=NAMESPACE,
            values=prometheus_adapter_values(),
            opts=after_release,
        )
        gpu = pools.spec("gpu")
        if gpu is not None:
            pinned_release(
                f"{name}-dcgm-exporter",
                release_name="dcgm-exporter",
                chart=DCGM_EXPORTER_CHART,
                namespace=NAMESPACE,
                values={
                    "tolerations": tolerations_for(gpu.taints),
                    "nodeSelector": dict(gpu.labels),
                    "serviceMonitor": {"enabled": True, "interval": "15s"},
                },
                # A DaemonSet on the GPU pool: with the pool at zero nodes it has nothing to wait for, and nodes the
                # node group creates are ready before this release starts (it depends on the pools).
                opts=after_release,
            )
        self.grafana_admin_password = pulumi.Output.secret(password.result)
        if settings.grafana_exposure == "ingress":
            self.grafana_url = self._grafana_ingress(name, env, load_balancer_group_id, after_release)
        else:
            self.grafana_url = pulumi.Output.from_input(
                f"kubectl -n {NAMESPACE} port-forward svc/{GRAFANA_SERVICE} 3000:80, then http://127.0.0.1:3000"
            )
        self.register_outputs({"grafanaUrl": self.grafana_url})

    @staticmethod
    def _grafana_ingress(
        name: str, env: Environment, load_balancer_group_id: pulumi.Output[str], opts: pulumi.ResourceOptions
    ) -> pulumi.Output[str]:
        """Grafana behind its own ALB, admitting only the stack's allowed CIDRs (the load-balancer group)."""
        ingress = create(
            k8s.networking.v1.Ingress,
            f"{name}-grafana-ingress",
            metadata={
                "name": "grafana",
                "namespace": NAMESPACE,
                "annotations": load_balancer_group_id.apply(
                    lambda group: alb_annotations(
                        scheme=env.config.ingress.scheme,
                        health_path="/api/health",
                        security_group_id=group,
                        deletion_protection=env.config.protect,
                    )
                ),
            },
            spec={
                "ingressClassName": "alb",
                "rules": [
                    {
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": GRAFANA_SERVICE, "port": {"number": 80}}},
                                }
                            ]
                        }
                    }
                ],
            },
            opts=opts,
        )
        return ingress.status.apply(load_balancer_hostname).apply(lambda host: f"http://{host}" if host else "")
