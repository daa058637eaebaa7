"""Names the bootstrap creates and the stacks and workflows rely on: one definition for all of them."""

# The roles GitHub Actions assumes through OIDC. The stacks grant the first two access to their EKS clusters by
# these names (infra/compute/eks_cluster.py), so renaming one here renames it everywhere.
DEPLOY_ROLE_NAME = "mlstack-deploy"
PREVIEW_ROLE_NAME = "mlstack-preview"
RETRAIN_ROLE_NAME = "mlstack-retrain"

# The GitHub environment (with required reviewers) whose jobs may publish a model version to prod's bucket
# (.github/workflows/retrain.yml publish-prod); the retrain role trusts it.
MODEL_PUBLISH_ENVIRONMENT = "models-prod"

# The KMS key behind the state bucket and the stacks' Pulumi secrets (`secretsprovider:` in stacks/*.yaml).
SECRETS_KEY_ALIAS = "alias/mlstack-pulumi"

# Session lengths, in seconds. The deploy job's timeout fits inside its session (a first EKS create, its node pools
# and add-ons, a rollout's analysis and a failed create's cleanup run well past the one-hour default); the workflow
# tests hold each job's `role-duration-seconds` to these maxima.
DEPLOY_MAX_SESSION_SECONDS = 3 * 3600
PREVIEW_MAX_SESSION_SECONDS = 3600
RETRAIN_MAX_SESSION_SECONDS = 2 * 3600

# GitHub's OIDC issuer and the audience configure-aws-credentials asks for.
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
GITHUB_OIDC_AUDIENCE = "sts.amazonaws.com"


def secrets_provider_url(region: str) -> str:
    """The awskms secrets provider URL for the bootstrap's key; the region travels with it (staging lives elsewhere)."""
    return f"awskms://{SECRETS_KEY_ALIAS}?region={region}"


def role_arn(account_id: str, role_name: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account_id}:role/{role_name}"
