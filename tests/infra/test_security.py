"""Security groups: only the load balancer faces the world, only on 80/443; nothing opens port 22."""

import pytest

from infra.config import Environment, parse_stack_config
from infra.preview.engine import RecordedResource, StackRun
from infra.security.security_groups import GRAFANA_TARGET_PORT
from tests.conftest import RunStack, stack_config
from tests.graph import ANYWHERE, EGRESS_RULE, INGRESS_RULE, SECURITY_GROUP, environment_of, group_name, port_range


def _group(run: StackRun, role: str) -> RecordedResource:
    (group,) = [group for group in run.of_type(SECURITY_GROUP) if group.name.endswith(f"-{role}")]
    return group


def _ingress_into(run: StackRun, group: RecordedResource) -> list[RecordedResource]:
    return [rule for rule in run.of_type(INGRESS_RULE) if rule.inputs["securityGroupId"] == group.id]


def test_only_the_load_balancer_admits_the_internet_and_only_on_80_and_443(stack_run: StackRun) -> None:
    load_balancer = _group(stack_run, "lb")
    world = [r for r in stack_run.of_type(INGRESS_RULE) if (r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6"))]
    assert world, "the load balancer's rules at least: what this test checks"
    assert stack_run.of_type(SECURITY_GROUP)
    for rule in stack_run.of_type(INGRESS_RULE):
        source = rule.inputs.get("cidrIpv4") or rule.inputs.get("cidrIpv6")
        if source in ANYWHERE:
            assert rule.inputs["securityGroupId"] == load_balancer.id, f"{rule.name} admits {source} outside the LB"
            assert list(port_range(rule)) in ([80], [443]), f"{rule.name} admits {source} on {port_range(rule)}"
    for group in stack_run.of_type(SECURITY_GROUP):
        assert not group.inputs.get("ingress"), f"{group.name} must not carry inline rules"


def test_load_balancer_admits_exactly_the_allowed_cidrs_on_80_and_443(stack_run: StackRun) -> None:
    env = environment_of(stack_run, stack_config(stack_run.stack))
    rules = _ingress_into(stack_run, _group(stack_run, "lb"))
    admitted = sorted((rule.inputs.get("cidrIpv4") or rule.inputs["cidrIpv6"], *port_range(rule)) for rule in rules)
    expected = sorted((str(cidr), port) for cidr in env.config.network.allowed_cidrs for port in (80, 443))
    assert admitted == expected


def test_no_rule_opens_port_22_to_anything_outside_its_own_group(stack_run: StackRun) -> None:
    assert stack_run.of_type(INGRESS_RULE)
    for rule in stack_run.of_type(INGRESS_RULE):
        if rule.inputs.get("referencedSecurityGroupId") == rule.inputs["securityGroupId"]:
            continue  # members of one group talking to each other (cluster nodes)
        assert 22 not in port_range(rule), f"{rule.name} opens port 22"


def _load_balancer_ports(stack: str) -> list[int]:
    """The service port, and its gRPC port where the ALB carries gRPC (an EKS stack with a certificate: prod)."""
    service = environment_of_stack(stack).config.service
    return [service.port, service.grpc_port] if stack == "prod" else [service.port]


def environment_of_stack(stack: str) -> Environment:
    return parse_stack_config(stack, stack_config(stack))


def test_workload_admits_only_the_service_port_from_the_load_balancer(stack_run: StackRun) -> None:
    workload, load_balancer = _group(stack_run, "workload"), _group(stack_run, "lb")
    from_outside = [
        rule
        for rule in _ingress_into(stack_run, workload)
        if rule.inputs.get("referencedSecurityGroupId") != workload.id
    ]
    assert sorted(port for rule in from_outside for port in port_range(rule)) == _load_balancer_ports(stack_run.stack)
    for rule in from_outside:
        assert rule.inputs["referencedSecurityGroupId"] == load_balancer.id
        assert len(port_range(rule)) == 1
        assert "cidrIpv4" not in rule.inputs
        assert "cidrIpv6" not in rule.inputs


def test_load_balancer_reaches_only_the_workload_service_port(stack_run: StackRun) -> None:
    load_balancer, workload = _group(stack_run, "lb"), _group(stack_run, "workload")
    egress = [rule for rule in stack_run.of_type(EGRESS_RULE) if rule.inputs["securityGroupId"] == load_balancer.id]
    for rule in egress:
        assert group_name(stack_run, rule.inputs["referencedSecurityGroupId"]) == workload.name
    assert sorted(port for rule in egress for port in port_range(rule)) == _load_balancer_ports(stack_run.stack)
    assert _load_balancer_ports("staging") == [8080]


@pytest.mark.parametrize(("stack", "node_to_node"), [("dev", False), ("staging", True), ("prod", True)])
def test_node_to_node_traffic_only_where_there_is_a_cluster(
    committed_runs: dict[str, StackRun], stack: str, node_to_node: bool
) -> None:
    run = committed_runs[stack]
    workload = _group(run, "workload")
    self_rules = [r for r in _ingress_into(run, workload) if r.inputs.get("referencedSecurityGroupId") == workload.id]
    assert bool(self_rules) is node_to_node


def _ports_from_load_balancer(run: StackRun) -> tuple[set[int], set[int]]:
    """Ports the workload group admits from the load-balancer group, and ports the latter may send to."""
    workload, load_balancer = _group(run, "workload"), _group(run, "lb")
    admitted = {
        port
        for rule in _ingress_into(run, workload)
        if rule.inputs.get("referencedSecurityGroupId") == load_balancer.id
        for port in port_range(rule)
    }
    forwarded = {
        port
        for rule in run.of_type(EGRESS_RULE)
        if rule.inputs["securityGroupId"] == load_balancer.id
        and rule.inputs.get("referencedSecurityGroupId") == workload.id
        for port in port_range(rule)
    }
    return admitted, forwarded


def test_grafana_behind_its_alb_is_reachable_on_its_pod_port(run_stack: RunStack) -> None:
    config = stack_config("prod")
    config["mlstack:monitoring"] = {"grafanaExposure": "ingress"}
    run = run_stack("prod", config)
    (ingress,) = [
        i for i in run.of_type("kubernetes:networking.k8s.io/v1:Ingress") if i.inputs["metadata"]["name"] == "grafana"
    ]
    annotations = ingress.inputs["metadata"]["annotations"]
    # Pod-IP targets behind the stack's load-balancer group: the ALB connects to Grafana's container port.
    assert annotations["alb.ingress.kubernetes.io/target-type"] == "ip"
    assert annotations["alb.ingress.kubernetes.io/security-groups"] == _group(run, "lb").id
    # 8081: prod's ALB carries gRPC too (it has a certificate).
    both = {8080, 8081, GRAFANA_TARGET_PORT}
    assert _ports_from_load_balancer(run) == (both, both)
    assert GRAFANA_TARGET_PORT == 3000


def test_without_a_grafana_alb_the_load_balancers_reach_the_service_port_only(
    committed_runs: dict[str, StackRun],
) -> None:
    assert _ports_from_load_balancer(committed_runs["prod"]) == ({8080, 8081}, {8080, 8081})
    assert _ports_from_load_balancer(committed_runs["staging"]) == ({8080}, {8080})
