"""Least privilege on the recorded graph: each pod identity is bound to one service account of one cluster, and
each workload's role can do its job and no one else's."""

import hashlib
import json
from typing import Any

import pytest

from infra.policy.rules import is_write_action
from infra.preview.engine import SECRET, RecordedResource, StackRun, is_secret_value, unwrap_secret
from infra.preview.fake_cloud import FAKE_ACCOUNT_ID as ACCOUNT_ID
from infra.workloads.aws_load_balancer_controller_policy import Scope, actions_of, narrowed_policy
from infra.workloads.load_balancer_controller import POLICY_FILE
from tests.conftest import RunStack, stack_config

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
EKS_STACKS = ("staging", "prod")


def _role_by_arn(run: StackRun, arn: str) -> RecordedResource:
    (role,) = [role for role in run.of_type(ROLE) if role.outputs.get("arn") == arn]
    return role


def _statements(run: StackRun, role: RecordedResource) -> list[dict[str, Any]]:
    policies = [p for p in run.of_type(ROLE_POLICY) if p.inputs["role"] == role.id]
    return [statement for policy in policies for statement in json.loads(policy.inputs["policy"])["Statement"]]


def _resources(statement: dict[str, Any]) -> list[str]:
    resource = statement.get("Resource", [])
    return [resource] if isinstance(resource, str) else list(resource)


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_every_pod_identity_role_trusts_only_its_service_account_on_this_cluster(
    committed_runs: dict[str, StackRun], stack: str
) -> None:
    run = committed_runs[stack]
    (cluster,) = run.of_type(EKS_CLUSTER)
    cluster_arn = cluster.outputs["arn"]
    pod_roles = [role for role in run.of_type(ROLE) if "pods.eks.amazonaws.com" in role.inputs["assumeRolePolicy"]]
    associated = {association.inputs["roleArn"]: association.inputs for association in run.of_type(ASSOCIATION)}
    assert len(pod_roles) >= 4  # the model service, batch, the LB controller, the autoscaler (and the EBS driver)
    for role in pod_roles:
        (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        conditions = statement["Condition"]["StringEquals"]
        assert conditions["aws:SourceAccount"] == cluster_arn.split(":")[4], role.name
        assert conditions["aws:RequestTag/eks-cluster-arn"] == cluster_arn, role.name
        association = associated.get(role.outputs["arn"])
        if association is not None:
            assert conditions["aws:RequestTag/kubernetes-namespace"] == association["namespace"], role.name
            assert conditions["aws:RequestTag/kubernetes-service-account"] == association["serviceAccount"], role.name
        else:  # an add-on's association (EBS CSI driver), declared on the add-on itself
            assert conditions["aws:RequestTag/kubernetes-namespace"] == "kube-system", role.name
            assert conditions["aws:RequestTag/kubernetes-service-account"], role.name


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_batch_runs_under_its_own_role_and_serving_loses_batch_access(
    committed_runs: dict[str, StackRun], stack: str
) -> None:
    run = committed_runs[stack]
    roles = {a.inputs["serviceAccount"]: _role_by_arn(run, a.inputs["roleArn"]) for a in run.of_type(ASSOCIATION)}
    serving = _statements(run, roles["model-service"])
    batch = _statements(run, roles["model-service-batch"])
    serving_resources = [resource for statement in serving for resource in _resources(statement)]
    assert not [resource for resource in serving_resources if "batch/" in resource], serving_resources
    # Beyond reading models: writing the prediction log and the labels (tests/infra/test_label_join.py).
    assert all(
        action in ("s3:GetObject", "s3:ListBucket", "kms:Decrypt")
        or (action in ("s3:PutObject", "kms:GenerateDataKey") and "label_join" not in str(statement))
        for statement in serving
        for action in statement["Action"]
    ), serving
    assert all(
        resource.endswith(("/predictions/*", "/feedback/*"))
        for statement in serving
        if "s3:PutObject" in statement["Action"]
        for resource in _resources(statement)
    ), serving
    writes = [s for s in batch if "s3:PutObject" in s["Action"]]
    assert [_resources(s)[0].rsplit("/", 2)[-2:] for s in writes] == [["output", "*"]]
    reads = [r for s in batch if "s3:GetObject" in s["Action"] for r in _resources(s)]
    assert any(r.endswith("/batch/input/*") for r in reads)
    assert any(r.endswith("/models/*") for r in reads)


def _one_named(run: StackRun, type_token: str, name: str) -> RecordedResource:
    (resource,) = [resource for resource in run.of_type(type_token) if resource.name == name]
    return resource


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_key_administrators_cant_use_the_keys_and_users_only_through_their_service(
    committed_runs: dict[str, StackRun], stack: str
) -> None:
    run = committed_runs[stack]
    for purpose, service in (("registry", "ecr"), ("models", "s3")):
        key = _one_named(run, "aws:kms/key:Key", f"keys-{purpose}")
        statements = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}
        admins = statements["KeyAdministrators"]
        assert admins["Principal"]["AWS"][0].endswith(":role/mlstack-deploy")
        data = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:*")
        assert not set(data) & set(admins["Action"])
        use = statements["KeyUseThroughItsServiceOnly"]
        via = use["Condition"]["StringEquals"]["kms:ViaService"]
        assert via.startswith(f"{service}."), via
        assert via.endswith(".amazonaws.com"), via
        assert "kms:Decrypt" in use["Action"]
        assert set(statements) == {"KeyAdministrators", "KeyUseThroughItsServiceOnly"}


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_the_lb_controller_touches_only_this_clusters_load_balancers(
    committed_runs: dict[str, StackRun], stack: str
) -> None:
    run = committed_runs[stack]
    upstream = json.loads(POLICY_FILE.read_text())
    policy = json.loads(_one_named(run, ROLE_POLICY, "lb-controller-policy").inputs["policy"])
    # Nothing the controller may call upstream is lost by the narrowing.
    assert actions_of(policy["Statement"]) == actions_of(upstream["Statement"])
    scoped = 0
    for statement in policy["Statement"]:
        null = statement.get("Condition", {}).get("Null", {})
        assert "false" not in [v for k, v in null.items() if k.endswith("/elbv2.k8s.aws/cluster")], statement
        for key, value in statement.get("Condition", {}).get("StringEquals", {}).items():
            if key.endswith("/elbv2.k8s.aws/cluster"):
                assert value == f"mlstack-{stack}"
                scoped += 1
    assert scoped >= 7  # every "tagged for some cluster" test upstream now names this cluster
    # No write stays on "*" without a condition but CreateProtection, which AWS gives no resource type.
    unbounded = {
        action
        for statement in policy["Statement"]
        if statement.get("Resource") == "*" and "Condition" not in statement
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        if is_write_action(action)
    }
    assert unbounded == {"shield:CreateProtection"}
    (vpc,) = run.of_type("aws:ec2/vpc:Vpc")
    statements = {statement.get("Sid"): statement for statement in policy["Statement"]}
    region = stack_config(stack)["aws:region"]
    ingress = statements["SecurityGroupIngressInThisVpc"]
    assert ingress["Condition"]["ArnEquals"]["ec2:Vpc"].endswith(f":vpc/{vpc.id}")
    assert ingress["Resource"] == [f"arn:aws:ec2:{region}:{ACCOUNT_ID}:security-group/*"]
    assert f"arn:aws:ec2:{region}:{ACCOUNT_ID}:vpc/{vpc.id}" in statements["NewSecurityGroupsInThisVpc"]["Resource"]
    for arn in statements["ListenersAndRulesInThisAccountAndRegion"]["Resource"]:
        assert arn.startswith(f"arn:aws:elasticloadbalancing:{region}:{ACCOUNT_ID}:"), arn


def test_narrowing_refuses_an_upstream_policy_that_changed_under_the_pin() -> None:
    upstream = json.loads(POLICY_FILE.read_text())
    scope = Scope(partition="aws", region="us-east-1", account_id=ACCOUNT_ID, vpc_id="vpc-1")
    narrowed_policy(upstream, scope)  # the pinned file narrows cleanly
    for statement in upstream["Statement"]:
        if "ec2:CreateSecurityGroup" in statement["Action"] and statement["Resource"] == "*":
            statement["Resource"] = "arn:aws:ec2:*:*:security-group/*"
    with pytest.raises(ValueError, match=r"no longer grants \['ec2:CreateSecurityGroup'\]"):
        narrowed_policy(upstream, scope)


def test_grafana_reads_secrets_in_its_namespace_only(committed_runs: dict[str, StackRun]) -> None:
    (release,) = [
        r
        for r in committed_runs["prod"].of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs["name"] == "kube-prometheus-stack"
    ]
    assert release.inputs["values"]["grafana"]["rbac"] == {"namespaced": True}


@pytest.mark.parametrize(("stack", "authenticated"), [("staging", False), ("prod", True)])
def test_prod_ingress_is_rate_limited_logged_and_hides_internal_routes(
    committed_runs: dict[str, StackRun], stack: str, authenticated: bool
) -> None:
    run = committed_runs[stack]
    ingress = _one_named(run, "kubernetes:networking.k8s.io/v1:Ingress", "model-service-ingress").inputs
    annotations = ingress["metadata"]["annotations"]
    acls = run.of_type("aws:wafv2/webAcl:WebAcl")
    attributes = annotations["alb.ingress.kubernetes.io/load-balancer-attributes"]
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    assert paths[0]["path"] == "/metrics"
    assert paths[-1]["path"] == "/"
    for path in paths[:-1]:
        action = json.loads(annotations[f"alb.ingress.kubernetes.io/actions.{path['backend']['service']['name']}"])
        assert action["fixedResponseConfig"]["statusCode"] == "404"
    rollout = _one_named(run, "kubernetes:argoproj.io/v1alpha1:Rollout", "model-service-rollout").inputs
    env = {e["name"]: e.get("value") for e in rollout["spec"]["template"]["spec"]["containers"][0]["env"]}
    if authenticated:
        (acl,) = acls
        assert annotations["alb.ingress.kubernetes.io/wafv2-acl-arn"] == acl.outputs["arn"]
        (rule,) = acl.inputs["rules"]
        rate = rule["statement"]["rateBasedStatement"]
        assert (rate["aggregateKeyType"], rate["limit"]) == ("IP", 2000)
        assert rule["action"] == {"block": {}}
        (logs,) = [b for b in run.of_type("aws:s3/bucket:Bucket") if b.name == "alb-logs-bucket"]
        assert f"access_logs.s3.bucket={logs.id}" in attributes
        assert "access_logs.s3.enabled=true" in attributes
        assert env["MLSTACK_API_KEYS_FILE"] == "/etc/mlstack/clients/api-keys"
        (secret,) = [
            s
            for s in run.of_type("kubernetes:core/v1:Secret")
            if s.inputs["metadata"]["name"] == "model-service-client-keys"
        ]
        # Prod's client is named in the stack file; its key is generated by the stack and only its digest reaches
        # the pods. The key itself leaves the stack only as a secret output.
        (line,) = unwrap_secret(secret.inputs["stringData"])["api-keys"].splitlines()
        name, digest = line.split()
        assert name == "loan-approval-frontend"
        (key,) = [
            r for r in run.of_type("random:index/randomPassword:RandomPassword") if r.name.endswith(f"api-key-{name}")
        ]
        assert key.inputs["length"] >= 64
        assert key.inputs["special"] is False
        assert digest == hashlib.sha256(key.outputs["result"].encode()).hexdigest()
        assert is_secret_value(secret.inputs["stringData"])
        assert run.outputs["apiClientKeys"] == SECRET
    else:
        assert not acls
        assert "alb.ingress.kubernetes.io/wafv2-acl-arn" not in annotations
        assert "access_logs.s3.enabled=false" in attributes
        assert "MLSTACK_API_KEYS_FILE" not in env


def test_an_account_id_pins_the_aws_provider(run_stack: RunStack) -> None:
    config = stack_config("staging")
    config["mlstack:accountId"] = "123456789012"
    run = run_stack("staging", config)
    (provider,) = [r for r in run.resources if r.type == "pulumi:providers:aws"]
    assert json.loads(provider.inputs["allowedAccountIds"]) == ["123456789012"] or provider.inputs[
        "allowedAccountIds"
    ] == ["123456789012"]


def test_access_below_admin_is_view_edit_or_namespaced_admin(run_stack: RunStack) -> None:
    config = stack_config("staging")
    config["mlstack:compute"] = {
        **config["mlstack:compute"],
        "eks": {
            "accessEntries": [
                {"principalArn": "arn:aws:iam::123456789012:role/readers", "level": "view"},
                {"principalArn": "arn:aws:iam::123456789012:role/ml-team", "level": "admin", "namespaces": ["mlstack"]},
            ]
        },
    }
    run = run_stack("staging", config)
    associations = {
        a.inputs["principalArn"]: a.inputs
        for a in run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
        if a.name.startswith("eks-access-")
    }
    readers = associations["arn:aws:iam::123456789012:role/readers"]
    assert readers["policyArn"].endswith("/AmazonEKSViewPolicy")
    assert readers["accessScope"] == {"type": "cluster"}
    team = associations["arn:aws:iam::123456789012:role/ml-team"]
    assert team["policyArn"].endswith("/AmazonEKSAdminPolicy")
    assert team["accessScope"] == {"type": "namespace", "namespaces": ["mlstack"]}
    (cluster,) = run.of_type("aws:eks/cluster:Cluster")
    assert cluster.inputs["accessConfig"]["bootstrapClusterCreatorAdminPermissions"] is False
