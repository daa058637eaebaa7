"""GitHub Actions' OIDC identity provider: the only way CI gets AWS credentials (no stored keys)."""

import pulumi
import pulumi_aws as aws

from infra.bootstrap.names import GITHUB_OIDC_AUDIENCE, GITHUB_OIDC_HOST


class GithubOidcProvider(pulumi.ComponentResource):
    """One per account. No thumbprints: IAM validates GitHub's issuer against its own trusted CAs."""

    arn: pulumi.Output[str]

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlstack:bootstrap:GithubOidcProvider", name, None, opts)
        provider = aws.iam.OpenIdConnectProvider(
            f"{name}-provider",
            url=f"https://{GITHUB_OIDC_HOST}",
            client_id_lists=[GITHUB_OIDC_AUDIENCE],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.arn = provider.arn
        self.register_outputs({"arn": self.arn})
