"""NetworkPolicies: default deny in the service namespace, and every allow traced to who really needs it."""

from typing import Any

import pytest

from infra.monitoring.retrain_relay import WEBHOOK_URL
from infra.preview.engine import StackRun, run_program
from tests.conftest import RunStack, stack_config
from tests.graph import SUBNET, environment_of, public_subnets
from tests.infra.test_namespaces_and_tokens import with_retrain_relay

POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
POD_MONITOR = "PodMonitor"
EKS_STACKS = ("staging", "prod")


def _policies(run: StackRun, namespace: str) -> list[dict[str, Any]]:
    return [
        {**p.inputs["spec"], "name": p.inputs["metadata"]["name"]}
        for p in run.of_type(POLICY)
        if p.inputs["metadata"]["namespace"] == namespace
    ]


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["podSelector"].get("matchLabels", {})
    return all(labels.get(key) == value for key, value in wanted.items())


def _ingress_rules_for(run: StackRun, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    return [
        rule
        for policy in _policies(run, namespace)
        if _selects(policy, labels) and "Ingress" in policy["policyTypes"]
        for rule in policy.get("ingress", [])
    ]


def _admitted_ports(rules: list[dict[str, Any]], peer: dict[str, Any]) -> set[int]:
    return {port["port"] for rule in rules if peer in rule.get("from", []) for port in rule["ports"]}


def _service_pods(run: StackRun) -> tuple[dict[str, str], int]:
    """Labels and container port of the model service's pod template (its Argo Rollout)."""
    (rollout,) = [
        r
        for r in run.of_type("kubernetes:argoproj.io/v1alpha1:Rollout")
        if r.inputs["metadata"]["namespace"] == "mlstack"
    ]
    template = rollout.inputs["spec"]["template"]
    (container,) = template["spec"]["containers"]
    return template["metadata"]["labels"], container["ports"][0]["containerPort"]


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_the_service_namespace_denies_ingress_and_egress_by_default(
    committed_runs: dict[str, StackRun], stack: str
) -> None:
    deny_all = [
        policy
        for policy in _policies(committed_runs[stack], "mlstack")
        if policy["podSelector"] == {} and not policy.get("ingress") and not policy.get("egress")
    ]
    assert [sorted(policy["policyTypes"]) for policy in deny_all] == [["Egress", "Ingress"]]


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_the_alb_reaches_the_service_port_from_the_public_subnets_only(
    committed_runs: dict[str, StackRun], stack: str
) -> None:
    run = committed_runs[stack]
    labels, port = _service_pods(run)
    rules = _ingress_rules_for(run, "mlstack", labels)
    public = {subnet.inputs["cidrBlock"] for subnet in public_subnets(run)}
    admitted: dict[str, set[int]] = {}
    for rule in rules:
        for peer in rule["from"]:
            if "ipBlock" in peer:
                admitted.setdefault(peer["ipBlock"]["cidr"], set()).update(p["port"] for p in rule["ports"])
    # gRPC too where the ALB carries it (prod has a certificate; staging has none, so gRPC stays in the cluster).
    grpc = {8081} if stack == "prod" else set()
    assert admitted == {cidr: {port} | grpc for cidr in public}


def test_an_internal_alb_is_admitted_from_the_private_subnets(run_stack: RunStack) -> None:
    config = stack_config("staging")
    config["mlstack:ingress"] = {"scheme": "internal"}
    run = run_stack("staging", config)
    labels, _ = _service_pods(run)
    private = {s.inputs["cidrBlock"] for s in run.of_type(SUBNET)} - {
        s.inputs["cidrBlock"] for s in public_subnets(run)
    }
    cidrs = {
        peer["ipBlock"]["cidr"]
        for rule in _ingress_rules_for(run, "mlstack", labels)
        for peer in rule["from"]
        if "ipBlock" in peer
    }
    assert cidrs == private


def test_prometheus_may_scrape_the_port_its_pod_monitor_names(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["prod"]
    (monitor,) = [r for r in run.resources if r.inputs.get("kind") == POD_MONITOR and r.name.endswith("-pod-monitor")]
    labels, port = _service_pods(run)
    assert monitor.inputs["spec"]["podMetricsEndpoints"][0]["port"] == "internal"
    internal_port = environment_of(run, stack_config("prod")).config.service.internal_port
    peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": monitor.inputs["metadata"]["namespace"]}}
    }
    # Prometheus reaches the internal port (/metrics) and not the public one.
    assert _admitted_ports(_ingress_rules_for(run, "mlstack", labels), peer) == {internal_port}
    assert internal_port != port


def test_no_rule_admits_the_whole_cluster_or_the_internet(committed_runs: dict[str, StackRun]) -> None:
    policies = _policies(committed_runs["prod"], "mlstack")
    assert [peer for policy in policies for rule in policy.get("ingress", []) for peer in rule["from"]]
    for policy in policies:
        for rule in policy.get("ingress", []):
            for peer in rule["from"]:
                assert peer.get("ipBlock", {}).get("cidr") not in ("0.0.0.0/0", "10.30.0.0/16"), policy["name"]
                assert peer.get("namespaceSelector") != {}, policy["name"]


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_egress_allows_dns_aws_credentials_and_https_only(committed_runs: dict[str, StackRun], stack: str) -> None:
    egress = [rule for policy in _policies(committed_runs[stack], "mlstack") for rule in policy.get("egress", [])]
    allowed = {
        (
            str(peer.get("ipBlock", {}).get("cidr") or peer.get("podSelector", {}).get("matchLabels")),
            port["protocol"],
            port["port"],
        )
        for rule in egress
        for peer in rule["to"]
        for port in rule["ports"]
    }
    assert allowed == {
        ("{'k8s-app': 'kube-dns'}", "UDP", 53),
        ("{'k8s-app': 'kube-dns'}", "TCP", 53),
        ("169.254.170.23/32", "TCP", 80),
        ("0.0.0.0/0", "TCP", 443),
    }


def test_policies_depend_on_the_namespace_they_live_in(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["prod"]
    (namespace,) = [r for r in run.of_type("kubernetes:core/v1:Namespace") if r.inputs["metadata"]["name"] == "mlstack"]
    policies = run.of_type(POLICY)
    assert policies
    assert all(namespace.urn in policy.dependencies for policy in policies)


def test_the_retrain_relay_admits_only_its_own_namespace_on_its_port() -> None:
    run = run_program("prod", with_retrain_relay("prod"), ["mlstack:retrainGithubToken"])
    (relay,) = [
        r for r in run.of_type("kubernetes:apps/v1:Deployment") if r.inputs["metadata"]["name"] == "retrain-relay"
    ]
    labels = relay.inputs["spec"]["template"]["metadata"]["labels"]
    port = relay.inputs["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    rules = _ingress_rules_for(run, "monitoring", labels)
    assert rules == [{"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": port}]}]
    (policy,) = [p for p in run.of_type(POLICY) if p.inputs["metadata"]["namespace"] == "monitoring"]
    assert sorted(policy.inputs["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    # Alertmanager runs in that namespace and posts to that port.
    (release,) = [
        r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "kube-prometheus-stack"
    ]
    assert release.inputs["namespace"] == "monitoring"
    assert f".monitoring.svc.cluster.local:{int(port)}/alerts" in WEBHOOK_URL
