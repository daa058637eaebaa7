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
# sha256 of that release's docker-compose-linux-x86_64, which the host checks before installing it. Provenance:
# docker-library/docker commit 1e17180cea33b7a6d9f06442e708c1a094974ae6 ("Update 28 to compose 2.39.2"),
# versions.json, which its versions.sh reads from the release's checksums.txt; not checked against the release
# asset itself from here.
DOCKER_COMPOSE_LINUX_X86_64_SHA256 = "a55a8cd4ef103aac282812554e531aac8df7e914a287ee81e14d695556a22902"

# EKS managed node group AMI types.
CPU_AMI_TYPE = "AL2023_x86_64_STANDARD"
GPU_AMI_TYPE = "AL2023_x86_64_NVIDIA"

# AWS Load Balancer Controller: the chart and the controller share their minor version.
AWS_LOAD_BALANCER_CONTROLLER_CHART = ("https://aws.github.io/eks-charts", "aws-load-balancer-controller", "1.13.3")
# Scales an idle blue-green colour down after its delay (kubectl, matching the cluster's minor).
KUBECTL_IMAGE = "docker.io/bitnami/kubectl:1.33"

# Monitoring on EKS. Confirm a bump with `helm search repo <repo>/<chart> --versions`.
KUBE_PROMETHEUS_STACK_CHART = ("https://prometheus-community.github.io/helm-charts", "kube-prometheus-stack", "78.3.2")
PROMETHEUS_ADAPTER_CHART = ("https://prometheus-community.github.io/helm-charts", "prometheus-adapter", "4.11.0")
DCGM_EXPORTER_CHART = ("https://nvidia.github.io/dcgm-exporter/helm-charts", "dcgm-exporter", "4.4.1")
# Prometheus and Grafana beside the service in compose.yaml (the dev host and laptops).
PROMETHEUS_IMAGE = "prom/prometheus:v3.5.0"
GRAFANA_IMAGE = "grafana/grafana:12.1.1"
