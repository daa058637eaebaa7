"""Compute per stack file: the dev EC2 host, the EKS clusters, their node pools, add-ons and IAM."""

import base64
import fnmatch
import gzip
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.compute.ec2_host import (
    COMPOSE_FILE,
    HOST_MANAGED_POLICIES,
    READY_HOOK_TIMEOUT_SECONDS,
    render_user_data,
)
from infra.compute.node_pools import NODE_MANAGED_POLICIES
from infra.config.models import MonitoringConfig
from infra.preview.engine import RecordedResource, StackRun
from infra.preview.fake_cloud import FAKE_ACCOUNT_ID
from infra.preview.tree import render_tree
from infra.versions import (
    AL2023_AMI_SSM_PARAMETER,
    DOCKER_COMPOSE_LINUX_X86_64_SHA256,
    DOCKER_COMPOSE_VERSION,
    EKS_ADDON_VERSIONS,
    GPU_AMI_TYPE,
    GRAFANA_IMAGE,
    PROMETHEUS_IMAGE,
    RESOLVE_DEFAULT_ADDON_VERSION,
)
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
    assert (group.inputs["minSize"], group.inputs["desiredCapacity"]) == (1, 1)
    assert group.inputs["healthCheckType"] == "ELB"


def test_dev_launch_template_requires_imdsv2_encrypts_and_has_no_key_pair(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["dev"]
    group = _one(run, ASG)
    template = _by_id(run, LAUNCH_TEMPLATE, group.inputs["launchTemplate"]["id"])
    assert template.inputs["metadataOptions"] == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,
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
    # Prometheus and Grafana run the digest-pinned images of versions.py, on the host and on a laptop alike.
    for variable, pin in (("MLSTACK_PROMETHEUS_IMAGE", PROMETHEUS_IMAGE), ("MLSTACK_GRAFANA_IMAGE", GRAFANA_IMAGE)):
        assert f"\n{variable}={pin.value}\n" in script
        assert f"${{{variable}:-{pin.value}}}" in COMPOSE_FILE.read_text()


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
    # Stated here, not read from the code: any other policy (AdministratorAccess, a *FullAccess) fails the test.
    assert _attached_policies(run, role) == {
        "CloudWatchAgentServerPolicy",  # the CloudWatch agent ships the containers' logs
    }
    assert set(HOST_MANAGED_POLICIES) == _attached_policies(run, role)


def _user_data(run: StackRun) -> str:
    return gzip.decompress(base64.b64decode(_one(run, LAUNCH_TEMPLATE).inputs["userData"])).decode()


def _heredoc(script: str, target: str, marker: str) -> str:
    match = re.search(rf"cat > {re.escape(target)} <<'{marker}'\n(.*?)\n{marker}\n", script, re.DOTALL)
    assert match, f"no {target} in the user data"
    return match.group(1)


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${NAME:-default}` interpolation, the only form compose.yaml uses."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1)) or m.group(2), text)


def _host_compose(script: str) -> dict[str, Any]:
    """compose.yaml as the host's `docker compose --env-file .env` reads it."""
    env = dict(line.split("=", 1) for line in _heredoc(script, "/opt/mlstack/.env", "ENV").splitlines())
    loaded: dict[str, Any] = yaml.safe_load(_interpolate(_heredoc(script, "/opt/mlstack/compose.yaml", "YAML"), env))
    return loaded


def test_dev_host_is_replaced_new_host_first_and_only_once_it_serves(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["dev"]
    group = _one(run, ASG)
    desired = group.inputs["desiredCapacity"]
    launch_before_terminating = {"minHealthyPercentage": 100, "maxHealthyPercentage": 200}
    refresh = group.inputs["instanceRefresh"]
    assert refresh["strategy"] == "Rolling"
    assert {key: refresh["preferences"][key] for key in launch_before_terminating} == launch_before_terminating
    assert group.inputs["instanceMaintenancePolicy"] == launch_before_terminating
    # The replacement fits beside the old host.
    assert group.inputs["maxSize"] >= desired * launch_before_terminating["maxHealthyPercentage"] / 100
    # "Healthy" is the target group's verdict on the ready route, and a new host enters service only once the
    # user data has seen it ready.
    assert group.inputs["healthCheckType"] == "ELB"
    (hook,) = group.inputs["initialLifecycleHooks"]
    assert hook["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
    assert hook["defaultResult"] == "ABANDON"
    script = _user_data(run)
    assert f"readonly HOOK_NAME='{hook['name']}'" in script
    assert script.rstrip().endswith("complete_launch CONTINUE")
    # The host may wait for its image (first deploy: pushed after `pulumi up`) far longer than one heartbeat, so it
    # sends heartbeats more often than the hook's timeout, and `pulumi up` does not wait for it.
    ready_wait = re.search(
        r"if \(\(retry_ready >= (\d+)\)\).*?"
        r"if \(\(retry_ready % (\d+) == 0\)\); then\s+keep_launch_waiting.*?sleep (\d+)",
        script,
        re.DOTALL,
    )
    assert ready_wait
    tries, heartbeat_every, pause = (int(value) for value in ready_wait.groups())
    assert heartbeat_every * pause < hook["heartbeatTimeout"] == READY_HOOK_TIMEOUT_SECONDS < tries * pause
    assert "record-lifecycle-action-heartbeat" in script
    assert group.inputs["waitForCapacityTimeout"] == "0"


def test_the_preview_shows_the_refresh_keeping_a_healthy_host(committed_runs: dict[str, StackRun]) -> None:
    (line,) = [line for line in render_tree(committed_runs["dev"]).splitlines() if "aws:autoscaling.Group" in line]
    assert "healthCheckType=ELB" in line
    refresh = re.search(r"instanceRefresh=(\S+)", line)
    assert refresh
    assert '"maxHealthyPercentage":200,"minHealthyPercentage":100' in refresh.group(1)
    assert 'instanceMaintenancePolicy={"maxHealthyPercentage":200,"minHealthyPercentage":100}' in line


def test_host_role_may_complete_the_launch_hook_of_its_own_group_only(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["dev"]
    group = _one(run, ASG)
    statements = [s for s in _statements(run) if "autoscaling:CompleteLifecycleAction" in s["Action"]]
    assert [s["Action"] for s in statements] == [
        ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"]
    ]
    prefix = group.inputs["namePrefix"]
    assert prefix == "mlstack-dev-host-"
    assert re.fullmatch(
        rf"arn:aws:autoscaling:us-east-1:\d{{12}}:autoScalingGroup:\*:autoScalingGroupName/{prefix}\*",
        statements[0]["Resource"],
    )


def test_dev_user_data_is_valid_bash(committed_runs: dict[str, StackRun]) -> None:
    script = _user_data(committed_runs["dev"])
    result = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_dev_host_rotates_every_containers_logs(committed_runs: dict[str, StackRun]) -> None:
    compose = _host_compose(_user_data(committed_runs["dev"]))
    assert {"model-service", "prometheus", "grafana"} <= set(compose["services"])
    for name, service in compose["services"].items():
        logging = service.get("logging", {})
        assert logging.get("driver") == "json-file", name
        size = re.fullmatch(r"(\d+)m", logging["options"]["max-size"])
        assert size, name
        assert int(size.group(1)) * int(logging["options"]["max-file"]) <= 100, name


def test_no_container_on_the_dev_host_can_reach_the_instance_role(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["dev"]
    # One hop: IMDS answers the host; a container's packets cross the docker bridge and their replies expire.
    assert _one(run, LAUNCH_TEMPLATE).inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert _one(run, LAUNCH_TEMPLATE).inputs["metadataOptions"]["httpTokens"] == "required"
    script = _user_data(run)
    compose = _host_compose(script)
    assert {"model-service", "prometheus", "grafana"} <= set(compose["services"])
    for name, service in compose["services"].items():
        assert service.get("network_mode") != "host", f"{name} would share the host's hop to IMDS"
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(service.get("environment", {})), name
    # The model service needs none: the host copies the package from S3 and mounts it read-only.
    service_config = environment_of(run, stack_config("dev")).config.service
    package = f"/models/{service_config.model_name}/{service_config.model_version}/"
    assert re.search(rf"aws s3 cp --recursive .* 's3://[a-z0-9.-]+{package}' /opt/mlstack/model/", script)
    model_service = compose["services"]["model-service"]
    assert "/opt/mlstack/model:/opt/model:ro" in model_service["volumes"]
    assert model_service["environment"]["MLSTACK_MODEL_URI"] == "/opt/model"


def test_prometheus_keeps_its_data_in_a_named_volume(committed_runs: dict[str, StackRun]) -> None:
    compose = _host_compose(_user_data(committed_runs["dev"]))
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in compose["services"]["prometheus"]["volumes"]}
    assert mounts["/prometheus"] in compose["volumes"]
    assert "--storage.tsdb.path=/prometheus" in compose["services"]["prometheus"]["command"]


def test_the_dev_hosts_port_follows_service_port(run_stack: RunStack) -> None:
    config = stack_config("dev")
    config["mlstack:service"] = {**config.get("mlstack:service", {}), "port": 9100, "grpcPort": 9101}
    run = run_stack("dev", config)
    assert _one(run, "aws:lb/targetGroup:TargetGroup").inputs["port"] == 9100
    workload_ingress = [
        rule
        for rule in run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if rule.inputs.get("referencedSecurityGroupId") and rule.inputs.get("fromPort") == 9100
    ]
    assert workload_ingress, "the workload group must admit the load balancer on the service port"
    script = _user_data(run)
    assert "readonly SERVICE_PORT='9100'" in script
    # gRPC is published on the stack's grpcPort too (reached through SSM port forwarding: no rule admits it).
    assert _host_compose(script)["services"]["model-service"]["ports"] == ["9100:8080", "9101:8081"]
    assert not [rule for rule in workload_ingress if rule.inputs.get("fromPort") == 9101]


def _boot_functions(tmp_path: Path, script: str) -> tuple[str, dict[str, str]]:
    """The user data's definitions (before its first action), and a PATH whose curl and sleep are stand-ins."""
    definitions = script[: script.index("trap 'complete_launch ABANDON || true' ERR")]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # curl -o TARGET URL writes $FAKE_DOWNLOAD to TARGET, failing the first $FAKE_FAILURES calls.
    (bin_dir / "curl").write_text(
        "#!/bin/bash\n"
        'calls=$(( $(cat "$FAKE_STATE/calls" 2>/dev/null || echo 0) + 1 )); echo $calls > "$FAKE_STATE/calls"\n'
        '[ "$calls" -gt "${FAKE_FAILURES:-0}" ] || exit 22\n'
        'while [ $# -gt 0 ]; do [ "$1" = -o ] && target=$2; shift; done\n'
        'printf %s "$FAKE_DOWNLOAD" > "$target"\n'
    )
    (bin_dir / "sleep").write_text('#!/bin/bash\necho "$1" >> "$FAKE_STATE/sleeps"\n')
    for tool in ("curl", "sleep"):
        (bin_dir / tool).chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_STATE": str(state)}
    return definitions, env


def test_the_compose_plugin_download_is_retried_and_checked(tmp_path: Path) -> None:
    script = render_user_data(
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/mlstack:abc",
        model_uri="s3://bucket/models/m/1.0.0/",
        region="us-east-1",
        log_group="/mlstack-dev/host",
        monitoring=MonitoringConfig(),
        host_port=8080,
        grpc_host_port=8081,
    )
    definitions, env = _boot_functions(tmp_path, script)
    download = re.search(r"retry 5 download_verified \\\n\s+\"(\S+)\" \\\n\s+'(\w+)' (\S+)\n", script)
    assert download, "the compose plugin must come through download_verified"
    url, expected, _ = download.groups()
    good = "the real plugin"
    target = tmp_path / "docker-compose"

    def install(content: str, sha256: str, failures: int) -> subprocess.CompletedProcess[str]:
        (tmp_path / "state" / "calls").unlink(missing_ok=True)
        (tmp_path / "state" / "sleeps").unlink(missing_ok=True)
        command = f"{definitions}\nretry 5 download_verified '{url}' '{sha256}' '{target}'"
        return subprocess.run(
            ["bash", "-c", command],
            env={**env, "FAKE_DOWNLOAD": content, "FAKE_FAILURES": str(failures)},
            capture_output=True,
            text=True,
            check=False,
        )

    good_sha = hashlib.sha256(good.encode()).hexdigest()
    # Two failed downloads, then the file: installed, after pauses that double.
    assert install(good, good_sha, failures=2).returncode == 0
    assert target.read_text() == good
    assert (tmp_path / "state" / "sleeps").read_text().split() == ["2", "4"]
    # A file whose sha256 is wrong is never installed, however often it is fetched.
    target.unlink()
    tampered = install("a tampered plugin", good_sha, failures=0)
    assert tampered.returncode == 1
    assert "sha256" in tampered.stderr
    assert not target.exists()
    assert not list(tmp_path.glob("docker-compose.download"))
    assert (tmp_path / "state" / "calls").read_text().strip() == "5"
    # What the host checks is the pinned checksum of the pinned release.
    assert expected == DOCKER_COMPOSE_LINUX_X86_64_SHA256
    assert f"/{DOCKER_COMPOSE_VERSION}/docker-compose-linux-x86_64" in url


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


def test_gpu_pool_uses_the_nvidia_ami_the_taint_and_the_configured_sizes(run_stack: RunStack) -> None:
    # Values no tier defaults to, so the test fails if the pool ignores the stack file.
    config = stack_config("prod")
    config["mlstack:compute"]["eks"]["gpuPool"] = {
        "instanceTypes": ["g5.2xlarge"],
        "capacityType": "SPOT",
        "minSize": 1,
        "maxSize": 7,
        "desiredSize": 2,
        "diskSizeGb": 200,
    }
    run = run_stack("prod", config)
    (group,) = [g for g in run.of_type(NODE_GROUP) if g.inputs["amiType"] == GPU_AMI_TYPE]
    assert group.inputs["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert group.inputs["scalingConfig"] == {"minSize": 1, "maxSize": 7, "desiredSize": 2}
    assert group.inputs["instanceTypes"] == ["g5.2xlarge"]
    assert group.inputs["capacityType"] == "SPOT"
    assert group.inputs["labels"]["mlstack.io/accelerator"] == "gpu"
    # With a launch template the disk is the template's (EKS refuses diskSize beside a launch template).
    assert "diskSize" not in group.inputs
    (template,) = [t for t in run.of_type(LAUNCH_TEMPLATE) if t.name == "pools-gpu-launch-template"]
    assert template.inputs["blockDeviceMappings"][0]["ebs"]["volumeSize"] == 200


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
    # The chart's default affinity (node-feature-discovery labels EKS nodes lack) is replaced, not cleared with a
    # null that an engine may drop: one required term, matching exactly the GPU pool's labels.
    terms = release.inputs["values"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {
            "matchExpressions": [
                {"key": key, "operator": "In", "values": [value]}
                for key, value in sorted(group.inputs["labels"].items())
            ]
        }
    ]
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


def test_managed_addons_get_the_pinned_build_or_eks_default_for_the_clusters_minor(eks_run: StackRun) -> None:
    env = environment_of(eks_run, stack_config(eks_run.stack))
    minor = env.config.compute.eks.version  # type: ignore[union-attr]
    installed = {
        addon.inputs["addonName"]: addon.inputs["addonVersion"] for addon in eks_run.of_type("aws:eks/addon:Addon")
    }
    pinned = EKS_ADDON_VERSIONS[minor]
    # The add-ons a cluster needs, stated here: networking, DNS, service routing, Pod Identity credentials for the
    # service and the add-ons' roles, and EBS volumes for Prometheus.
    expected = {"vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent", "aws-ebs-csi-driver"}
    assert set(installed) == expected
    assert set(pinned) == expected
    asked = {
        args["addonName"]: args for token, args in eks_run.invokes if token == "aws:eks/getAddonVersion:getAddonVersion"
    }
    for name, version in pinned.items():
        if version == RESOLVE_DEFAULT_ADDON_VERSION:
            # EKS's default build for this minor, never "most recent": a default is what EKS itself installs.
            assert asked[name]["kubernetesVersion"] == minor
            assert not asked[name].get("mostRecent")
            # The answer is AWS's to give: the preview shows it as known only after apply.
            assert installed[name] in eks_run.invented
        else:
            assert installed[name] == version
            assert name not in asked


def test_node_role_carries_only_the_managed_policies_it_needs(eks_run: StackRun) -> None:
    (role,) = [role for role in eks_run.of_type("aws:iam/role:Role") if role.name == "pools-node-role"]
    # Stated here, not read from the code: any other policy (AdministratorAccess, a *FullAccess) fails the test.
    assert _attached_policies(eks_run, role) == {
        "AmazonEKSWorkerNodePolicy",  # the kubelet joins the cluster and describes its instance
        "AmazonEC2ContainerRegistryPullOnly",  # nodes pull the service image from ECR, never push
        "AmazonEKS_CNI_Policy",  # the VPC CNI assigns pod IPs (it runs with the node's role)
    }
    assert set(NODE_MANAGED_POLICIES) == _attached_policies(eks_run, role)


# AWS managed policies that read every SSM parameter (AmazonSSMManagedInstanceCore v2's first statement grants
# ssm:GetParameter and ssm:GetParameters on "*").
PARAMETER_READERS = {"AmazonSSMManagedInstanceCore", "AmazonSSMReadOnlyAccess", "AmazonSSMFullAccess"}


def _inline_statements(run: StackRun, role: RecordedResource) -> list[dict[str, Any]]:
    policies = [p for p in run.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role.id]
    return [statement for policy in policies for statement in json.loads(policy.inputs["policy"])["Statement"]]


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize(("stack", "role_name"), [("dev", "host-role"), ("staging", "pools-node-role"),
                                                  ("prod", "pools-node-role")])  # fmt: skip
def test_node_and_host_roles_reach_session_manager_but_no_ssm_parameter(
    committed_runs: dict[str, StackRun], stack: str, role_name: str
) -> None:
    run = committed_runs[stack]
    (role,) = [role for role in run.of_type("aws:iam/role:Role") if role.name == role_name]
    assert not _attached_policies(run, role) & PARAMETER_READERS
    statements = _inline_statements(run, role)
    for statement in statements:
        for action in _listed(statement["Action"]):
            reads_parameters = fnmatch.fnmatchcase("ssm:GetParameters", action) or fnmatch.fnmatchcase(
                "ssm:GetParameter", action
            )
            assert not reads_parameters, f"{role_name} may call {action} on {statement['Resource']}"
    granted = {action for statement in statements for action in _listed(statement["Action"])}
    # Session Manager's five actions (AWSCloud9SSMInstanceProfile v1 is exactly these) are there.
    assert {
        "ssm:UpdateInstanceInformation",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    } <= granted
    (registration,) = [s for s in statements if s.get("Sid") == "SessionManagerRegistration"]
    region = stack_config(stack)["aws:region"]
    for arn in registration["Resource"]:
        assert arn.split(":")[3:5] == [region, FAKE_ACCOUNT_ID], arn


# Managed policies that grant administration or a whole service: no role of any stack may carry one.
BROAD_POLICIES = re.compile(r"^(AdministratorAccess|PowerUserAccess|IAMFullAccess|.*FullAccess)$")


def test_no_role_of_any_stack_is_an_administrator(stack_run: StackRun) -> None:
    roles = stack_run.of_type("aws:iam/role:Role")
    assert roles
    for role in roles:
        broad = {name for name in _attached_policies(stack_run, role) if BROAD_POLICIES.match(name)}
        assert not broad, f"{role.name} carries {broad}"
    policies = stack_run.of_type("aws:iam/rolePolicy:RolePolicy")
    assert policies
    for policy in policies:
        for statement in json.loads(policy.inputs["policy"])["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert "*" not in actions, f"{policy.name} allows every action"
            assert not [a for a in actions if a.endswith(":*") and a.split(":")[0] in {"iam", "sts", "kms"}], (
                f"{policy.name}: {actions}"
            )


def test_the_broad_policy_check_would_catch_an_administrator() -> None:
    assert BROAD_POLICIES.match("AdministratorAccess")
    assert BROAD_POLICIES.match("AmazonS3FullAccess")
    assert not BROAD_POLICIES.match("AmazonEC2ContainerRegistryPullOnly")


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
    (bucket,) = [b.outputs["arn"] for b in stack_run.of_type("aws:s3/bucket:Bucket") if b.name == "models-bucket"]
    checked = 0
    for statement in _statements(stack_run):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if not set(actions) & set(SCOPED_ACTIONS):
            continue
        checked += 1
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert "*" not in resources, f"{actions} on every resource"
        assert all(r == repository or r.startswith(bucket + "/") for r in resources), resources
    assert checked, "no statement grants ECR pulls or bucket reads: nothing was checked"


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


def test_dev_host_boots_only_after_the_bundled_model_is_published(committed_runs: dict[str, StackRun]) -> None:
    """The host copies the model from the bucket as it boots; a host that came first would find nothing."""
    run = committed_runs["dev"]
    group = _one(run, "aws:autoscaling/group:Group")
    metadata = [
        r for r in run.of_type("aws:s3/bucketObjectv2:BucketObjectv2") if r.inputs["key"].endswith("/metadata.json")
    ]
    assert len(metadata) == 1, "the dev stack serves the bundled model, so it publishes it"
    assert metadata[0].urn in group.dependencies
