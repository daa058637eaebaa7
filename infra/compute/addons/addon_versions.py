"""The version of each EKS managed add-on: the build pinned in infra/versions.py, or the one EKS defaults to."""

import pulumi
import pulumi_aws as aws

from infra.versions import EKS_ADDON_VERSIONS, RESOLVE_DEFAULT_ADDON_VERSION


def addon_version(addon_name: str, kubernetes_version: str, opts: pulumi.InvokeOutputOptions) -> pulumi.Input[str]:
    """The pinned build; where versions.py says RESOLVE_DEFAULT_ADDON_VERSION, EKS's default build for that minor
    (what `aws eks describe-addon-versions` marks defaultVersion), which always exists for it."""
    pinned = EKS_ADDON_VERSIONS[kubernetes_version][addon_name]
    if pinned != RESOLVE_DEFAULT_ADDON_VERSION:
        return pinned
    return aws.eks.get_addon_version_output(
        addon_name=addon_name, kubernetes_version=kubernetes_version, opts=opts
    ).version
