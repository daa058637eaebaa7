"""The CI roles' permissions as data: what each resource type the stacks create needs, and the policies built from it.

`RESOURCE_ACTIONS` maps every Pulumi type the stacks register to the IAM actions its create, read, update and delete
call (and its tagging). A test runs all three stacks and fails on a type this table does not know, so a new kind of
resource cannot reach CI without its permissions. Sources: the API calls of the AWS provider's resources (pulumi-aws
bridges hashicorp/terraform-provider-aws, `internal/service/<service>/<resource>.go`; its snapshot was too large to
fetch here, so the calls are as known, not re-read) and the services' API references for the action each call needs
(checked: S3 DeleteBucketLifecycle is authorised by s3:PutLifecycleConfiguration; EKS's access-entry calls). The first
real `pulumi up` with the deploy role is the final check: an AccessDenied names the missing action for this table.
"""

import json
from collections.abc import Iterable
from typing import Any

Statement = dict[str, Any]
POLICY_VERSION = "2012-10-17"
# IAM's limit for one customer managed policy, counted without whitespace, and the default number a role may attach.
MANAGED_POLICY_MAX_CHARS = 6144
MANAGED_POLICIES_PER_ROLE = 10

_EC2_TAGS = ("ec2:CreateTags", "ec2:DeleteTags")
_S3_BUCKET_SETTING_READS = (
    # The provider reads every sub-resource of a bucket after each create and refresh.
    "s3:GetAccelerateConfiguration",
    "s3:GetBucketAcl",
    "s3:GetBucketCORS",
    "s3:GetBucketLogging",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketOwnershipControls",
    "s3:GetBucketPolicy",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketRequestPayment",
    "s3:GetBucketTagging",
    "s3:GetBucketVersioning",
    "s3:GetBucketWebsite",
    "s3:GetEncryptionConfiguration",
    "s3:GetLifecycleConfiguration",
    "s3:GetReplicationConfiguration",
)
_IAM_ROLE_READS = ("iam:GetRole", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies")
_EKS_UPDATES = ("eks:DescribeUpdate", "eks:TagResource", "eks:UntagResource", "eks:ListTagsForResource")

RESOURCE_ACTIONS: dict[str, tuple[str, ...]] = {
    # network
    "aws:ec2/vpc:Vpc": (
        "ec2:CreateVpc",
        "ec2:DeleteVpc",
        "ec2:DescribeVpcs",
        "ec2:DescribeVpcAttribute",
        "ec2:ModifyVpcAttribute",
        # A new VPC's default network ACL, route table and security group are read back into its state.
        "ec2:DescribeNetworkAcls",
        "ec2:DescribeRouteTables",
        "ec2:DescribeSecurityGroups",
        *_EC2_TAGS,
    ),
    "aws:ec2/subnet:Subnet": (
        "ec2:CreateSubnet",
        "ec2:DeleteSubnet",
        "ec2:DescribeSubnets",
        "ec2:ModifySubnetAttribute",
        "ec2:DescribeNetworkInterfaces",
        *_EC2_TAGS,
    ),
    "aws:ec2/internetGateway:InternetGateway": (
        "ec2:CreateInternetGateway",
        "ec2:AttachInternetGateway",
        "ec2:DetachInternetGateway",
        "ec2:DeleteInternetGateway",
        "ec2:DescribeInternetGateways",
        *_EC2_TAGS,
    ),
    "aws:ec2/natGateway:NatGateway": (
        "ec2:CreateNatGateway",
        "ec2:DeleteNatGateway",
        "ec2:DescribeNatGateways",
        *_EC2_TAGS,
    ),
    "aws:ec2/eip:Eip": (
        "ec2:AllocateAddress",
        "ec2:ReleaseAddress",
        "ec2:DescribeAddresses",
        "ec2:DescribeAddressesAttribute",
        "ec2:DisassociateAddress",
        *_EC2_TAGS,
    ),
    "aws:ec2/routeTable:RouteTable": (
        "ec2:CreateRouteTable",
        "ec2:DeleteRouteTable",
        "ec2:DescribeRouteTables",
        *_EC2_TAGS,
    ),
    "aws:ec2/route:Route": ("ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute", "ec2:DescribeRouteTables"),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": (
        "ec2:AssociateRouteTable",
        "ec2:ReplaceRouteTableAssociation",
        "ec2:DisassociateRouteTable",
        "ec2:DescribeRouteTables",
    ),
    "aws:ec2/securityGroup:SecurityGroup": (
        "ec2:CreateSecurityGroup",
        "ec2:DeleteSecurityGroup",
        "ec2:DescribeSecurityGroups",
        # The provider revokes the default allow-all egress rule of a new group, and waits on ENIs at delete.
        "ec2:RevokeSecurityGroupEgress",
        "ec2:RevokeSecurityGroupIngress",
        "ec2:DescribeNetworkInterfaces",
        *_EC2_TAGS,
    ),
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": (
        "ec2:DescribeSecurityGroups",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:AuthorizeSecurityGroupEgress",
        "ec2:RevokeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupEgress",
        *_EC2_TAGS,
    ),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": (
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupIngress",
        "ec2:ModifySecurityGroupRules",
        "ec2:DescribeSecurityGroupRules",
        *_EC2_TAGS,
    ),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": (
        "ec2:AuthorizeSecurityGroupEgress",
        "ec2:RevokeSecurityGroupEgress",
        "ec2:ModifySecurityGroupRules",
        "ec2:DescribeSecurityGroupRules",
        *_EC2_TAGS,
    ),
    "aws:ec2/vpcEndpoint:VpcEndpoint": (
        "ec2:CreateVpcEndpoint",
        "ec2:ModifyVpcEndpoint",
        "ec2:DeleteVpcEndpoints",
        "ec2:DescribeVpcEndpoints",
        "ec2:DescribePrefixLists",
        "ec2:DescribeRouteTables",
        *_EC2_TAGS,
    ),
    "aws:ec2/flowLog:FlowLog": (
        "ec2:CreateFlowLogs",
        "ec2:DeleteFlowLogs",
        "ec2:DescribeFlowLogs",
        "iam:PassRole",
        *_EC2_TAGS,
    ),
    "aws:cloudwatch/logGroup:LogGroup": (
        "logs:CreateLogGroup",
        "logs:DeleteLogGroup",
        "logs:DescribeLogGroups",
        "logs:PutRetentionPolicy",
        "logs:DeleteRetentionPolicy",
        "logs:AssociateKmsKey",
        "logs:DisassociateKmsKey",
        "logs:TagResource",
        "logs:UntagResource",
        "logs:ListTagsForResource",
    ),
    # compute: the dev host
    "aws:ec2/launchTemplate:LaunchTemplate": (
        "ec2:CreateLaunchTemplate",
        "ec2:CreateLaunchTemplateVersion",
        "ec2:ModifyLaunchTemplate",
        "ec2:DeleteLaunchTemplate",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeLaunchTemplateVersions",
        *_EC2_TAGS,
    ),
    "aws:autoscaling/group:Group": (
        "autoscaling:CreateAutoScalingGroup",
        "autoscaling:UpdateAutoScalingGroup",
        "autoscaling:DeleteAutoScalingGroup",
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeScalingActivities",
        "autoscaling:StartInstanceRefresh",
        "autoscaling:CancelInstanceRefresh",
        "autoscaling:RollbackInstanceRefresh",
        "autoscaling:DescribeInstanceRefreshes",
        "autoscaling:AttachTrafficSources",
        "autoscaling:DetachTrafficSources",
        "autoscaling:DescribeTrafficSources",
        "autoscaling:AttachLoadBalancerTargetGroups",
        "autoscaling:DetachLoadBalancerTargetGroups",
        "autoscaling:DescribeLoadBalancerTargetGroups",
        "autoscaling:CreateOrUpdateTags",
        "autoscaling:DeleteTags",
        "autoscaling:DescribeTags",
        # Creating a group from a launch template checks that the caller may launch it and pass its role.
        "ec2:RunInstances",
        "ec2:DescribeLaunchTemplateVersions",
        "iam:PassRole",
    ),
    "aws:autoscaling/tag:Tag": (
        "autoscaling:CreateOrUpdateTags",
        "autoscaling:DeleteTags",
        "autoscaling:DescribeTags",
    ),
    "aws:lb/loadBalancer:LoadBalancer": (
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:DescribeLoadBalancerAttributes",
        "elasticloadbalancing:ModifyLoadBalancerAttributes",
        "elasticloadbalancing:SetSecurityGroups",
        "elasticloadbalancing:SetSubnets",
        "elasticloadbalancing:AddTags",
        "elasticloadbalancing:RemoveTags",
        "elasticloadbalancing:DescribeTags",
    ),
    "aws:lb/targetGroup:TargetGroup": (
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:DeleteTargetGroup",
        "elasticloadbalancing:ModifyTargetGroup",
        "elasticloadbalancing:ModifyTargetGroupAttributes",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetGroupAttributes",
        "elasticloadbalancing:DescribeTargetHealth",
        "elasticloadbalancing:AddTags",
        "elasticloadbalancing:RemoveTags",
        "elasticloadbalancing:DescribeTags",
    ),
    "aws:lb/listener:Listener": (
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:DeleteListener",
        "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:DescribeListenerAttributes",
        "elasticloadbalancing:ModifyListenerAttributes",
        "elasticloadbalancing:AddTags",
        "elasticloadbalancing:RemoveTags",
        "elasticloadbalancing:DescribeTags",
    ),
    # compute: EKS
    "aws:eks/cluster:Cluster": (
        "eks:CreateCluster",
        "eks:DeleteCluster",
        "eks:DescribeCluster",
        "eks:UpdateClusterConfig",
        "eks:UpdateClusterVersion",
        *_EKS_UPDATES,
        "iam:PassRole",
        "iam:CreateServiceLinkedRole",
        # Envelope encryption of secrets: EKS checks the key and creates a grant on it as the caller.
        "kms:DescribeKey",
        "kms:CreateGrant",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeVpcs",
    ),
    "aws:eks/nodeGroup:NodeGroup": (
        "eks:CreateNodegroup",
        "eks:DeleteNodegroup",
        "eks:DescribeNodegroup",
        "eks:UpdateNodegroupConfig",
        "eks:UpdateNodegroupVersion",
        *_EKS_UPDATES,
        "iam:PassRole",
        "iam:CreateServiceLinkedRole",
        "ec2:DescribeSubnets",
        "ec2:DescribeLaunchTemplateVersions",
    ),
    "aws:eks/addon:Addon": (
        "eks:CreateAddon",
        "eks:DeleteAddon",
        "eks:DescribeAddon",
        "eks:UpdateAddon",
        "eks:DescribeAddonVersions",
        "eks:DescribeAddonConfiguration",
        *_EKS_UPDATES,
    ),
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": (
        "eks:CreatePodIdentityAssociation",
        "eks:DeletePodIdentityAssociation",
        "eks:DescribePodIdentityAssociation",
        "eks:UpdatePodIdentityAssociation",
        "eks:TagResource",
        "eks:UntagResource",
        "iam:PassRole",
        "iam:GetRole",
    ),
    "aws:eks/accessEntry:AccessEntry": (
        "eks:CreateAccessEntry",
        "eks:DeleteAccessEntry",
        "eks:DescribeAccessEntry",
        "eks:UpdateAccessEntry",
        "eks:TagResource",
        "eks:UntagResource",
    ),
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation": (
        "eks:AssociateAccessPolicy",
        "eks:DisassociateAccessPolicy",
        "eks:ListAssociatedAccessPolicies",
    ),
    # identity
    "aws:iam/role:Role": (
        "iam:CreateRole",
        "iam:DeleteRole",
        "iam:UpdateRole",
        "iam:UpdateAssumeRolePolicy",
        "iam:TagRole",
        "iam:UntagRole",
        "iam:ListInstanceProfilesForRole",
        *_IAM_ROLE_READS,
    ),
    "aws:iam/rolePolicy:RolePolicy": (
        "iam:PutRolePolicy",
        "iam:GetRolePolicy",
        "iam:DeleteRolePolicy",
        "iam:ListRolePolicies",
    ),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": (
        "iam:AttachRolePolicy",
        "iam:DetachRolePolicy",
        "iam:ListAttachedRolePolicies",
    ),
    "aws:iam/policy:Policy": (
        "iam:CreatePolicy",
        "iam:DeletePolicy",
        "iam:GetPolicy",
        "iam:GetPolicyVersion",
        "iam:CreatePolicyVersion",
        "iam:DeletePolicyVersion",
        "iam:ListPolicyVersions",
        "iam:TagPolicy",
        "iam:UntagPolicy",
    ),
    "aws:iam/instanceProfile:InstanceProfile": (
        "iam:CreateInstanceProfile",
        "iam:DeleteInstanceProfile",
        "iam:GetInstanceProfile",
        "iam:AddRoleToInstanceProfile",
        "iam:RemoveRoleFromInstanceProfile",
        "iam:TagInstanceProfile",
        "iam:UntagInstanceProfile",
        "iam:PassRole",
    ),
    "aws:kms/key:Key": (
        "kms:CreateKey",
        "kms:DescribeKey",
        "kms:GetKeyPolicy",
        "kms:PutKeyPolicy",
        "kms:GetKeyRotationStatus",
        "kms:EnableKeyRotation",
        "kms:DisableKeyRotation",
        "kms:EnableKey",
        "kms:DisableKey",
        "kms:UpdateKeyDescription",
        "kms:ScheduleKeyDeletion",
        "kms:ListResourceTags",
        "kms:TagResource",
        "kms:UntagResource",
    ),
    "aws:kms/alias:Alias": ("kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias", "kms:ListAliases"),
    # registry and storage
    "aws:ecr/repository:Repository": (
        "ecr:CreateRepository",
        "ecr:DeleteRepository",
        "ecr:DescribeRepositories",
        "ecr:PutImageTagMutability",
        "ecr:PutImageScanningConfiguration",
        "ecr:ListImages",
        "ecr:BatchDeleteImage",
        "ecr:TagResource",
        "ecr:UntagResource",
        "ecr:ListTagsForResource",
        # A KMS-encrypted repository: ECR creates a grant on the key as the caller.
        "kms:DescribeKey",
        "kms:CreateGrant",
        "kms:RetireGrant",
    ),
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": (
        "ecr:PutLifecyclePolicy",
        "ecr:GetLifecyclePolicy",
        "ecr:DeleteLifecyclePolicy",
    ),
    "aws:s3/bucket:Bucket": (
        "s3:CreateBucket",
        "s3:DeleteBucket",
        "s3:ListBucket",
        "s3:GetBucketLocation",
        "s3:PutBucketTagging",
        *_S3_BUCKET_SETTING_READS,
        # force_destroy empties a bucket that is not protected.
        "s3:ListBucketVersions",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
    ),
    "aws:s3/bucketVersioning:BucketVersioning": ("s3:PutBucketVersioning", "s3:GetBucketVersioning"),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "s3:PutEncryptionConfiguration",
        "s3:GetEncryptionConfiguration",
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": (
        "s3:PutBucketPublicAccessBlock",
        "s3:GetBucketPublicAccessBlock",
    ),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": (
        "s3:PutBucketOwnershipControls",
        "s3:GetBucketOwnershipControls",
    ),
    # S3's DeleteBucketLifecycle is authorised by s3:PutLifecycleConfiguration.
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": (
        "s3:PutLifecycleConfiguration",
        "s3:GetLifecycleConfiguration",
    ),
    "aws:s3/bucketPolicy:BucketPolicy": ("s3:PutBucketPolicy", "s3:GetBucketPolicy", "s3:DeleteBucketPolicy"),
    # Object Lock on the model bucket; an unprotected stack's destroy empties it past the GOVERNANCE retention.
    "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration": (
        "s3:PutBucketObjectLockConfiguration",
        "s3:GetBucketObjectLockConfiguration",
        "s3:BypassGovernanceRetention",
    ),
    "aws:wafv2/webAcl:WebAcl": (
        "wafv2:CreateWebACL",
        "wafv2:GetWebACL",
        "wafv2:UpdateWebACL",
        "wafv2:DeleteWebACL",
        "wafv2:ListTagsForResource",
        "wafv2:TagResource",
        "wafv2:UntagResource",
    ),
    # The public endpoint's certificate and DNS (infra/network/certificate.py, dns_record.py). The provider reads a
    # certificate's tags and options back after each create and refresh.
    "aws:acm/certificate:Certificate": (
        "acm:RequestCertificate",
        "acm:DescribeCertificate",
        "acm:DeleteCertificate",
        "acm:UpdateCertificateOptions",
        "acm:AddTagsToCertificate",
        "acm:RemoveTagsFromCertificate",
        "acm:ListTagsForCertificate",
    ),
    # Only polls the certificate until ACM has issued it; its delete calls nothing.
    "aws:acm/certificateValidation:CertificateValidation": ("acm:DescribeCertificate",),
    "aws:route53/record:Record": (
        "route53:ChangeResourceRecordSets",
        "route53:GetChange",
        "route53:ListResourceRecordSets",
        "route53:GetHostedZone",
    ),
    "aws:s3/bucketObjectv2:BucketObjectv2": (
        "s3:PutObject",
        "s3:GetObject",
        "s3:GetObjectTagging",
        "s3:PutObjectTagging",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:ListBucket",
        "kms:GenerateDataKey",
        "kms:Decrypt",
    ),
}

# Data sources the program calls, by invoke token.
INVOKE_ACTIONS: dict[str, tuple[str, ...]] = {
    "aws:index/getAvailabilityZones:getAvailabilityZones": ("ec2:DescribeAvailabilityZones",),
    "aws:index/getCallerIdentity:getCallerIdentity": (),  # sts:GetCallerIdentity needs no permission
    "aws:index/getRegion:getRegion": (),
    "aws:index/getPartition:getPartition": (),
    "aws:elb/getServiceAccount:getServiceAccount": (),  # the provider's own table of Regions' ELB accounts
    "aws:ssm/getParameter:getParameter": ("ssm:GetParameter",),
    # Zones that offer the GPU pool's instance types (infra/network/vpc.py).
    "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings": ("ec2:DescribeInstanceTypeOfferings",),
    # The domain's public zone, found by name (infra/network/certificate.py); the data source reads its tags too.
    "aws:route53/getZone:getZone": ("route53:ListHostedZones", "route53:GetHostedZone", "route53:ListTagsForResource"),
    "aws:lb/getHostedZoneId:getHostedZoneId": (),  # the provider's own table of ELB hosted zones per region
    # The add-on build EKS installs by default on the pinned minor (infra/compute/addons/addon_versions.py).
    "aws:eks/getAddonVersion:getAddonVersion": ("eks:DescribeAddonVersions",),
}

# Types that call no AWS API as the deploy role: Pulumi's own providers, random values, and Kubernetes objects, which
# the deploy role writes through its EKS access entry (cluster admin) rather than through IAM.
NO_AWS_ACTIONS = ("pulumi:providers:", "random:", "kubernetes:")


class UncoveredTypeError(LookupError):
    """A resource type or invoke the stacks use that the permission table does not know."""


def actions_for(types: Iterable[str], invokes: Iterable[str] = ()) -> set[str]:
    """Every IAM action the given resource types and invokes need; a type the table lacks is an error."""
    needed: set[str] = set()
    missing: list[str] = []
    for type_token in types:
        if type_token.startswith(NO_AWS_ACTIONS):
            continue
        if type_token not in RESOURCE_ACTIONS:
            missing.append(type_token)
            continue
        needed.update(RESOURCE_ACTIONS[type_token])
    for token in invokes:
        if token not in INVOKE_ACTIONS:
            missing.append(token)
            continue
        needed.update(INVOKE_ACTIONS[token])
    if missing:
        raise UncoveredTypeError(
            "infra/bootstrap/permissions.py: no IAM actions known for " + ", ".join(sorted(set(missing)))
        )
    return needed


def all_stack_actions() -> set[str]:
    return actions_for(RESOURCE_ACTIONS, INVOKE_ACTIONS)


def policy_chars(statements: list[Statement]) -> int:
    """A policy's size as IAM counts it: the JSON without whitespace."""
    return len(json.dumps({"Version": POLICY_VERSION, "Statement": statements}, separators=(",", ":")))


def pack_policies(statements: list[Statement], limit: int = MANAGED_POLICY_MAX_CHARS) -> list[list[Statement]]:
    """Statements packed, in order, into as few managed policies as IAM's size limit allows."""
    packed: list[list[Statement]] = []
    for statement in statements:
        if policy_chars([statement]) > limit:
            raise ValueError(f"statement {statement.get('Sid')} alone is over IAM's {limit} characters")
        if packed and policy_chars([*packed[-1], statement]) <= limit:
            packed[-1].append(statement)
        else:
            packed.append([statement])
    return packed


def document(statements: list[Statement]) -> str:
    return json.dumps({"Version": POLICY_VERSION, "Statement": statements}, separators=(",", ":"))
