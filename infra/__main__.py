"""The mlstack program: read the stack's config, build the components, export what operators need."""

import pulumi

from infra.aws_provider import create_aws_provider
from infra.compute.addons.cluster_autoscaler import ClusterAutoscaler
from infra.compute.addons.nvidia_device_plugin import NvidiaDevicePlugin
from infra.compute.ec2_host import Ec2Host
from infra.compute.eks_addons import EBS_CSI_ADDON, EksAddons
from infra.compute.eks_cluster import EksCluster
from infra.compute.node_pools import NodePools
from infra.compute.storage_class import DefaultStorageClass
from infra.config import load_stack_config
from infra.monitoring.kube_prometheus_stack import Monitoring
from infra.monitoring.retrain_relay import WEBHOOK_URL as RETRAIN_WEBHOOK_URL
from infra.monitoring.retrain_relay import RetrainRelay
from infra.network.certificate import ServiceCertificate
from infra.network.dns_record import ServiceDnsRecord
from infra.network.vpc import Network
from infra.registry.ecr import ContainerRegistry
from infra.release_state import deployed_image_tag
from infra.security.kms import EncryptionKeys
from infra.security.security_groups import SecurityGroups
from infra.security.web_acl import RateLimitAcl
from infra.storage.access_logs_bucket import AccessLogsBucket
from infra.storage.bundled_model import BundledModel, bundled_folder
from infra.storage.model_bucket import ModelBucket
from infra.workloads.argo_rollouts import ArgoRollouts
from infra.workloads.batch_cronjob import BatchScoring
from infra.workloads.label_join_cronjob import LabelJoin
from infra.workloads.load_balancer_controller import LoadBalancerController
from infra.workloads.model_service import ModelService
from infra.workloads.network_policies import NetworkPolicies

env = load_stack_config()
aws_provider = create_aws_provider(env)
with_aws = pulumi.ResourceOptions(providers=[aws_provider])

network = Network("network", env, opts=with_aws)
security_groups = SecurityGroups("security", env, network, opts=with_aws)
keys = EncryptionKeys("keys", env, opts=with_aws)
registry = ContainerRegistry("registry", env, keys, opts=with_aws)
bucket = ModelBucket("models", env, keys, seed_folder=bundled_folder(env), opts=with_aws)
bundled_model = BundledModel("bundled-model", env, bucket, opts=with_aws)

pulumi.export("environment", env.name)
pulumi.export("region", env.region)
pulumi.export("availabilityZones", network.availability_zones)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("publicSubnetIds", network.public_subnet_ids)
pulumi.export("privateSubnetIds", network.private_subnet_ids)
pulumi.export("loadBalancerSecurityGroupId", security_groups.load_balancer_group_id)
pulumi.export("workloadSecurityGroupId", security_groups.workload_group_id)
pulumi.export("repositoryUrl", registry.repository_url)
# The commit whose images this deploy runs (infra/release_state.py); CI pushed `<repositoryUrl>:<imageTag>`.
pulumi.export("imageTag", deployed_image_tag())
pulumi.export("modelBucketName", bucket.bucket_name)
pulumi.export("modelUri", bucket.model_uri(env.config.service.model_name, env.config.service.model_version))

if env.config.compute.mode == "ec2":
    host = Ec2Host(
        "host",
        env,
        network=network,
        security_groups=security_groups,
        registry=registry,
        bucket=bucket,
        keys=keys,
        model_package=list(bundled_model.objects),
        opts=with_aws,
    )
    pulumi.export("serviceUrl", host.service_url)
    pulumi.export("autoScalingGroupName", host.auto_scaling_group_name)
    pulumi.export("grafanaUrl", host.grafana_url)
    pulumi.export("grpcEndpoint", host.grpc_endpoint)
else:
    cluster = EksCluster("eks", env, network, keys, opts=with_aws)
    pools = NodePools("pools", env, cluster=cluster, network=network, security_groups=security_groups, opts=with_aws)
    assert keys.cluster is not None
    addons = EksAddons(
        "eks-addons", env, cluster, list(pools.node_groups.values()), volume_key=keys.cluster, opts=with_aws
    )
    storage_class = DefaultStorageClass(
        "storage-class",
        cluster=cluster,
        volume_key=keys.cluster,
        ebs_csi_driver=addons.addons[EBS_CSI_ADDON],
        opts=with_aws,
    )
    NvidiaDevicePlugin.from_pools("nvidia-device-plugin", pools, cluster.provider, opts=with_aws)
    controller = LoadBalancerController(
        "lb-controller", env, cluster=cluster, network=network, depends_on=[addons], opts=with_aws
    )
    ClusterAutoscaler("cluster-autoscaler", env, cluster, [addons, controller.release], opts=with_aws)
    ingress_settings = env.config.ingress
    web_acl = (
        RateLimitAcl("web-acl", env, ingress_settings.rate_limit_per_ip, opts=with_aws)
        if ingress_settings.rate_limit_per_ip
        else None
    )
    access_logs = AccessLogsBucket("alb-logs", env, opts=with_aws) if ingress_settings.access_logs else None
    certificate = ServiceCertificate("certificate", env, opts=with_aws) if ingress_settings.tls else None
    rollouts = ArgoRollouts("argo-rollouts", cluster=cluster, depends_on=[addons, controller.release], opts=with_aws)
    service = ModelService(
        "model-service",
        env,
        cluster=cluster,
        pools=pools,
        registry=registry,
        bucket=bucket,
        keys=keys,
        security_groups=security_groups,
        rollouts_controller=rollouts.release,
        load_balancer_controller=controller.release,
        model_package=list(bundled_model.objects),
        web_acl_arn=web_acl.arn if web_acl else None,
        access_logs_bucket=access_logs.bucket_name if access_logs else None,
        certificate_arn=certificate.arn if certificate else None,
        depends_on=[addons, controller, *([access_logs] if access_logs else [])],
        opts=with_aws,
    )
    if certificate and certificate.zone_id is not None:
        ServiceDnsRecord(
            "service-dns",
            env,
            zone_id=certificate.zone_id,
            load_balancer_hostname=service.load_balancer_hostname,
            opts=with_aws,
        )
    monitoring = Monitoring(
        "monitoring",
        env,
        cluster=cluster,
        pools=pools,
        load_balancer_group_id=security_groups.load_balancer_group_id,
        retrain_webhook_url=RETRAIN_WEBHOOK_URL if env.config.monitoring.retrain.repository else None,
        depends_on=[addons, controller.release, storage_class],
        opts=with_aws,
    )
    if env.config.monitoring.retrain.repository:
        RetrainRelay(
            "retrain-relay",
            env,
            cluster=cluster,
            registry=registry,
            depends_on=[monitoring.namespace, controller, *filter(None, [monitoring.retrain_webhook_secret])],
            opts=with_aws,
        )
    NetworkPolicies(
        "network-policies",
        env,
        cluster=cluster,
        network=network,
        service_namespace=service.namespace_resource,
        monitoring_namespace=monitoring.namespace,
        retrain_relay=bool(env.config.monitoring.retrain.repository),
        opts=with_aws,
    )
    if service.generated_api_keys:
        # The keys of service.generatedApiClients, for their owner to hand out: `pulumi stack output --show-secrets`.
        pulumi.export("apiClientKeys", pulumi.Output.secret(pulumi.Output.all(**service.generated_api_keys)))
    pulumi.export("grafanaUrl", monitoring.grafana_url)
    pulumi.export("grafanaAdminPassword", monitoring.grafana_admin_password)
    if env.config.batch.enabled:
        BatchScoring(
            "batch", env, cluster=cluster, service=service, registry=registry, bucket=bucket, keys=keys, opts=with_aws
        )
    if env.config.monitoring.prediction_log.enabled:
        LabelJoin(
            "label-join",
            env,
            cluster=cluster,
            service=service,
            registry=registry,
            bucket=bucket,
            keys=keys,
            opts=with_aws,
        )
    pulumi.export("clusterName", cluster.name)
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export("serviceUrl", service.service_url)
    # OIP gRPC: on the ALB's 443 with a certificate; otherwise from the cluster only (service.grpcNamespaces).
    pulumi.export("grpcEndpoint", service.grpc_endpoint)
    # What `mlstack release status|promote|abort` and kubectl-argo-rollouts act on.
    pulumi.export("rollout", {"namespace": service.namespace, "name": service.rollout_name})
    pulumi.export("releaseStrategy", env.config.release.strategy)
