"""The account bootstrap: run once per AWS account, by an administrator, before any stack (README "Running it for
real"). It creates what the workflows need: the state bucket and secrets key, GitHub's OIDC provider, and the
deploy, preview and retrain roles with their generated policies."""

import pulumi
import pulumi_aws as aws

from infra.bootstrap.ci_roles import CiRoles
from infra.bootstrap.config import load_bootstrap_config
from infra.bootstrap.github_oidc import GithubOidcProvider
from infra.bootstrap.names import DEPLOY_ROLE_NAME, PREVIEW_ROLE_NAME, RETRAIN_ROLE_NAME, secrets_provider_url
from infra.bootstrap.role_policies import Account
from infra.bootstrap.state_backend import StateBackend

config = load_bootstrap_config()
caller = aws.get_caller_identity_output()
partition = aws.get_partition_output()
backend = StateBackend("state")
github = GithubOidcProvider("github")
account = pulumi.Output.all(caller.account_id, partition.partition, backend.bucket_name, backend.key_arn).apply(
    lambda values: Account(values[0], values[1], config.region, values[2], values[3])
)
roles = CiRoles(
    "ci",
    oidc_provider_arn=github.arn,
    account=account,
    repository=config.repository,
    environments=config.environments,
    branch=config.branch,
    retrain_data_bucket=config.retrain_data_bucket,
)

# What the README's next steps and the GitHub variables take.
# The region travels with the URL: CI's credentials carry each stack's region (staging's differs), and S3 answers a
# request for a bucket of another region with a redirect rather than the object.
pulumi.export("stateBackendUrl", pulumi.Output.concat("s3://", backend.bucket_name, f"?region={config.region}"))
pulumi.export("secretsProvider", secrets_provider_url(config.region))
pulumi.export("deployRoleArn", roles.arns[DEPLOY_ROLE_NAME])
pulumi.export("previewRoleArn", roles.arns[PREVIEW_ROLE_NAME])
pulumi.export("retrainRoleArn", roles.arns[RETRAIN_ROLE_NAME])
pulumi.export("oidcProviderArn", github.arn)
