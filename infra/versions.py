"""Every version that deploys, in one place. Bump here, preview, review, apply.

EKS add-on versions are per Kubernetes minor; confirm a bump with
`aws eks describe-addon-versions --kubernetes-version <minor> --addon-name <name>`.
"""

DEFAULT_KUBERNETES_VERSION = "1.33"

# EKS managed add-ons, by Kubernetes minor version.
EKS_ADDON_VERSIONS: dict[str, dict[str, str]] = {
    "1.33": {
        "vpc-cni": "v1.19.5-eksbuild.1",
        "coredns": "v1.12.1-eksbuild.2",
        "kube-proxy": "v1.33.0-eksbuild.2",
        "aws-ebs-csi-driver": "v1.48.0-eksbuild.1",
        "eks-pod-identity-agent": "v1.3.8-eksbuild.2",
    },
}

# Helm charts: (repository, chart, version).
NVIDIA_DEVICE_PLUGIN_CHART = ("https://nvidia.github.io/k8s-device-plugin", "nvidia-device-plugin", "0.17.1")
CLUSTER_AUTOSCALER_CHART = ("https://kubernetes.github.io/autoscaler", "cluster-autoscaler", "9.50.1")
# Cluster Autoscaler's minor version must match the cluster's.
CLUSTER_AUTOSCALER_IMAGE_TAGS = {"1.33": "v1.33.0"}

# The EC2 host: Amazon Linux 2023 resolved through its public SSM parameter, never a hard-coded AMI id.
AL2023_AMI_SSM_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
# Docker Compose v2 plugin for the host (Amazon Linux 2023 packages Docker but not the compose plugin).
DOCKER_COMPOSE_VERSION = "v2.39.2"

# EKS managed node group AMI types.
CPU_AMI_TYPE = "AL2023_x86_64_STANDARD"
GPU_AMI_TYPE = "AL2023_x86_64_NVIDIA"

# AWS Load Balancer Controller: the chart and the controller share their minor version.
AWS_LOAD_BALANCER_CONTROLLER_CHART = ("https://aws.github.io/eks-charts", "aws-load-balancer-controller", "1.13.3")
# Argo Rollouts: progressive delivery of the model service (canary with ALB traffic routing, blue-green).
# Provenance: argoproj/argo-helm, tag argo-rollouts-2.41.0 (commit 8796aeaa82428f96c3a20293f75a1a805f99d32b),
# charts/argo-rollouts/Chart.yaml: version 2.41.0, appVersion v1.9.0. The chart ships its CRDs as templates
# (templates/crds/*.yaml, behind `installCRDs`), so a chart bump upgrades them with the release.
ARGO_ROLLOUTS_CHART = ("https://argoproj.github.io/argo-helm", "argo-rollouts", "2.41.0")
# The controller version the chart deploys (its appVersion); the Rollout and AnalysisTemplate manifests are
# checked against argoproj/argo-rollouts tag v1.9.0, manifests/crds/{rollout,analysis-template}-crd.yaml.
ARGO_ROLLOUTS_VERSION = "v1.9.0"

# Monitoring on EKS. Confirm a bump with `helm search repo <repo>/<chart> --versions`.
KUBE_PROMETHEUS_STACK_CHART = ("https://prometheus-community.github.io/helm-charts", "kube-prometheus-stack", "78.3.2")
PROMETHEUS_ADAPTER_CHART = ("https://prometheus-community.github.io/helm-charts", "prometheus-adapter", "4.11.0")
DCGM_EXPORTER_CHART = ("https://nvidia.github.io/dcgm-exporter/helm-charts", "dcgm-exporter", "4.4.1")
# Prometheus and Grafana beside the service in compose.yaml (the dev host and laptops).
PROMETHEUS_IMAGE = "prom/prometheus:v3.5.0"
GRAFANA_IMAGE = "grafana/grafana:12.1.1"
