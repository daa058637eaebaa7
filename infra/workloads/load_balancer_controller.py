"""The AWS Load Balancer Controller (Helm, pinned) with its IAM role through EKS Pod Identity."""

import json
from pathlib import Path

import pulumi

from infra.compute.addons.helm import pinned_release
from infra.compute.eks_cluster import EksCluster
from infra.config import Environment
from infra.network.vpc import Network
from infra.security.pod_identity import pod_identity_role
from infra.versions import AWS_LOAD_BALANCER_CONTROLLER_CHART, AWS_LOAD_BALANCER_CONTROLLER_POLICY

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "aws-load-balancer-controller"
# The controller's own policy document, byte for byte, at the tag the pinned chart deploys (its appVersion); where it
# came from is AWS_LOAD_BALANCER_CONTROLLER_POLICY's provenance, its git blob sha included.
POLICY_FILE = Path(__file__).with_name("aws_load_balancer_controller_policy.json")
POLICY_SOURCE = AWS_LOAD_BALANCER_CONTROLLER_POLICY.provenance


class LoadBalancerController(pulumi.ComponentResource):
    """Turns Ingress objects into ALBs.

    The chart's MutatingWebhookConfiguration (templates/webhook.yaml; values.yaml `enableServiceMutatorWebhook: true`,
    `serviceMutatorWebhookConfig.failurePolicy: Fail`) intercepts every Service create in the cluster, so everything
    that creates a Service or Ingress depends on `release`: Helm (wait on) marks it ready only once the controller's
    pods, which serve that webhook, are ready. Kept rather than turned off: the webhook is what gives LoadBalancer
    Services to this controller instead of the legacy in-tree one.
    """

    release: pulumi.Resource

    def __init__(
        self,
        name: str,
        env: Environment,
        *,
        cluster: EksCluster,
        network: Network,
        depends_on: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:workloads:LoadBalancerController", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        identity = pod_identity_role(
            name,
            cluster_name=cluster.name,
            cluster_arn=cluster.cluster.arn,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            policy=json.dumps(json.loads(POLICY_FILE.read_text())),
            opts=child,
        )
        self.release = pinned_release(
            f"{name}-release",
            release_name="aws-load-balancer-controller",
            chart=AWS_LOAD_BALANCER_CONTROLLER_CHART,
            namespace=NAMESPACE,
            values={
                "clusterName": env.cluster_name,
                "region": env.region,
                "vpcId": network.vpc_id,
                "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
                "replicaCount": 2,
            },
            opts=pulumi.ResourceOptions(
                parent=self, provider=cluster.provider, depends_on=[identity.association, *depends_on]
            ),
        )
        self.register_outputs({})
