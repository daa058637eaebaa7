"""Security groups: the load balancer faces the allowed CIDRs, the workload faces only the load balancer.

There is no port 22 anywhere: administration goes through SSM Session Manager.
"""

import ipaddress

import pulumi
import pulumi_aws as aws

from infra.config import Environment
from infra.network.vpc import ANYWHERE_IPV4, Network
from infra.policy.rules import LOAD_BALANCER_ROLE

LOAD_BALANCER_PORTS = (80, 443)
ALL_PROTOCOLS = "-1"
# Grafana's container port behind its Service (grafana chart values.yaml `service.targetPort`, grafana-community/
# helm-charts charts/grafana at 3386a115, chart 12.11.1, which kube-prometheus-stack depends on). Its ALB targets
# pod IPs, so the ALB reaches this port, not the Service's 80.
GRAFANA_TARGET_PORT = 3000


class SecurityGroups(pulumi.ComponentResource):
    """The load-balancer group and the workload group, wired to each other."""

    load_balancer_group_id: pulumi.Output[str]
    workload_group_id: pulumi.Output[str]

    def __init__(
        self, name: str, env: Environment, network: Network, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlstack:security:SecurityGroups", name, None, opts)
        self._name = name
        self._env = env
        self._child = pulumi.ResourceOptions(parent=self)

        self._load_balancer = self._create_group(
            "lb", LOAD_BALANCER_ROLE, network, "Load balancers: HTTP(S) from the allowed CIDRs only"
        )
        self._workload = self._create_group(
            "workload",
            "workload",
            network,
            "Model service hosts and nodes: the service port from the load balancers only",
        )
        self.load_balancer_group_id = self._load_balancer.id
        self.workload_group_id = self._workload.id
        self._admit_allowed_cidrs_to_load_balancer()
        self._admit_extra_ingress_to_load_balancer()
        self._admit_load_balancer_to_workload()
        if env.config.compute.mode == "eks":
            self._admit_node_to_node()
        self._allow_workload_egress()

        self.register_outputs(
            {"loadBalancerGroupId": self.load_balancer_group_id, "workloadGroupId": self.workload_group_id}
        )

    def _create_group(self, short_name: str, role: str, network: Network, description: str) -> aws.ec2.SecurityGroup:
        """A group with no inline rules: every rule is its own resource, so changes are reviewable one by one.

        The `role` tag tells policy (and people) which group may face the internet.
        """
        return aws.ec2.SecurityGroup(
            f"{self._name}-{short_name}",
            vpc_id=network.vpc_id,
            description=description,
            tags={"Name": f"{self._env.prefix}-{short_name}", "role": role},
            opts=self._child,
        )

    def _admit_allowed_cidrs_to_load_balancer(self) -> None:
        """80 and 443 from each allowed CIDR, IPv4 or IPv6."""
        for index, cidr in enumerate(self._env.config.network.allowed_cidrs):
            ipv4 = isinstance(cidr, ipaddress.IPv4Network)
            for port in LOAD_BALANCER_PORTS:
                aws.vpc.SecurityGroupIngressRule(
                    f"{self._name}-lb-in-{port}-{index + 1}",
                    security_group_id=self._load_balancer.id,
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    description=f"HTTP(S) from allowed range {cidr}",
                    cidr_ipv4=str(cidr) if ipv4 else None,
                    cidr_ipv6=None if ipv4 else str(cidr),
                    opts=self._child,
                )

    def _admit_extra_ingress_to_load_balancer(self) -> None:
        """`network.extraIngress`: more ports on the load balancers, each rule its own resource for policy to judge."""
        for entry in self._env.config.network.extra_ingress:
            for index, cidr in enumerate(entry.cidrs):
                ipv4 = isinstance(cidr, ipaddress.IPv4Network)
                aws.vpc.SecurityGroupIngressRule(
                    f"{self._name}-lb-extra-{entry.port}-{index + 1}",
                    security_group_id=self._load_balancer.id,
                    ip_protocol="tcp",
                    from_port=entry.port,
                    to_port=entry.port,
                    description=entry.description,
                    cidr_ipv4=str(cidr) if ipv4 else None,
                    cidr_ipv6=None if ipv4 else str(cidr),
                    opts=self._child,
                )

    def _admit_load_balancer_to_workload(self) -> None:
        """The ports the load balancers forward to, from them and nowhere else; they reach nothing else.

        The model service's port always; its gRPC port where the ALB carries gRPC (a certificate); Grafana's too when
        it has its own ALB (`monitoring.grafanaExposure`).
        """
        targets = {
            "service": (
                self._env.config.service.port,
                "Model service port from the load balancers",
                "Load balancers forward to the model service port only",
            )
        }
        if self._env.config.compute.mode == "eks" and self._env.config.ingress.tls:
            # The ALB's gRPC target groups (infra/workloads/model_service.py), only where it listens for gRPC.
            targets["grpc"] = (
                self._env.config.service.grpc_port,
                "Model service gRPC port from the load balancers",
                "Load balancers forward gRPC to the model service",
            )
        if self._env.config.compute.mode == "eks" and self._env.config.monitoring.grafana_exposure == "ingress":
            targets["grafana"] = (
                GRAFANA_TARGET_PORT,
                "Grafana port from the load balancers",
                "Load balancers forward to the Grafana port",
            )
        for short_name, (port, inbound, outbound) in targets.items():
            aws.vpc.SecurityGroupIngressRule(
                f"{self._name}-workload-in-{short_name}",
                security_group_id=self._workload.id,
                referenced_security_group_id=self._load_balancer.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                description=inbound,
                opts=self._child,
            )
            aws.vpc.SecurityGroupEgressRule(
                f"{self._name}-lb-out-{short_name}",
                security_group_id=self._load_balancer.id,
                referenced_security_group_id=self._workload.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                description=outbound,
                opts=self._child,
            )

    def _admit_node_to_node(self) -> None:
        """Cluster nodes talk to each other: pod networking, DNS, kubelet and webhooks."""
        aws.vpc.SecurityGroupIngressRule(
            f"{self._name}-workload-in-self",
            security_group_id=self._workload.id,
            referenced_security_group_id=self._workload.id,
            ip_protocol=ALL_PROTOCOLS,
            description="Node-to-node traffic inside the cluster",
            opts=self._child,
        )

    def _allow_workload_egress(self) -> None:
        """Workloads reach out (image pulls, S3, AWS APIs) through NAT or the S3 endpoint."""
        aws.vpc.SecurityGroupEgressRule(
            f"{self._name}-workload-out-all",
            security_group_id=self._workload.id,
            cidr_ipv4=ANYWHERE_IPV4,
            ip_protocol=ALL_PROTOCOLS,
            description="Outbound to AWS APIs, registries and the model bucket",
            opts=self._child,
        )
