"""The AWS Load Balancer Controller (Helm, pinned) with its IAM role through EKS Pod Identity."""

import copy
import json
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.compute.addons.helm import pinned_release
from infra.compute.eks_cluster import EksCluster
from infra.config import Environment
from infra.network.vpc import Network
from infra.security.pod_identity import pod_identity_role
from infra.versions import AWS_LOAD_BALANCER_CONTROLLER_CHART, AWS_LOAD_BALANCER_CONTROLLER_POLICY
from infra.workloads.aws_load_balancer_controller_policy import Scope, narrowed_policy

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "aws-load-balancer-controller"
# The controller's own policy document, byte for byte, at the tag the pinned chart deploys (its appVersion); where it
# came from is AWS_LOAD_BALANCER_CONTROLLER_POLICY's provenance, its git blob sha included.
POLICY_FILE = Path(__file__).with_name("aws_load_balancer_controller_policy.json")
POLICY_SOURCE = AWS_LOAD_BALANCER_CONTROLLER_POLICY.provenance
# The tag the controller puts on every ALB, target group and security group it creates, valued with its
# `clusterName` (the upstream policy's conditions name it).
CLUSTER_TAG = "elbv2.k8s.aws/cluster"
TAG_KEYS = (f"aws:RequestTag/{CLUSTER_TAG}", f"aws:ResourceTag/{CLUSTER_TAG}")


def scoped_policy(document: dict[str, Any], cluster_name: str) -> dict[str, Any]:
    """The upstream policy with its cluster tag conditions narrowed to this cluster.

    Upstream, `"Null": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}` means "tagged for any cluster": one
    cluster's controller could modify or delete another's load balancers in the same account. Each such "tag
    present" test becomes `StringEquals` on this cluster's name; "tag absent" tests (`"true"`) stay as they are.
    """
    scoped = copy.deepcopy(document)
    for statement in scoped["Statement"]:
        conditions = statement.get("Condition")
        if not conditions or "Null" not in conditions:
            continue
        null = conditions["Null"]
        for key in TAG_KEYS:
            if null.get(key) == "false":
                del null[key]
                conditions.setdefault("StringEquals", {})[key] = cluster_name
        if not null:
            del conditions["Null"]
    return scoped


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
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        upstream = json.loads(POLICY_FILE.read_text())
        # Upstream, with its tag conditions naming this cluster and its writes on "*" narrowed to this account,
        # region and VPC (aws_load_balancer_controller_policy.py says which, and from where).
        policy = pulumi.Output.all(account.account_id, network.vpc_id).apply(
            lambda ids: json.dumps(
                narrowed_policy(
                    scoped_policy(upstream, env.cluster_name),
                    Scope(partition="aws", region=env.region, account_id=ids[0], vpc_id=ids[1]),
                )
            )
        )
        identity = pod_identity_role(
            name,
            cluster_name=cluster.name,
            cluster_arn=cluster.cluster.arn,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            policy=policy,
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
