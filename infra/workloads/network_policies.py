"""NetworkPolicies: nothing reaches or leaves the stack's pods unless a rule below names it.

Enforced by the VPC CNI's network policy agent (`enableNetworkPolicy` on the vpc-cni add-on,
infra/compute/eks_addons.py). The agent always admits the pod's own node (aws/aws-network-policy-agent
pkg/fwruleprocessor/fw_rule_processor.go at c8619c05: "Traffic from the local node should always be allowed"),
so kubelet probes need no rule.

Ingress, in the service namespace: default deny; the public service port from the ALB's subnets only (target type
ip: the ALB's nodes connect to pod IPs from their addresses in those subnets); the gRPC port from the ALB's subnets
only where the ALB carries gRPC (the stack has a certificate), and from the namespaces in `service.grpcNamespaces`
(in-cluster clients); the internal port (/metrics and
feedback) from the monitoring namespace (Prometheus) and the stack's `service.feedbackNamespaces` only. The retrain
relay in the monitoring namespace admits only that namespace (Alertmanager; its pod labels differ between operator
versions, so the namespace is the stable selector).

Egress is denied by default too: a compromised model pod should not reach the kubelet, Prometheus, Grafana or
another tenant's pods. What the pods need stays open: DNS to CoreDNS, the EKS Pod Identity agent for AWS
credentials, and HTTPS anywhere (S3 through the gateway endpoint, KMS, STS, GitHub for the relay, and the
Kubernetes API for the jobs that call it, through the `kubernetes` Service on 443).
"""

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.compute.eks_cluster import EksCluster
from infra.config import Environment
from infra.monitoring.kube_prometheus_stack import NAMESPACE as MONITORING_NAMESPACE
from infra.monitoring.retrain_relay import NAME as RELAY_NAME
from infra.monitoring.retrain_relay import PORT as RELAY_PORT
from infra.network.vpc import ANYWHERE_IPV4, Network
from infra.workloads.model_service import NAMESPACE as SERVICE_NAMESPACE
from infra.workloads.objects import create
from infra.workloads.release_tracks import APP

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# The EKS Pod Identity agent answers credential requests on this link-local address, port 80
# (aws/amazon-eks-pod-identity-webhook main.go: container-credentials-full-uri http://169.254.170.23/v1/credentials).
POD_IDENTITY_AGENT = "169.254.170.23/32"
HTTPS = 443


def _namespace_peer(namespace: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}


def _tcp(port: int) -> dict[str, Any]:
    return {"protocol": "TCP", "port": port}


def essential_egress() -> list[dict[str, Any]]:
    """DNS, AWS credentials through Pod Identity, and HTTPS: what every pod of the stack needs, and no more."""
    return [
        {
            "to": [
                {
                    **_namespace_peer("kube-system"),
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"protocol": "UDP", "port": 53}, _tcp(53)],
        },
        {"to": [{"ipBlock": {"cidr": POD_IDENTITY_AGENT}}], "ports": [_tcp(80)]},
        {"to": [{"ipBlock": {"cidr": ANYWHERE_IPV4}}], "ports": [_tcp(HTTPS)]},
    ]


def load_balancer_cidrs(env: Environment, network: Network) -> list[str]:
    """Where the service's ALB connects from: the public subnets, or the private ones for an internal ALB."""
    internal = env.config.ingress.scheme == "internal"
    return network.private_subnet_cidrs if internal else network.public_subnet_cidrs


class NetworkPolicies(pulumi.ComponentResource):
    """Default deny in the service namespace, the relay isolated in the monitoring namespace, explicit allows."""

    def __init__(
        self,
        name: str,
        env: Environment,
        *,
        cluster: EksCluster,
        network: Network,
        service_namespace: pulumi.Resource,
        monitoring_namespace: pulumi.Resource,
        retrain_relay: bool,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:workloads:NetworkPolicies", name, None, opts)
        port = env.config.service.port
        in_service_namespace = pulumi.ResourceOptions(
            parent=self, provider=cluster.provider, depends_on=[service_namespace]
        )
        self._policy(
            f"{name}-default-deny",
            SERVICE_NAMESPACE,
            "default-deny",
            {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            in_service_namespace,
        )
        self._policy(
            f"{name}-model-service-ingress",
            SERVICE_NAMESPACE,
            f"{APP}-ingress",
            {
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": APP}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"ipBlock": {"cidr": cidr}} for cidr in load_balancer_cidrs(env, network)],
                        "ports": [_tcp(port)],
                    },
                    *self._grpc_ingress(env, network),
                    # The internal port (/metrics, feedback): Prometheus, and the namespaces the stack names as
                    # feedback senders; never the ALB.
                    {
                        "from": [
                            _namespace_peer(namespace)
                            for namespace in [MONITORING_NAMESPACE, *env.config.service.feedback_namespaces]
                        ],
                        "ports": [_tcp(env.config.service.internal_port)],
                    },
                ],
            },
            in_service_namespace,
        )
        self._policy(
            f"{name}-service-namespace-egress",
            SERVICE_NAMESPACE,
            "essential-egress",
            {"podSelector": {}, "policyTypes": ["Egress"], "egress": essential_egress()},
            in_service_namespace,
        )
        if retrain_relay:
            self._policy(
                f"{name}-retrain-relay",
                MONITORING_NAMESPACE,
                RELAY_NAME,
                {
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": RELAY_NAME}},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"podSelector": {}}], "ports": [_tcp(RELAY_PORT)]}],
                    "egress": essential_egress(),
                },
                pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[monitoring_namespace]),
            )
        self.register_outputs({})

    @staticmethod
    def _grpc_ingress(env: Environment, network: Network) -> list[dict[str, Any]]:
        """Who may open the gRPC port: the ALB (only when it listens for gRPC), and the stack's gRPC namespaces."""
        peers = [
            *(
                [{"ipBlock": {"cidr": cidr}} for cidr in load_balancer_cidrs(env, network)]
                if env.config.ingress.tls
                else []
            ),
            *(_namespace_peer(namespace) for namespace in env.config.service.grpc_namespaces),
        ]
        return [{"from": peers, "ports": [_tcp(env.config.service.grpc_port)]}] if peers else []

    @staticmethod
    def _policy(
        resource_name: str, namespace: str, name: str, spec: dict[str, Any], opts: pulumi.ResourceOptions
    ) -> k8s.networking.v1.NetworkPolicy:
        return create(
            k8s.networking.v1.NetworkPolicy,
            resource_name,
            metadata={"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "mlstack"}},
            spec=spec,
            opts=opts,
        )
