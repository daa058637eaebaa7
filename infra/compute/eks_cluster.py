"""The EKS control plane: API authentication with access entries, KMS envelope encryption, logs, endpoints.

Who may call the API: the bootstrap's deploy role (cluster admin: `pulumi up` from CI creates the cluster and
everything in it), its preview role (view only: `pulumi preview` on pull requests), and
`compute.eks.adminPrincipalArns`.
Their ARNs come from the account the stack deploys into and the role names in infra/bootstrap/names.py. The endpoint
stays public and IAM is the gate: GitHub-hosted runners have no fixed address range (README "CI/CD").
"""

import json

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.bootstrap.names import DEPLOY_ROLE_NAME, PREVIEW_ROLE_NAME, role_arn
from infra.config import Environment
from infra.network.vpc import Network
from infra.security.iam import attach_managed_policies, trust_policy
from infra.security.kms import EncryptionKeys

CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
# Access levels below cluster admin (AWS EKS User Guide, access-policy-reference.adoc, awsdocs/amazon-eks-user-guide
# at 4d52b4d0): AmazonEKSAdminPolicy is "most permissions", typically scoped to namespaces.
ACCESS_POLICIES = {
    "view": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy",
    "edit": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy",
    "admin": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy",
}
# Read-only access to most objects, Secrets excepted (EKS User Guide, "Access policy permissions").
VIEW_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"


def kubeconfig(cluster_name: str, endpoint: str, certificate_authority: str, region: str) -> str:
    """A kubeconfig that authenticates through `aws eks get-token` with the caller's AWS credentials."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster_name,
                    "cluster": {"server": endpoint, "certificate-authority-data": certificate_authority},
                }
            ],
            "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
            "current-context": cluster_name,
            "users": [
                {
                    "name": cluster_name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": [
                                "eks",
                                "get-token",
                                "--cluster-name",
                                cluster_name,
                                "--region",
                                region,
                                "--output",
                                "json",
                            ],
                            "interactiveMode": "Never",
                        }
                    },
                }
            ],
        }
    )


class EksCluster(pulumi.ComponentResource):
    """The cluster, its role and log group, admin access entries, and a Kubernetes provider for it."""

    name: pulumi.Output[str]
    cluster_security_group_id: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    cluster: aws.eks.Cluster

    def __init__(
        self,
        name: str,
        env: Environment,
        network: Network,
        keys: EncryptionKeys,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:compute:EksCluster", name, None, opts)
        self._name = name
        self._env = env
        if env.config.compute.eks is None or keys.cluster is None:
            raise ValueError("an EKS cluster needs compute.eks settings and a cluster key")
        self._settings = env.config.compute.eks
        self._child = pulumi.ResourceOptions(parent=self)

        role = self._create_cluster_role()
        log_group = self._create_log_group()
        self.cluster = self._create_cluster(role, log_group, network, keys.cluster)
        self._grant_admins()
        self._grant_access_entries()
        deployer_access = self._grant_ci_roles()
        self.name = self.cluster.name
        self.cluster_security_group_id = self.cluster.vpc_config.cluster_security_group_id
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(self.cluster.name, self.cluster.endpoint, self.cluster.certificate_authority.data).apply(
                lambda values: kubeconfig(values[0], values[1], values[2], env.region)
            )
        )
        # Every Kubernetes object waits until the deploy role may create it.
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[deployer_access]),
        )
        self.register_outputs({"clusterName": self.name})

    def _create_cluster_role(self) -> aws.iam.Role:
        """The control plane's role: the one managed policy EKS requires."""
        role = aws.iam.Role(
            f"{self._name}-role", assume_role_policy=trust_policy("eks.amazonaws.com"), opts=self._child
        )
        attach_managed_policies(self._name, role, ("AmazonEKSClusterPolicy",), self._child)
        return role

    def _create_log_group(self) -> aws.cloudwatch.LogGroup:
        """Created before the cluster, so the control-plane logs land under our retention, not forever."""
        assert self._settings is not None
        return aws.cloudwatch.LogGroup(
            f"{self._name}-control-plane-logs",
            name=f"/aws/eks/{self._env.cluster_name}/cluster",
            retention_in_days=self._settings.log_retention_days,
            opts=self._child,
        )

    def _create_cluster(
        self, role: aws.iam.Role, log_group: aws.cloudwatch.LogGroup, network: Network, key: aws.kms.Key
    ) -> aws.eks.Cluster:
        settings = self._settings
        assert settings is not None
        protect = self._env.config.protect
        return aws.eks.Cluster(
            f"{self._name}-cluster",
            name=self._env.cluster_name,
            version=settings.version,
            role_arn=role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=network.private_subnet_ids,
                endpoint_public_access=settings.endpoint_public_access,
                endpoint_private_access=settings.endpoint_private_access,
                public_access_cidrs=[str(cidr) for cidr in settings.public_access_cidrs]
                if settings.endpoint_public_access
                else None,
            ),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                # No hidden creator entry: the deploy role's access is the explicit entry below, so a cluster created
                # by CI and one created from a laptop grant the same principals (an implicit entry for the same
                # role would also make the explicit one fail with "already exists").
                bootstrap_cluster_creator_admin_permissions=False,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=key.arn), resources=["secrets"]
            ),
            enabled_cluster_log_types=list(settings.log_types),
            # Standard support only: extended support costs six times as much per cluster-hour.
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type="STANDARD"),
            deletion_protection=protect,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group], protect=protect),
        )

    def _grant_admins(self) -> None:
        """An access entry with the cluster-admin policy for each admin principal from config."""
        assert self._settings is not None
        for index, principal in enumerate(self._settings.admin_principal_arns):
            entry = aws.eks.AccessEntry(
                f"{self._name}-admin-{index + 1}",
                cluster_name=self.cluster.name,
                principal_arn=principal,
                type="STANDARD",
                opts=self._child,
            )
            aws.eks.AccessPolicyAssociation(
                f"{self._name}-admin-{index + 1}-policy",
                cluster_name=self.cluster.name,
                principal_arn=entry.principal_arn,
                policy_arn=CLUSTER_ADMIN_POLICY,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=self._child,
            )

    def _grant_access_entries(self) -> None:
        """`eks.accessEntries`: view, edit or admin access, cluster-wide or in the named namespaces only."""
        assert self._settings is not None
        for index, grant in enumerate(self._settings.access_entries):
            entry = aws.eks.AccessEntry(
                f"{self._name}-access-{index + 1}",
                cluster_name=self.cluster.name,
                principal_arn=grant.principal_arn,
                type="STANDARD",
                opts=self._child,
            )
            scope = (
                aws.eks.AccessPolicyAssociationAccessScopeArgs(type="namespace", namespaces=list(grant.namespaces))
                if grant.namespaces
                else aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster")
            )
            aws.eks.AccessPolicyAssociation(
                f"{self._name}-access-{index + 1}-policy",
                cluster_name=self.cluster.name,
                principal_arn=entry.principal_arn,
                policy_arn=ACCESS_POLICIES[grant.level],
                access_scope=scope,
                opts=self._child,
            )

    def _grant_ci_roles(self) -> aws.eks.AccessPolicyAssociation:
        """The deploy role as cluster admin and the preview role as viewer; returns the deploy role's association."""
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self))
        associations = {}
        for short_name, role_name, policy in (
            ("deployer", DEPLOY_ROLE_NAME, CLUSTER_ADMIN_POLICY),
            ("previewer", PREVIEW_ROLE_NAME, VIEW_POLICY),
        ):
            entry = aws.eks.AccessEntry(
                f"{self._name}-{short_name}",
                cluster_name=self.cluster.name,
                principal_arn=pulumi.Output.all(account.account_id, partition.partition, role_name).apply(
                    lambda values: role_arn(values[0], values[2], values[1])
                ),
                type="STANDARD",
                opts=self._child,
            )
            associations[short_name] = aws.eks.AccessPolicyAssociation(
                f"{self._name}-{short_name}-policy",
                cluster_name=self.cluster.name,
                principal_arn=entry.principal_arn,
                policy_arn=policy,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=self._child,
            )
        return associations["deployer"]
