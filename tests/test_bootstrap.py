"""The account bootstrap (bootstrap/), run through the same recording engine as the stacks, and the CI roles'
permissions checked against what the three stacks' plans create."""

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.bootstrap.names import (
    DEPLOY_MAX_SESSION_SECONDS,
    DEPLOY_ROLE_NAME,
    MODEL_PUBLISH_ENVIRONMENT,
    PREVIEW_MAX_SESSION_SECONDS,
    PREVIEW_ROLE_NAME,
    RETRAIN_MAX_SESSION_SECONDS,
    RETRAIN_ROLE_NAME,
    secrets_provider_url,
)
from infra.bootstrap.permissions import (
    MANAGED_POLICIES_PER_ROLE,
    MANAGED_POLICY_MAX_CHARS,
    RESOURCE_ACTIONS,
    UncoveredTypeError,
    actions_for,
)
from infra.bootstrap.role_policies import STACK_NAME_PREFIX
from infra.bootstrap.state_backend import BACKEND_META, BACKEND_META_KEY
from infra.cli import main
from infra.preview.engine import StackRun, run_program
from infra.preview.stack_file import read_stack_file
from tests.conftest import COMMITTED_STACKS, REPO_ROOT

BOOTSTRAP_DIR = REPO_ROOT / "bootstrap"
BOOTSTRAP_STACK = "account"
REPOSITORY = "example-org/mlstack"
GITHUB = "token.actions.githubusercontent.com"
# The preview role may decrypt (state secrets) and encrypt (a fresh data key when no encryptedkey is committed: KMS
# returns it to the caller and stores nothing) besides reading.
PREVIEW_NON_READS = {"kms:Decrypt", "kms:Encrypt"}


@pytest.fixture(scope="module")
def bootstrap_run() -> StackRun:
    config, secret_keys = read_stack_file(BOOTSTRAP_DIR, BOOTSTRAP_STACK)
    return run_program(BOOTSTRAP_STACK, config, secret_keys, program_dir=BOOTSTRAP_DIR)


def _one(run: StackRun, type_token: str) -> dict[str, Any]:
    (resource,) = run.of_type(type_token)
    return resource.inputs


def _role(run: StackRun, name: str) -> dict[str, Any]:
    (role,) = [resource for resource in run.of_type("aws:iam/role:Role") if resource.inputs["name"] == name]
    return role.inputs


def _policies(run: StackRun, role_name: str) -> list[dict[str, Any]]:
    """The documents attached to a role, by following its attachments to the policies' ARNs."""
    role = next(r for r in run.of_type("aws:iam/role:Role") if r.inputs["name"] == role_name)
    attached = {
        attachment.inputs["policyArn"]
        for attachment in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if attachment.inputs["role"] == role.outputs["name"]
    }
    return [
        json.loads(policy.inputs["policy"])
        for policy in run.of_type("aws:iam/policy:Policy")
        if policy.outputs["arn"] in attached
    ]


def _allowed(run: StackRun, role_name: str) -> set[str]:
    actions: set[str] = set()
    for policy in _policies(run, role_name):
        for statement in policy["Statement"]:
            if statement["Effect"] == "Allow":
                listed = statement["Action"]
                actions.update([listed] if isinstance(listed, str) else listed)
    return actions


def test_the_bootstrap_previews_under_its_own_project_name(bootstrap_run: StackRun) -> None:
    assert bootstrap_run.project == "mlstack-bootstrap"
    assert all(resource.urn.split("::")[1] == "mlstack-bootstrap" for resource in bootstrap_run.resources)


def test_the_state_bucket_is_versioned_kms_encrypted_tls_only_and_private(bootstrap_run: StackRun) -> None:
    key = bootstrap_run.of_type("aws:kms/key:Key")[0]
    assert key.inputs["enableKeyRotation"] is True
    assert key.protect
    (bucket,) = bootstrap_run.of_type("aws:s3/bucket:Bucket")
    assert bucket.protect
    assert bucket.retain_on_delete
    assert _one(bootstrap_run, "aws:s3/bucketVersioning:BucketVersioning")["versioningConfiguration"] == {
        "status": "Enabled"
    }
    (rule,) = _one(
        bootstrap_run, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )["rules"]
    by_default = rule["applyServerSideEncryptionByDefault"]
    assert by_default["sseAlgorithm"] == "aws:kms"
    assert by_default["kmsMasterKeyId"] == key.outputs["arn"]
    block = _one(bootstrap_run, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(
        block[flag] is True
        for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    (statement,) = json.loads(_one(bootstrap_run, "aws:s3/bucketPolicy:BucketPolicy")["policy"])["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    alias = _one(bootstrap_run, "aws:kms/alias:Alias")
    assert secrets_provider_url("us-east-1") == f"awskms://{alias['name']}?region=us-east-1"


def test_the_backend_metadata_exists_so_a_preview_never_writes(bootstrap_run: StackRun) -> None:
    meta = _one(bootstrap_run, "aws:s3/bucketObjectv2:BucketObjectv2")
    assert meta["key"] == BACKEND_META_KEY == ".pulumi/meta.yaml"
    assert yaml.safe_load(meta["content"]) == {"version": 1} == yaml.safe_load(BACKEND_META)


def test_every_stack_file_names_the_bootstraps_secrets_provider() -> None:
    config, _ = read_stack_file(BOOTSTRAP_DIR, BOOTSTRAP_STACK)
    expected = secrets_provider_url(str(config["aws:region"]))
    for stack in COMMITTED_STACKS:
        document = yaml.safe_load((REPO_ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())
        assert document["secretsprovider"] == expected, stack


def test_github_oidc_provider_trusts_sts_as_the_audience(bootstrap_run: StackRun) -> None:
    provider = _one(bootstrap_run, "aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert provider["url"] == f"https://{GITHUB}"
    assert provider["clientIdLists"] == ["sts.amazonaws.com"]


@pytest.mark.parametrize(
    ("role_name", "subjects", "max_session"),
    [
        (
            DEPLOY_ROLE_NAME,
            [f"repo:{REPOSITORY}:environment:{stack}" for stack in COMMITTED_STACKS],
            DEPLOY_MAX_SESSION_SECONDS,
        ),
        (PREVIEW_ROLE_NAME, [f"repo:{REPOSITORY}:pull_request"], PREVIEW_MAX_SESSION_SECONDS),
        (
            RETRAIN_ROLE_NAME,
            [f"repo:{REPOSITORY}:ref:refs/heads/main", f"repo:{REPOSITORY}:environment:{MODEL_PUBLISH_ENVIRONMENT}"],
            RETRAIN_MAX_SESSION_SECONDS,
        ),
    ],
)
def test_each_role_trusts_only_its_repository_claims(
    bootstrap_run: StackRun, role_name: str, subjects: list[str], max_session: int
) -> None:
    role = _role(bootstrap_run, role_name)
    assert role["maxSessionDuration"] == max_session
    (statement,) = json.loads(role["assumeRolePolicy"])["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    (provider,) = bootstrap_run.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert statement["Principal"] == {"Federated": provider.outputs["arn"]}
    assert statement["Condition"] == {"StringEquals": {f"{GITHUB}:aud": "sts.amazonaws.com", f"{GITHUB}:sub": subjects}}


@pytest.mark.parametrize("role_name", [DEPLOY_ROLE_NAME, PREVIEW_ROLE_NAME, RETRAIN_ROLE_NAME])
def test_policies_fit_iams_limits(bootstrap_run: StackRun, role_name: str) -> None:
    policies = _policies(bootstrap_run, role_name)
    assert 1 <= len(policies) <= MANAGED_POLICIES_PER_ROLE
    for policy in policies:
        assert len(json.dumps(policy, separators=(",", ":"))) <= MANAGED_POLICY_MAX_CHARS


# Types whose create calls no creating API: it only waits (a CertificateValidation polls ACM until the certificate
# is issued; terraform-provider-aws internal/service/acm/certificate_validation.go).
WAITS_ONLY = {"aws:acm/certificateValidation:CertificateValidation"}


def _plan_types_and_invokes(runs: dict[str, StackRun]) -> tuple[set[str], set[str]]:
    types = {resource.type for run in runs.values() for resource in run.resources if resource.custom}
    invokes = {token for run in runs.values() for token, _ in run.invokes}
    return types, invokes


def test_the_deploy_role_allows_what_every_resource_type_in_the_three_plans_needs(
    bootstrap_run: StackRun, committed_runs: dict[str, StackRun]
) -> None:
    types, invokes = _plan_types_and_invokes(committed_runs)
    needed = actions_for(types, invokes)  # raises on a type or invoke the table lacks
    missing = needed - _allowed(bootstrap_run, DEPLOY_ROLE_NAME)
    assert not missing, f"the deploy role lacks {sorted(missing)}"
    # The main create and delete of each AWS type are in its row (a typo'd or missing row cannot pass unnoticed).
    for type_token in types - WAITS_ONLY:
        if type_token.startswith("aws:"):
            verbs = {action.split(":", 1)[1] for action in RESOURCE_ACTIONS[type_token]}
            assert any(
                # Route 53 writes records with Change (ChangeResourceRecordSets), ACM issues with Request.
                verb.startswith(
                    ("Create", "Put", "Associate", "Allocate", "Authorize", "Attach", "Add", "Change", "Request")
                )
                for verb in verbs
            ), type_token


def test_a_type_the_table_does_not_know_fails_the_check() -> None:
    with pytest.raises(UncoveredTypeError, match="aws:sqs/queue:Queue"):
        actions_for({"aws:ec2/vpc:Vpc", "aws:sqs/queue:Queue"})
    with pytest.raises(UncoveredTypeError, match="aws:rds/getInstance:getInstance"):
        actions_for(set(), {"aws:rds/getInstance:getInstance"})
    assert actions_for({"kubernetes:core/v1:Namespace", "random:index/randomPassword:RandomPassword"}) == set()


def test_scoped_statements_cover_the_names_the_stacks_use(committed_runs: dict[str, StackRun]) -> None:
    """The deploy role's S3, ECR and EKS rights stop at `mlstack-*`: every bucket, repository and cluster is there."""
    for run in committed_runs.values():
        for bucket in run.of_type("aws:s3/bucket:Bucket"):
            name = bucket.inputs.get("bucket") or bucket.inputs.get("bucketPrefix")
            assert str(name).startswith(STACK_NAME_PREFIX), bucket.urn
        for repository in run.of_type("aws:ecr/repository:Repository"):
            assert repository.inputs["name"].startswith(STACK_NAME_PREFIX)
        for cluster in run.of_type("aws:eks/cluster:Cluster"):
            assert cluster.inputs["name"].startswith(STACK_NAME_PREFIX)


def test_the_preview_role_only_reads(bootstrap_run: StackRun) -> None:
    allowed = _allowed(bootstrap_run, PREVIEW_ROLE_NAME)
    writes = {
        action for action in allowed if not action.split(":", 1)[1].startswith(("Describe", "Get", "List"))
    } - PREVIEW_NON_READS
    assert not writes, f"the preview role may change something: {sorted(writes)}"
    assert {"s3:GetObject", "s3:ListBucket", "kms:Decrypt", "eks:DescribeCluster"} <= allowed
    objects = [
        statement
        for policy in _policies(bootstrap_run, PREVIEW_ROLE_NAME)
        for statement in policy["Statement"]
        if "s3:GetObject" in statement["Action"]
    ]
    (state_objects,) = objects
    assert str(state_objects["Resource"]).startswith("arn:aws:s3:::mlstack-pulumi-state-"), "no model data"


def test_the_deploy_role_cannot_touch_the_bootstrap(bootstrap_run: StackRun) -> None:
    denies = [
        statement
        for policy in _policies(bootstrap_run, DEPLOY_ROLE_NAME)
        for statement in policy["Statement"]
        if statement["Effect"] == "Deny"
    ]
    denied_resources = " ".join(str(statement["Resource"]) for statement in denies)
    for role_name in (DEPLOY_ROLE_NAME, PREVIEW_ROLE_NAME, RETRAIN_ROLE_NAME):
        assert f":role/{role_name}" in denied_resources
    assert any("s3:PutBucketPolicy" in statement["Action"] for statement in denies)
    assert any("kms:ScheduleKeyDeletion" in statement["Action"] for statement in denies)


def test_eks_stacks_grant_the_ci_roles_through_access_entries(committed_runs: dict[str, StackRun]) -> None:
    for stack in ("staging", "prod"):
        run = committed_runs[stack]
        (cluster,) = run.of_type("aws:eks/cluster:Cluster")
        # No implicit creator entry: it would collide with the deploy role's explicit one.
        assert cluster.inputs["accessConfig"]["bootstrapClusterCreatorAdminPermissions"] is False
        policies = {
            association.inputs["principalArn"].rsplit("/", 1)[-1]: association.inputs["policyArn"]
            for association in run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
        }
        assert policies[DEPLOY_ROLE_NAME] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
        assert policies[PREVIEW_ROLE_NAME] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"
        deployer = next(
            association
            for association in run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
            if association.inputs["principalArn"].endswith(f"/{DEPLOY_ROLE_NAME}")
        )
        (provider,) = run.of_type("pulumi:providers:kubernetes")
        assert deployer.urn in provider.dependencies, "no Kubernetes object before the deploy role may create it"


def test_ci_reaches_every_eks_endpoint_through_iam(committed_runs: dict[str, StackRun]) -> None:
    """GitHub-hosted runners have no fixed range: a public endpoint must admit any address (IAM is the gate)."""
    for stack in ("staging", "prod"):
        (cluster,) = committed_runs[stack].of_type("aws:eks/cluster:Cluster")
        vpc_config = cluster.inputs["vpcConfig"]
        assert vpc_config["endpointPublicAccess"] is True
        assert "0.0.0.0/0" in vpc_config["publicAccessCidrs"], stack


def test_mlstack_previews_the_bootstrap_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    assert main(["preview", BOOTSTRAP_STACK, "--project", "bootstrap", "--out", str(tmp_path)]) == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["project"] == "mlstack-bootstrap"
    assert plan["outputs"]["secretsProvider"] == "awskms://alias/mlstack-pulumi?region=us-east-1"
    assert plan["outputs"]["stateBackendUrl"] == "s3://[unknown]?region=us-east-1"
    out = capsys.readouterr().out
    # The deploy role creates what the stacks create, so some of its writes are on "*": advisory findings a
    # reviewer sees; no mandatory rule fails.
    assert re.search(r"Policy: \d+ rules ran", out)
    assert "[mandatory]" not in out


def test_an_unknown_project_is_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    assert main(["preview", BOOTSTRAP_STACK, "--project", "service"]) == 2
    assert capsys.readouterr().err == (
        "error: service/: not a Pulumi project of this repository (no Pulumi.yaml and __main__.py)\n"
    )


def test_a_bootstrap_without_its_repository_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "bootstrap"
    (project / "stacks").mkdir(parents=True)
    for name in ("Pulumi.yaml", "__main__.py"):
        (project / name).write_text((BOOTSTRAP_DIR / name).read_text())
    (tmp_path / "Pulumi.yaml").write_text((REPO_ROOT / "Pulumi.yaml").read_text())
    committed = (BOOTSTRAP_DIR / "stacks" / "Pulumi.account.yaml").read_text()
    (project / "stacks" / "Pulumi.account.yaml").write_text(
        "\n".join(line for line in committed.splitlines() if "githubRepository" not in line)
    )
    monkeypatch.chdir(tmp_path)
    assert main(["preview", BOOTSTRAP_STACK, "--project", "bootstrap", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith(
        "error: bootstrap/stacks/Pulumi.account.yaml: mlstack-bootstrap:githubRepository must be OWNER/NAME"
    )


def _allows(run: StackRun, role_name: str, action: str, resource_arn: str) -> bool:
    """Whether an Allow statement of the role names the action on a Resource pattern matching the ARN."""
    for policy in _policies(run, role_name):
        for statement in policy["Statement"]:
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            resources = [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
            matches = any(fnmatch.fnmatchcase(resource_arn, pattern) for pattern in resources)
            if statement["Effect"] == "Allow" and action in actions and matches:
                return True
    return False


def test_the_deploy_roles_scoped_rights_reach_the_stacks_own_resources(
    bootstrap_run: StackRun, committed_runs: dict[str, StackRun]
) -> None:
    account = "123456789012"
    for run in committed_runs.values():
        region = "us-west-2" if run.stack == "staging" else "us-east-1"
        for repository in run.of_type("aws:ecr/repository:Repository"):
            arn = f"arn:aws:ecr:{region}:{account}:repository/{repository.inputs['name']}"
            assert _allows(bootstrap_run, DEPLOY_ROLE_NAME, "ecr:CreateRepository", arn)
            assert _allows(bootstrap_run, DEPLOY_ROLE_NAME, "ecr:PutImage", arn)
            assert not _allows(bootstrap_run, DEPLOY_ROLE_NAME, "ecr:PutImage", arn.replace("mlstack-", "other-"))
        for bucket in run.of_type("aws:s3/bucket:Bucket"):
            arn = f"arn:aws:s3:::{bucket.inputs['bucketPrefix']}abc123"
            assert _allows(bootstrap_run, DEPLOY_ROLE_NAME, "s3:CreateBucket", arn)
            assert _allows(bootstrap_run, DEPLOY_ROLE_NAME, "s3:PutBucketPolicy", arn)
        for cluster in run.of_type("aws:eks/cluster:Cluster"):
            name = cluster.inputs["name"]
            for arn in (
                f"arn:aws:eks:{region}:{account}:cluster/{name}",
                f"arn:aws:eks:{region}:{account}:nodegroup/{name}/pools-cpu/0a1b",
                f"arn:aws:eks:{region}:{account}:access-entry/{name}/role/{account}/mlstack-deploy/0a1b",
            ):
                assert _allows(bootstrap_run, DEPLOY_ROLE_NAME, "eks:TagResource", arn), arn
            assert _allows(
                bootstrap_run, DEPLOY_ROLE_NAME, "eks:CreateCluster", f"arn:aws:eks:{region}:{account}:cluster/{name}"
            )
