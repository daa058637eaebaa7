"""Every version that deploys, in one place, each beside the upstream source it was verified against.

Bump here, record where the new version was verified (repository, tag or commit, path or digest), preview, review,
apply. `tests/infra/test_versions.py` fails when a pin lacks its provenance. Verified 2026-11-29 against the
repositories' newest snapshots (git tags and files named below).
"""

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Provenance:
    """Where a pin was verified: a GitHub repository, a tag or 40-hex commit in it, and the file (or the image digest)
    that states the fact. `url` names a documentation page when the fact is AWS's word rather than a file."""

    repository: str
    ref: str
    path: str
    url: str = ""


@dataclass(frozen=True)
class ChartPin:
    """A Helm chart: its repository URL, name and version; `app_version` is the image tag the chart deploys."""

    repository: str
    chart: str
    version: str
    app_version: str
    provenance: Provenance


@dataclass(frozen=True)
class Pin:
    """Any other pinned artifact (an image, a version string, a document)."""

    value: str
    provenance: Provenance


@dataclass(frozen=True)
class KubernetesRelease:
    """An EKS Kubernetes minor: the day standard support ends (extended-support pricing starts that day, UTC)."""

    version: str
    end_of_standard_support: date
    provenance: Provenance


EKS_VERSION_CALENDAR_URL = "https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html"
_EKS_CALENDAR = Provenance(
    "awsdocs/amazon-eks-user-guide",
    "8596db85c9ea47d3c692d8c7c0498f616187d44d",
    "latest/ug/versioning/kubernetes-versions.adoc",
    EKS_VERSION_CALENDAR_URL,
)
# 1.35 and 1.36 are newer than every stored copy of that calendar: their EKS Distro releases are the repository
# evidence, AWS's standard-support release notes ("Kubernetes 1.36 is now available in Amazon EKS") the word that
# they are offered. Their end dates are 14 months after the EKS release (1.35: 2026-01-27, 1.36: 2026-06-02) as
# secondary sources quote the calendar; check them against the calendar URL on the next bump.
KUBERNETES_RELEASES: dict[str, KubernetesRelease] = {
    "1.33": KubernetesRelease("1.33", date(2026, 7, 29), _EKS_CALENDAR),
    "1.34": KubernetesRelease(
        "1.34",
        date(2026, 12, 2),
        Provenance(
            "awsdocs/amazon-eks-user-guide",
            "013856044148d6eeed4723027a45aa2180536bcb",
            "latest/ug/versioning/kubernetes-versions.adoc",
            EKS_VERSION_CALENDAR_URL,
        ),
    ),
    "1.35": KubernetesRelease(
        "1.35",
        date(2027, 3, 27),
        Provenance(
            "aws/eks-distro",
            "178844623f233bd3ee66c14776e7c1fb55895f12",
            "docs/contents/releases/1-35/1/index.md",
            "https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions-standard.html",
        ),
    ),
    "1.36": KubernetesRelease(
        "1.36",
        date(2027, 8, 2),
        Provenance(
            "aws/eks-distro",
            "v1-36-eks-6",
            "docs/contents/releases/1-36/6/index.md",
            "https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions-standard.html",
        ),
    ),
}
# The newest minor EKS offers in standard support (1.33's standard support ended 2026-07-29).
DEFAULT_KUBERNETES_VERSION = "1.36"

# EKS managed add-ons, by Kubernetes minor version. No source that can be cited (AWS's add-on tables end at 1.34 in
# every stored copy) names the `-eksbuild.N` builds EKS publishes for 1.36, and an unpublished build fails the
# create. So the value is RESOLVE_DEFAULT_ADDON_VERSION: the program asks EKS (aws.eks.getAddonVersion, the same
# answer as `aws eks describe-addon-versions --kubernetes-version 1.36 --addon-name <name>` marks defaultVersion)
# for the build EKS itself installs by default on that minor, and the preview shows the answer. Replace it with the
# exact build once read from that command; the provenance names the upstream project whose release line it ships.
RESOLVE_DEFAULT_ADDON_VERSION = "eks-default"
EKS_ADDON_VERSIONS: dict[str, dict[str, str]] = {
    "1.36": {
        "vpc-cni": RESOLVE_DEFAULT_ADDON_VERSION,
        "coredns": RESOLVE_DEFAULT_ADDON_VERSION,
        "kube-proxy": RESOLVE_DEFAULT_ADDON_VERSION,
        "aws-ebs-csi-driver": RESOLVE_DEFAULT_ADDON_VERSION,
        "eks-pod-identity-agent": RESOLVE_DEFAULT_ADDON_VERSION,
    },
}
_ADDON_DOCS = "https://docs.aws.amazon.com/eks/latest/userguide/eks-add-ons.html"
EKS_ADDON_PROVENANCE: dict[str, Provenance] = {
    "vpc-cni": Provenance("aws/amazon-vpc-cni-k8s", "v1.23.0", "charts/aws-vpc-cni/Chart.yaml", _ADDON_DOCS),
    "coredns": Provenance("aws/eks-distro", "v1-36-eks-6", "projects/coredns/coredns/1-36/GIT_TAG", _ADDON_DOCS),
    "kube-proxy": Provenance(
        "aws/eks-distro", "v1-36-eks-6", "projects/kubernetes/kubernetes/1-36/GIT_TAG", _ADDON_DOCS
    ),
    "aws-ebs-csi-driver": Provenance(
        "kubernetes-sigs/aws-ebs-csi-driver", "v1.64.0", "charts/aws-ebs-csi-driver/Chart.yaml", _ADDON_DOCS
    ),
    "eks-pod-identity-agent": Provenance(
        "aws/eks-pod-identity-agent", "v0.1.37", "charts/eks-pod-identity-agent/Chart.yaml", _ADDON_DOCS
    ),
}

# Helm charts. Each value the stack sets was checked against the chart's values.yaml and templates at that tag by
# rendering it with `helm template`; the chart's own default image (its appVersion) is left to stand unless noted.
NVIDIA_DEVICE_PLUGIN_CHART = ChartPin(
    "https://nvidia.github.io/k8s-device-plugin",
    "nvidia-device-plugin",
    "0.20.0",
    "0.20.0",
    Provenance("NVIDIA/k8s-device-plugin", "v0.20.0", "deployments/helm/nvidia-device-plugin/Chart.yaml"),
)
CLUSTER_AUTOSCALER_CHART = ChartPin(
    "https://kubernetes.github.io/autoscaler",
    "cluster-autoscaler",
    "9.59.0",
    "1.35.0",
    Provenance(
        "kubernetes/autoscaler",
        "cluster-autoscaler-chart-9.59.0",
        "cluster-autoscaler/charts/cluster-autoscaler/Chart.yaml",
    ),
)
# Cluster Autoscaler's minor must match the cluster's; the newest chart still ships 1.35.0, so the image is named
# here, digest-pinned. The digest is the one the autoscaler's release images resolve to, as pinned in public repos.
_CLUSTER_AUTOSCALER_1_36 = Provenance(
    "kubernetes/autoscaler",
    "cluster-autoscaler-1.36.1",
    "sha256:461388d03eb5b55db58941ee7a81d9a619dd15302b01cbab9f5a9946715994b4",
)
CLUSTER_AUTOSCALER_IMAGES: dict[str, Pin] = {
    "1.36": Pin(
        "registry.k8s.io/autoscaling/cluster-autoscaler:v1.36.1"
        "@sha256:461388d03eb5b55db58941ee7a81d9a619dd15302b01cbab9f5a9946715994b4",
        _CLUSTER_AUTOSCALER_1_36,
    ),
}

# The EC2 host: Amazon Linux 2023 resolved through its public SSM parameter, never a hard-coded AMI id.
AL2023_AMI_SSM_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
# Docker Compose plugin for the host (Amazon Linux 2023 packages Docker but not the compose plugin). Kept on the v2
# line the host script was written for; upstream's newest is v5.5.0 (a major bump for the devhost owner to test).
DOCKER_COMPOSE = Pin("v2.39.2", Provenance("docker/compose", "v2.39.2", "go.mod"))
DOCKER_COMPOSE_VERSION = DOCKER_COMPOSE.value
# sha256 of that release's docker-compose-linux-x86_64, which the host checks before installing it. Taken from the
# Docker official image's versions.json (its versions.sh reads the release's checksums.txt); not checked against the
# release asset itself from here.
DOCKER_COMPOSE_LINUX_X86_64 = Pin(
    "a55a8cd4ef103aac282812554e531aac8df7e914a287ee81e14d695556a22902",
    Provenance("docker-library/docker", "1e17180cea33b7a6d9f06442e708c1a094974ae6", "versions.json"),
)
DOCKER_COMPOSE_LINUX_X86_64_SHA256 = DOCKER_COMPOSE_LINUX_X86_64.value

# EKS managed node group AMI types.
CPU_AMI_TYPE = "AL2023_x86_64_STANDARD"
GPU_AMI_TYPE = "AL2023_x86_64_NVIDIA"

# AWS Load Balancer Controller. The IAM policy in infra/workloads/aws_load_balancer_controller_policy.json is the
# controller's docs/install/iam_policy.json at exactly the tag this chart deploys (its appVersion). Its CRDs
# (TargetGroupBinding, IngressClassParams, the gateway ones) sit in the chart's crds/, which Helm installs on the
# first install only and eks-charts publishes no CRD-only chart: on a bump, apply stable/aws-load-balancer-controller/
# crds at the new chart's commit (`kubectl apply -k`, as the chart's README says) before `pulumi up`.
AWS_LOAD_BALANCER_CONTROLLER_CHART = ChartPin(
    "https://aws.github.io/eks-charts",
    "aws-load-balancer-controller",
    "3.5.0",
    "v3.5.0",
    Provenance(
        "aws/eks-charts", "5239609242f3430be50fb0b714a24d3ef2b47983", "stable/aws-load-balancer-controller/Chart.yaml"
    ),
)
AWS_LOAD_BALANCER_CONTROLLER_POLICY = Pin(
    "docs/install/iam_policy.json@v3.5.0",
    Provenance(
        "kubernetes-sigs/aws-load-balancer-controller",
        "v3.5.0",
        "docs/install/iam_policy.json",
        "blob 761d0e733c41089c91ea009dd29faf71918085e5",
    ),
)
# Argo Rollouts: progressive delivery of the model service (canary with ALB traffic routing, blue-green). The chart
# ships its CRDs as templates (templates/crds/*.yaml, behind `installCRDs`), so a chart bump upgrades them with the
# release. The Rollout and AnalysisTemplate manifests were checked against argoproj/argo-rollouts tag v1.9.0,
# manifests/crds/{rollout,analysis-template}-crd.yaml.
ARGO_ROLLOUTS_CHART = ChartPin(
    "https://argoproj.github.io/argo-helm",
    "argo-rollouts",
    "2.41.0",
    "v1.9.0",
    Provenance("argoproj/argo-helm", "8796aeaa82428f96c3a20293f75a1a805f99d32b", "charts/argo-rollouts/Chart.yaml"),
)
# The ALB's TLS security policy on its HTTPS listener (the `alb.ingress.kubernetes.io/ssl-policy` annotation, v3.5.0
# docs/guide/ingress/annotations.md). Without it the controller leaves AWS's API default, ELBSecurityPolicy-2016-08,
# which still accepts TLS 1.0 and 1.1. This is the policy AWS's describe-ssl-policies page names as the console
# default: TLS 1.3 and 1.2 only, restricted ciphers, hybrid post-quantum key exchange (checked 2026-11-29).
ALB_SSL_POLICY = Pin(
    "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09",
    Provenance(
        "kubernetes-sigs/aws-load-balancer-controller",
        "v3.5.0",
        "docs/guide/ingress/annotations.md",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/describe-ssl-policies.html",
    ),
)
# Pins that could not be verified upstream, by name and why; the provenance test lists them. None today.
UNVERIFIED: dict[str, str] = {}

# Monitoring on EKS. The operator's CRDs come from their own chart, at the operator version kube-prometheus-stack
# deploys (both appVersion v0.93.1), so a bump updates them (Helm installs a chart's crds/ only on first install).
KUBE_PROMETHEUS_STACK_CHART = ChartPin(
    "https://prometheus-community.github.io/helm-charts",
    "kube-prometheus-stack",
    "88.5.3",
    "v0.93.1",
    Provenance(
        "prometheus-community/helm-charts", "kube-prometheus-stack-88.5.3", "charts/kube-prometheus-stack/Chart.yaml"
    ),
)
PROMETHEUS_OPERATOR_CRDS_CHART = ChartPin(
    "https://prometheus-community.github.io/helm-charts",
    "prometheus-operator-crds",
    "31.0.1",
    "v0.93.1",
    Provenance(
        "prometheus-community/helm-charts",
        "prometheus-operator-crds-31.0.1",
        "charts/prometheus-operator-crds/Chart.yaml",
    ),
)
PROMETHEUS_ADAPTER_CHART = ChartPin(
    "https://prometheus-community.github.io/helm-charts",
    "prometheus-adapter",
    "5.3.0",
    "v0.12.0",
    Provenance("prometheus-community/helm-charts", "prometheus-adapter-5.3.0", "charts/prometheus-adapter/Chart.yaml"),
)
DCGM_EXPORTER_CHART = ChartPin(
    "https://nvidia.github.io/dcgm-exporter/helm-charts",
    "dcgm-exporter",
    "4.8.2",
    "4.8.2",
    Provenance("NVIDIA/dcgm-exporter", "4.5.3-4.8.2", "deployment/Chart.yaml"),
)
# Prometheus and Grafana beside the service in compose.yaml (the dev host and laptops): the Prometheus release
# kube-prometheus-stack 88.5.3 deploys (values.yaml prometheus.prometheusSpec.image.tag v3.14.0), and Grafana 13.2.2.
# Digests as pinned identically by several public repositories' Renovate-maintained files.
PROMETHEUS_IMAGE = Pin(
    "prom/prometheus:v3.14.0@sha256:5ce7540c3c00ef4ab0c9d2c995c6a5b9c421f44b4a115d97a2c7af3b1c21cbb0",
    Provenance(
        "prometheus/prometheus", "v3.14.0", "sha256:5ce7540c3c00ef4ab0c9d2c995c6a5b9c421f44b4a115d97a2c7af3b1c21cbb0"
    ),
)
GRAFANA_IMAGE = Pin(
    "grafana/grafana:13.2.2@sha256:ac461fb352abc50da10a51c7d02462e9c05488f11f53f14b3ad79a8145f638a0",
    Provenance("grafana/grafana", "v13.2.2", "sha256:ac461fb352abc50da10a51c7d02462e9c05488f11f53f14b3ad79a8145f638a0"),
)
