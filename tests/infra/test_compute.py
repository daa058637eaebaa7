"""Compute per stack file: the dev EC2 host, the EKS clusters, their node pools, add-ons and IAM."""

import base64
import gzip
import json
from typing import Any

import pytest

from infra.compute.ec2_host import COMPOSE_FILE, HOST_MANAGED_POLICIES
from infra.compute.node_pools import NODE_MANAGED_POLICIES
from infra.preview.engine import RecordedResource, StackRun
from infra.versions import AL2023_AMI_SSM_PARAMETER, EKS_ADDON_VERSIONS, GPU_AMI_TYPE
from tests.conftest import REPO_ROOT, RunStack, stack_config
from tests.graph import environment_of

CLUSTER = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"


def _one(run: StackRun, type_token: str) -> RecordedResource:
    (resource,) = run.of_type(type_token)
    return resource


def _by_id(run: StackRun, type_token: str, resource_id: str) -> RecordedResource:
    (resource,) = [r for r in run.of_type(type_token) if r.id == resource_id]
    return resource


def _attached_policies(run: StackRun, role: RecordedResource) -> set[str]:
    role_name = role.outputs.get("name", role.inputs.get("name"))
    return {
        attachment.inputs["policyArn"].rsplit("/", 1)[-1]
        for attachment in run.of_type(ATTACHMENT)
        if attachment.inputs["role"] in (role_name, role.id)
    }


# --- dev: one EC2 host ------------------------------------------------------------------------------


def test_dev_runs_one_host_in_an_auto_scaling_group_and_no_cluster(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["dev"]
    assert run.of_type(CLUSTER) == []
    group = _one(run, ASG)
    assert (group.inputs["minSize"], group.inputs["maxSize"], group.inputs["desiredCapacity"]) == (1, 1, 1)
    assert group.inputs["healthCheckType"] == "ELB"


def test_dev_launch_template_requires_imdsv2_encrypts_and_has_no_key_pair(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["dev"]
    group = _one(run, ASG)
    template = _by_id(run, LAUNCH_TEMPLATE, group.inputs["launchTemplate"]["id"])
    assert template.inputs["metadataOptions"] == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 2,
    }
    assert "keyName" not in template.inputs
    (disk,) = template.inputs["blockDeviceMappings"]
    assert disk["ebs"]["encrypted"] == "true"
    assert disk["ebs"]["volumeType"] == "gp3"


def test_dev_ami_comes_from_the_al2023_ssm_parameter(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["dev"]
    lookups = [args for token, args in run.invokes if token == "aws:ssm/getParameter:getParameter"]
    assert [args["name"] for args in lookups] == [AL2023_AMI_SSM_PARAMETER]
    template = _one(run, LAUNCH_TEMPLATE)
    assert template.inputs["imageId"].startswith("ami-")
    assert template.inputs["imageId"] in run.invented, "the AMI must be the one the parameter resolves to"


def test_dev_user_data_runs_the_repositorys_compose_file_with_this_stacks_image(
    committed_runs: dict[str, StackRun],
) -> None:
    run = committed_runs["dev"]
    env = environment_of(run, stack_config("dev"))
    script = gzip.decompress(base64.b64decode(_one(run, LAUNCH_TEMPLATE).inputs["userData"])).decode()
    assert COMPOSE_FILE.read_text().rstrip() in script
    repository = _one(run, "aws:ecr/repository:Repository")
    assert f"MLSTACK_IMAGE={repository.outputs['repositoryUrl']}:{run.outputs['imageTag']}" in script
    assert f"/models/{env.config.service.model_name}/{env.config.service.model_version}/" in script
    assert "systemctl enable --now mlstack.service" in script
    assert "Restart=always" in script


def test_dev_user_data_carries_the_repositorys_monitoring_files(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["dev"]
    encoded = _one(run, LAUNCH_TEMPLATE).inputs["userData"]
    script = gzip.decompress(base64.b64decode(encoded)).decode()
    monitoring = REPO_ROOT / "monitoring"
    for path in [
        *monitoring.glob("rules/*.rules.yml"),
        *monitoring.glob("dashboards/*.json"),
        monitoring / "prometheus.yml",
    ]:
        target = f"/opt/mlstack/monitoring/{path.relative_to(monitoring)}"
        assert f"cat > {target} <<'MLSTACK_FILE'\n{path.read_text().rstrip()}\nMLSTACK_FILE" in script, target
    # EC2 caps user data at 16 KiB; gzip keeps the script well under it.
    assert len(base64.b64decode(encoded)) < 16 * 1024


def test_dev_host_is_reachable_only_through_the_load_balancer_on_port_80(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["dev"]
    balancer = _one(run, "aws:lb/loadBalancer:LoadBalancer")
    lb_group = next(g for g in run.of_type("aws:ec2/securityGroup:SecurityGroup") if g.name.endswith("-lb"))
    assert balancer.inputs["securityGroups"] == [lb_group.id]
    listener = _one(run, "aws:lb/listener:Listener")
    assert listener.inputs["port"] == 80
    target_group = _one(run, "aws:lb/targetGroup:TargetGroup")
    assert target_group.inputs["healthCheck"]["path"] == "/v2/health/ready"
    assert _one(run, ASG).inputs["targetGroupArns"] == [target_group.outputs["arn"]]


def test_host_role_carries_only_the_managed_policies_it_needs(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["dev"]
    (role,) = [role for role in run.of_type("aws:iam/role:Role") if role.name == "host-role"]
    assert _attached_policies(run, role) == set(HOST_MANAGED_POLICIES)


# --- staging and prod: EKS ----------------------------------------------------------------------------


@pytest.fixture(params=["staging", "prod"])
def eks_run(request: pytest.FixtureRequest, committed_runs: dict[str, StackRun]) -> StackRun:
    return committed_runs[request.param]


def test_one_cluster_with_secrets_encryption_and_api_authentication(eks_run: StackRun) -> None:
    env = environment_of(eks_run, stack_config(eks_run.stack))
    cluster = _one(eks_run, CLUSTER)
    (key,) = [key for key in eks_run.of_type("aws:kms/key:Key") if key.name.endswith("-cluster")]
    assert cluster.inputs["encryptionConfig"] == {"provider": {"keyArn": key.outputs["arn"]}, "resources": ["secrets"]}
    assert cluster.inputs["accessConfig"]["authenticationMode"] == "API"
    assert cluster.inputs["version"] == env.config.compute.eks.version  # type: ignore[union-attr]
    assert cluster.inputs["enabledClusterLogTypes"] == env.config.compute.eks.log_types  # type: ignore[union-attr]
    assert cluster.inputs["vpcConfig"]["publicAccessCidrs"] == [
        str(cidr)
        for cidr in env.config.compute.eks.public_access_cidrs  # type: ignore[union-attr]
    ]
    assert cluster.inputs["deletionProtection"] is env.config.protect


def test_gpu_pool_uses_the_nvidia_ami_the_taint_and_the_configured_sizes(eks_run: StackRun) -> None:
    env = environment_of(eks_run, stack_config(eks_run.stack))
    gpu = env.config.compute.eks.gpu_pool  # type: ignore[union-attr]
    (group,) = [g for g in eks_run.of_type(NODE_GROUP) if g.inputs["amiType"] == GPU_AMI_TYPE]
    assert group.inputs["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert group.inputs["scalingConfig"] == {
        "minSize": gpu.min_size,
        "maxSize": gpu.max_size,
        "desiredSize": gpu.desired_size,
    }
    assert group.inputs["instanceTypes"] == gpu.instance_types
    assert group.inputs["labels"]["mlstack.io/accelerator"] == "gpu"


def test_device_plugin_tolerates_exactly_the_gpu_pools_taints(eks_run: StackRun) -> None:
    (group,) = [g for g in eks_run.of_type(NODE_GROUP) if g.inputs["amiType"] == GPU_AMI_TYPE]
    (release,) = [r for r in eks_run.of_type(HELM_RELEASE) if r.inputs["name"] == "nvidia-device-plugin"]
    effects = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute"}
    expected = [
        {"key": t["key"], "operator": "Equal", "value": t["value"], "effect": effects[t["effect"]]}
        for t in group.inputs["taints"]
    ]
    assert release.inputs["values"]["tolerations"] == expected
    assert release.inputs["values"]["nodeSelector"] == group.inputs["labels"]
    assert release.inputs["version"]


def test_gpu_pool_asg_is_tagged_so_the_autoscaler_can_scale_it_from_zero(eks_run: StackRun) -> None:
    tags = {tag.inputs["tag"]["key"]: tag.inputs["tag"]["value"] for tag in eks_run.of_type("aws:autoscaling/tag:Tag")}
    template = "k8s.io/cluster-autoscaler/node-template"
    assert tags[f"{template}/taint/nvidia.com/gpu"] == "true:NoSchedule"
    assert tags[f"{template}/resources/nvidia.com/gpu"] == "1"
    assert tags[f"{template}/label/mlstack.io/accelerator"] == "gpu"


def test_cluster_autoscaler_runs_with_its_own_pod_identity_role(eks_run: StackRun) -> None:
    (release,) = [r for r in eks_run.of_type(HELM_RELEASE) if r.inputs["name"] == "cluster-autoscaler"]
    assert release.inputs["values"]["autoDiscovery"]["clusterName"] == f"mlstack-{eks_run.stack}"
    (association,) = [
        a
        for a in eks_run.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
        if a.inputs["serviceAccount"] == "cluster-autoscaler"
    ]
    assert association.inputs["namespace"] == "kube-system"
    (policy,) = [p for p in eks_run.of_type(ROLE_POLICY) if p.name == "cluster-autoscaler-policy"]
    scale = [
        s for s in json.loads(policy.inputs["policy"])["Statement"] if "autoscaling:SetDesiredCapacity" in s["Action"]
    ]
    assert scale[0]["Condition"]["StringEquals"] == {
        f"aws:ResourceTag/k8s.io/cluster-autoscaler/mlstack-{eks_run.stack}": "owned"
    }


def test_managed_addons_are_pinned(eks_run: StackRun) -> None:
    env = environment_of(eks_run, stack_config(eks_run.stack))
    installed = {
        addon.inputs["addonName"]: addon.inputs["addonVersion"] for addon in eks_run.of_type("aws:eks/addon:Addon")
    }
    assert installed == EKS_ADDON_VERSIONS[env.config.compute.eks.version]  # type: ignore[union-attr]


def test_node_role_carries_only_the_managed_policies_it_needs(eks_run: StackRun) -> None:
    (role,) = [role for role in eks_run.of_type("aws:iam/role:Role") if role.name == "pools-node-role"]
    assert _attached_policies(eks_run, role) == set(NODE_MANAGED_POLICIES)


def test_node_launch_templates_require_imdsv2_and_encrypt(eks_run: StackRun) -> None:
    templates = [t for t in eks_run.of_type(LAUNCH_TEMPLATE) if t.name.startswith("pools-")]
    assert len(templates) == len(eks_run.of_type(NODE_GROUP)) == 2
    for template in templates:
        assert template.inputs["metadataOptions"]["httpTokens"] == "required"
        assert template.inputs["blockDeviceMappings"][0]["ebs"]["encrypted"] == "true"


def test_kubeconfig_is_exported_as_a_secret(eks_run: StackRun) -> None:
    from infra.preview.engine import SECRET  # noqa: PLC0415

    assert eks_run.outputs["kubeconfig"] == SECRET


# --- IAM across stacks -------------------------------------------------------------------------------

SCOPED_ACTIONS = (
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
    "ecr:PutImage",
    "ecr:InitiateLayerUpload",
    "s3:GetObject",
    "s3:PutObject",
)


def _statements(run: StackRun) -> list[dict[str, Any]]:
    return [s for policy in run.of_type(ROLE_POLICY) for s in json.loads(policy.inputs["policy"])["Statement"]]


def test_ecr_and_s3_access_names_this_stacks_repository_and_bucket(stack_run: StackRun) -> None:
    repository = _one(stack_run, "aws:ecr/repository:Repository").outputs["arn"]
    bucket = _one(stack_run, "aws:s3/bucket:Bucket").outputs["arn"]
    for statement in _statements(stack_run):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if not set(actions) & set(SCOPED_ACTIONS):
            continue
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert "*" not in resources, f"{actions} on every resource"
        assert all(r == repository or r.startswith(bucket + "/") for r in resources), resources


def test_switching_a_dev_stack_to_eks_needs_only_config(run_stack: RunStack) -> None:
    config = stack_config("dev")
    config["mlstack:compute"] = {"mode": "eks"}
    config["mlstack:network"]["natStrategy"] = "single"
    run = run_stack("dev", config)
    assert len(run.of_type(CLUSTER)) == 1
    assert run.of_type(ASG) == []
    # dev's default GPU pool is off: no GPU node group and no device plugin.
    assert [g.inputs["amiType"] for g in run.of_type(NODE_GROUP)] == ["AL2023_x86_64_STANDARD"]
    assert not [r for r in run.of_type(HELM_RELEASE) if r.inputs["name"] == "nvidia-device-plugin"]
