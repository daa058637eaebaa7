"""The dev compute: one EC2 host running the repository's compose file, behind an Application Load Balancer.

An Auto Scaling group of one replaces a failed host; the load balancer gives it a stable address and health
checks on the service's ready route. Every change to the launch template (image, model, dashboards, AMI) starts an
instance refresh that launches the new host before it terminates the old one: a launch lifecycle hook keeps the
new host out of service until its user data has seen the service ready, and the refresh waits for it to be
healthy in the target group before the old host goes. `pulumi up` returns once the refresh has *started*
(terraform-provider-aws starts it and does not wait): a deploy waits for the new host itself, by polling the
served build commit on `GET /v2` or `aws autoscaling describe-instance-refreshes`.
"""

import base64
import gzip
import json
import string
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.compute.host_label_join import compose_env, setup_script, timer_script
from infra.compute.launch_tags import launch_tag_specifications
from infra.config import Environment
from infra.config.models import MonitoringConfig
from infra.monitoring.slo_rules import MONITORING_DIR, dashboards, rule_files
from infra.network.vpc import Network
from infra.registry.ecr import ContainerRegistry
from infra.release_state import deployed_image_tag
from infra.security.iam import attach_managed_policies, policy_document, trust_policy
from infra.security.kms import EncryptionKeys
from infra.security.security_groups import SecurityGroups
from infra.security.session_manager import session_manager_policy
from infra.storage.label_prefixes import label_join_statements, serving_statements
from infra.storage.model_bucket import ModelBucket
from infra.versions import (
    AL2023_AMI_SSM_PARAMETER,
    DOCKER_COMPOSE_LINUX_X86_64_SHA256,
    DOCKER_COMPOSE_VERSION,
    GRAFANA_IMAGE,
    PROMETHEUS_IMAGE,
)
from infra.workloads.pod_template import drift_env

USER_DATA_TEMPLATE = Path(__file__).with_name("host_user_data.sh")
COMPOSE_FILE = Path(__file__).resolve().parents[2] / "compose.yaml"
# Session Manager comes from the stack's own policy (infra/security/session_manager.py): AmazonSSMManagedInstanceCore
# would also let the host read every SSM parameter in the account.
HOST_MANAGED_POLICIES = ("CloudWatchAgentServerPolicy",)
READY_PATH = "/v2/health/ready"
# Only the host itself reaches IMDS: a container's packets cross the docker bridge, one hop more, so no container
# (Grafana, Prometheus, the model service) can take the instance role's credentials. The host copies the model
# package from S3 for the service, which therefore needs no AWS credentials on this host.
IMDS_HOP_LIMIT = 1
ECR_PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
# The user data completes this hook once the service answers ready; until then the host takes no traffic.
READY_HOOK_NAME = "mlstack-service-ready"
# Longer than the user data's own ten-minute wait for readiness, so the user data decides, not the timeout.
READY_HOOK_TIMEOUT_SECONDS = 900
# After the hook, the ALB needs two 10 s health checks to call the target healthy; the refresh waits this long
# after a new host enters service before it counts that host and terminates the old one.
INSTANCE_WARMUP_SECONDS = 60
# Launch before terminating: never fewer than the one desired host in service, at most two while replacing.
REFRESH_MIN_HEALTHY_PERCENTAGE = 100
REFRESH_MAX_HEALTHY_PERCENTAGE = 200


def cloudwatch_agent_config(log_group: str) -> str:
    """Host memory and disk metrics, and the containers' logs, into CloudWatch."""
    return json.dumps(
        {
            "metrics": {
                "namespace": "mlstack/host",
                "metrics_collected": {
                    "mem": {"measurement": ["mem_used_percent"]},
                    "disk": {"measurement": ["used_percent"], "resources": ["/"]},
                },
            },
            "logs": {
                "logs_collected": {
                    "files": {
                        "collect_list": [
                            {
                                "file_path": "/var/lib/docker/containers/*/*.log",
                                "log_group_name": log_group,
                                "log_stream_name": "{instance_id}",
                            }
                        ]
                    }
                }
            },
        },
        indent=2,
    )


def host_monitoring_files(monitoring: MonitoringConfig) -> dict[str, str]:
    """monitoring/ as the host's compose file expects it, with this stack's SLO rules and runbook links."""
    files = {f"monitoring/rules/{name}": text for name, text in rule_files(monitoring).items()}
    files |= {f"monitoring/dashboards/{name}": text for name, text in dashboards().items()}
    files["monitoring/prometheus.yml"] = (MONITORING_DIR / "prometheus.yml").read_text()
    for path in sorted((MONITORING_DIR / "grafana").rglob("*.yml")):
        files[f"monitoring/{path.relative_to(MONITORING_DIR)}"] = path.read_text()
    return files


def _write_files(files: dict[str, str]) -> str:
    """Shell that writes each file under /opt/mlstack, verbatim (quoted heredocs expand nothing)."""
    blocks = []
    for path, text in files.items():
        target = f"/opt/mlstack/{path}"
        blocks.append(
            f"mkdir -p {target.rsplit('/', 1)[0]}\ncat > {target} <<'MLSTACK_FILE'\n{text.rstrip()}\nMLSTACK_FILE"
        )
    return "\n".join(blocks)


class _UserDataTemplate(string.Template):
    """`@@{name}` placeholders, so the script's own `$` stay bash's."""

    delimiter = "@@"


def render_user_data(
    *,
    image: str,
    model_uri: str,
    region: str,
    log_group: str,
    monitoring: MonitoringConfig,
    host_port: int,
    grpc_host_port: int,
    model_name: str = "loan-approval",
) -> str:
    registry_host = image.split("/", 1)[0]
    log = monitoring.prediction_log
    bucket = model_uri.removeprefix("s3://").split("/", 1)[0]
    return _UserDataTemplate(USER_DATA_TEMPLATE.read_text()).substitute(
        compose_version=DOCKER_COMPOSE_VERSION,
        compose_sha256=DOCKER_COMPOSE_LINUX_X86_64_SHA256,
        lifecycle_hook_name=READY_HOOK_NAME,
        host_port=host_port,
        grpc_host_port=grpc_host_port,
        registry_host=registry_host,
        cloudwatch_agent_config=cloudwatch_agent_config(log_group),
        compose_file=COMPOSE_FILE.read_text().rstrip(),
        monitoring_files=_write_files(host_monitoring_files(monitoring)),
        image=image,
        prometheus_image=PROMETHEUS_IMAGE.value,
        grafana_image=GRAFANA_IMAGE.value,
        model_uri=model_uri,
        region=region,
        label_setup=setup_script(log),
        label_env=compose_env(log, model_name),
        drift_env="\n".join(f"{item['name']}={item['value']}" for item in drift_env(monitoring.drift)),
        label_join=timer_script(log, bucket=bucket, image=image, region=region, model_name=model_name),
    )


def encode_user_data(script: str) -> str:
    """gzip, then base64: cloud-init unpacks it, and the 16 KiB user-data limit applies to the compressed bytes."""
    return base64.b64encode(gzip.compress(script.encode(), mtime=0)).decode()


class Ec2Host(pulumi.ComponentResource):
    """Launch template, instance profile, Auto Scaling group of one, and the load balancer in front."""

    service_url: pulumi.Output[str]
    auto_scaling_group_name: pulumi.Output[str]
    grafana_url: pulumi.Output[str]
    grpc_endpoint: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        env: Environment,
        *,
        network: Network,
        security_groups: SecurityGroups,
        registry: ContainerRegistry,
        bucket: ModelBucket,
        keys: EncryptionKeys,
        model_package: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:compute:Ec2Host", name, None, opts)
        self._name = name
        self._env = env
        self._child = pulumi.ResourceOptions(parent=self)
        # Without NAT the host needs a public address (behind the workload security group) to reach ECR and S3.
        self._public = env.config.network.nat_strategy == "none"
        subnets = network.public_subnet_ids if self._public else network.private_subnet_ids

        # A prefix known up front: the host role may complete the launch hook on this stack's groups only, and the
        # role exists before the group's first host boots. A prefix, not a name: the hook is create-only in the
        # provider (ForceNew), and a replacement group is created before the old one is deleted.
        group_name_prefix = f"{env.prefix}-host-"
        log_group = self._create_log_group()
        profile = self._create_instance_profile(registry, bucket, keys, group_name_prefix)
        template = self._create_launch_template(profile, security_groups, registry, bucket, log_group)
        target_group = self._create_load_balancer(network, security_groups)
        group = aws.autoscaling.Group(
            f"{name}-asg",
            name_prefix=group_name_prefix,
            min_size=1,
            # Room for the replacement while the old host still serves; nothing scales the group past one.
            max_size=2,
            desired_capacity=1,
            vpc_zone_identifiers=subnets,
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            target_group_arns=[target_group.arn],
            # Healthy means healthy in the target group (the ready route), not only a running instance.
            health_check_type="ELB",
            # `pulumi up` does not wait for the host: on the first deploy the image is pushed after the registry
            # exists, so the host waits for it (heartbeats to its launch hook), and the pipeline waits for the host.
            wait_for_capacity_timeout="0",
            health_check_grace_period=INSTANCE_WARMUP_SECONDS,
            default_instance_warmup=INSTANCE_WARMUP_SECONDS,
            initial_lifecycle_hooks=[
                aws.autoscaling.GroupInitialLifecycleHookArgs(
                    name=READY_HOOK_NAME,
                    lifecycle_transition="autoscaling:EC2_INSTANCE_LAUNCHING",
                    heartbeat_timeout=READY_HOOK_TIMEOUT_SECONDS,
                    default_result="ABANDON",
                )
            ],
            # A host replaced after failing its health checks is also replaced launch-first.
            instance_maintenance_policy=aws.autoscaling.GroupInstanceMaintenancePolicyArgs(
                min_healthy_percentage=REFRESH_MIN_HEALTHY_PERCENTAGE,
                max_healthy_percentage=REFRESH_MAX_HEALTHY_PERCENTAGE,
            ),
            # A new launch template version (new AMI, image, model or dashboards) replaces the host, new one first.
            instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
                    min_healthy_percentage=REFRESH_MIN_HEALTHY_PERCENTAGE,
                    max_healthy_percentage=REFRESH_MAX_HEALTHY_PERCENTAGE,
                ),
            ),
            tags=[aws.autoscaling.GroupTagArgs(key="Name", value=f"{env.prefix}-host", propagate_at_launch=True)],
            # The host copies the model from the bucket as it boots: the package must be published first (a
            # component's depends_on does not reach its children, so the group names it itself).
            opts=pulumi.ResourceOptions(parent=self, depends_on=model_package),
        )
        self.auto_scaling_group_name = group.name
        # Grafana listens on the host's loopback only; SSM port forwarding reaches it without opening a port.
        self.grafana_url = pulumi.Output.concat(
            "aws ssm start-session --document-name AWS-StartPortForwardingSession ",
            "--parameters portNumber=3000,localPortNumber=3000 --target <instance in ",
            group.name,
            ">, then http://127.0.0.1:3000",
        )
        # gRPC likewise: the host publishes it (compose.yaml), but no security group rule admits it and the ALB
        # listens on HTTP, where an ALB cannot carry gRPC (it needs an HTTPS listener, so a certificate).
        self.grpc_endpoint = pulumi.Output.concat(
            "aws ssm start-session --document-name AWS-StartPortForwardingSession ",
            f"--parameters portNumber={env.config.service.grpc_port},localPortNumber={env.config.service.grpc_port} ",
            "--target <instance in ",
            group.name,
            f">, then 127.0.0.1:{env.config.service.grpc_port}",
        )
        self.register_outputs({"serviceUrl": self.service_url, "autoScalingGroupName": self.auto_scaling_group_name})

    def _create_log_group(self) -> aws.cloudwatch.LogGroup:
        """Where the CloudWatch agent ships the containers' logs."""
        return aws.cloudwatch.LogGroup(
            f"{self._name}-logs",
            name=f"/{self._env.prefix}/host",
            retention_in_days=30,
            opts=self._child,
        )

    def _create_instance_profile(
        self, registry: ContainerRegistry, bucket: ModelBucket, keys: EncryptionKeys, group_name_prefix: str
    ) -> aws.iam.InstanceProfile:
        """Pull this repository's images, read this bucket's model prefix, complete the launch hook of this group,
        SSM and the CloudWatch agent."""
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        log = self._env.config.monitoring.prediction_log
        model_name = self._env.config.service.model_name
        role = aws.iam.Role(
            f"{self._name}-role",
            assume_role_policy=trust_policy("ec2.amazonaws.com"),
            opts=self._child,
        )
        attach_managed_policies(self._name, role, HOST_MANAGED_POLICIES, self._child)
        session_manager_policy(self._name, role, self._env.region, self._child)
        aws.iam.RolePolicy(
            f"{self._name}-pull-and-read-models",
            role=role.id,
            policy=policy_document(
                [
                    # GetAuthorizationToken has no resource-level permissions; the pulls below are scoped.
                    {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
                    {"Effect": "Allow", "Action": ECR_PULL_ACTIONS, "Resource": registry.repository_arn},
                    *bucket.read_models_statements(keys.models.arn),
                    # The host copies the service's prediction log and labels to the bucket and runs the label
                    # join (host_label_join.py): the serving and the join's grants, on their prefixes only.
                    *(
                        [
                            *serving_statements(bucket.bucket_arn, keys.models.arn, log, model_name),
                            *label_join_statements(bucket.bucket_arn, keys.models.arn, log),
                        ]
                        if log.enabled
                        else []
                    ),
                    # The user data finds its group (no resource-level permissions), then completes its launch.
                    {"Effect": "Allow", "Action": ["autoscaling:DescribeAutoScalingInstances"], "Resource": "*"},
                    {
                        "Effect": "Allow",
                        "Action": ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"],
                        "Resource": account.account_id.apply(
                            lambda account_id: (
                                f"arn:aws:autoscaling:{self._env.region}:{account_id}:"
                                f"autoScalingGroup:*:autoScalingGroupName/{group_name_prefix}*"
                            )
                        ),
                    },
                ]
            ),
            opts=self._child,
        )
        return aws.iam.InstanceProfile(f"{self._name}-profile", role=role.name, opts=self._child)

    def _create_launch_template(
        self,
        profile: aws.iam.InstanceProfile,
        security_groups: SecurityGroups,
        registry: ContainerRegistry,
        bucket: ModelBucket,
        log_group: aws.cloudwatch.LogGroup,
    ) -> aws.ec2.LaunchTemplate:
        """AL2023 from its SSM parameter, IMDSv2 for the host only, encrypted gp3 root, no key pair."""
        ami = aws.ssm.get_parameter_output(name=AL2023_AMI_SSM_PARAMETER, opts=pulumi.InvokeOutputOptions(parent=self))
        service = self._env.config.service
        image = pulumi.Output.concat(registry.repository_url, ":", deployed_image_tag())
        user_data = pulumi.Output.all(
            image, bucket.model_uri(service.model_name, service.model_version), log_group.name
        ).apply(
            lambda values: encode_user_data(
                render_user_data(
                    image=values[0],
                    model_uri=values[1],
                    region=self._env.region,
                    log_group=values[2],
                    monitoring=self._env.config.monitoring,
                    host_port=service.port,
                    grpc_host_port=service.grpc_port,
                    model_name=service.model_name,
                )
            )
        )
        return aws.ec2.LaunchTemplate(
            f"{self._name}-launch-template",
            image_id=ami.value,
            instance_type=self._env.config.compute.ec2.instance_type,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=IMDS_HOP_LIMIT
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name="/dev/xvda",
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=self._env.config.compute.ec2.root_volume_gb,
                        volume_type="gp3",
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            network_interfaces=[
                aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                    associate_public_ip_address=str(self._public).lower(),
                    security_groups=[security_groups.workload_group_id],
                )
            ],
            user_data=user_data,
            update_default_version=True,
            tag_specifications=launch_tag_specifications(self._env, f"{self._env.prefix}-host"),
            opts=self._child,
        )

    def _create_load_balancer(self, network: Network, security_groups: SecurityGroups) -> aws.lb.TargetGroup:
        """An internet-facing ALB on port 80, admitting only the allowed CIDRs (its security group)."""
        protect = self._env.config.protect
        balancer = aws.lb.LoadBalancer(
            f"{self._name}-alb",
            load_balancer_type="application",
            internal=False,
            security_groups=[security_groups.load_balancer_group_id],
            subnets=network.public_subnet_ids,
            drop_invalid_header_fields=True,
            enable_deletion_protection=protect,
            opts=self._child,
        )
        target_group = aws.lb.TargetGroup(
            f"{self._name}-tg",
            port=self._env.config.service.port,
            protocol="HTTP",
            target_type="instance",
            vpc_id=network.vpc_id,
            deregistration_delay=30,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                path=READY_PATH, matcher="200", interval=10, healthy_threshold=2, unhealthy_threshold=3
            ),
            opts=self._child,
        )
        aws.lb.Listener(
            f"{self._name}-http",
            load_balancer_arn=balancer.arn,
            port=80,
            protocol="HTTP",
            default_actions=[aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)],
            opts=self._child,
        )
        self.service_url = pulumi.Output.concat("http://", balancer.dns_name)
        return target_group
