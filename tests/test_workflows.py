"""The GitHub Actions workflows keep the promises the README makes about them (actionlint and zizmor, which
`make test` also runs, check syntax and security; these check the pipeline's shape)."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.bootstrap.names import (
    DEPLOY_MAX_SESSION_SECONDS,
    MODEL_PUBLISH_ENVIRONMENT,
    PREVIEW_MAX_SESSION_SECONDS,
    RETRAIN_MAX_SESSION_SECONDS,
)
from infra.config.models import RetrainConfig
from tests.conftest import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
WORKFLOW_PATHS = sorted(WORKFLOWS.glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
PINNED_LINE = re.compile(r"uses:\s*(?P<uses>[\w.-]+/[\w./-]+@\S+)(?P<comment>.*)$")
RELEASE_COMMENT = re.compile(r"^\s*# v\d+\.\d+\.\d+$")
# The role variable each workflow assumes, and the longest session its role allows (bootstrap/, names.py).
ROLE_MAX_SESSION = {
    "${{ vars.DEPLOY_ROLE_ARN }}": DEPLOY_MAX_SESSION_SECONDS,
    "${{ vars.PREVIEW_ROLE_ARN }}": PREVIEW_MAX_SESSION_SECONDS,
    "${{ vars.RETRAIN_ROLE_ARN }}": RETRAIN_MAX_SESSION_SECONDS,
}
DEFAULT_SESSION_SECONDS = 3600
SAME_REPOSITORY = "github.event.pull_request.head.repo.full_name == github.repository"


def _load(name: str) -> dict[str, Any]:
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # PyYAML reads the bare key `on` as True.
    document["on"] = document.pop(True, document.get("on"))
    return document


def _jobs(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return list(workflow["jobs"].values())


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in _jobs(workflow) for step in job.get("steps", [])]


def _step(job: dict[str, Any], name: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [step for step in job["steps"] if step.get("name") == name]
    assert len(steps) == 1, f"{len(steps)} steps named {name!r}"
    return steps[0]


def _uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if step.get("uses", "").startswith(f"{action}@")]


def _scripts(workflow: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in _steps(workflow))


def _pinned_pulumi_sdk() -> str:
    pins = dict(
        line.split("==", 1)
        for line in (REPO_ROOT / "requirements" / "dev.txt").read_text().splitlines()
        if "==" in line
    )
    return pins["pulumi"]


@pytest.mark.parametrize("path", WORKFLOW_PATHS, ids=lambda path: path.name)
def test_actions_are_pinned_to_release_commits_and_scripts_take_no_expressions(path: Path) -> None:
    workflow = _load(path.name)
    assert workflow.get("permissions") == {} or workflow.get("permissions") == {"contents": "read"}
    for step in _steps(workflow):
        uses = step.get("uses", "")
        if uses and not uses.startswith("./"):
            assert PINNED.match(uses), f"{path.name}: {uses} is not pinned to a commit"
        assert "${{" not in step.get("run", ""), f"{path.name}: an expression inside a script: {step.get('name')}"
    for line in path.read_text().splitlines():
        match = PINNED_LINE.search(line)
        if match and not match["uses"].startswith("./"):
            assert RELEASE_COMMENT.match(match["comment"]), f"{path.name}: {match['uses']} names no release (# vX.Y.Z)"


@pytest.mark.parametrize("path", WORKFLOW_PATHS, ids=lambda path: path.name)
def test_every_script_with_a_pipe_runs_with_pipefail(path: Path) -> None:
    """GitHub runs `bash -e` by default (no pipefail); an explicit `shell: bash` is `bash -eo pipefail`."""
    workflow = _load(path.name)
    workflow_shell = workflow.get("defaults", {}).get("run", {}).get("shell")
    for job in _jobs(workflow):
        job_shell = job.get("defaults", {}).get("run", {}).get("shell", workflow_shell)
        for step in job.get("steps", []):
            script = step.get("run", "")
            if not re.search(r"(?<![|])\|(?![|])", script):
                continue
            shell = step.get("shell", job_shell)
            assert shell == "bash" or "set -o pipefail" in script, (
                f"{path.name}: {step.get('name')} pipes without pipefail"
            )


def test_retrain_never_opens_a_pull_request_after_a_failed_edit() -> None:
    retrain = _load("retrain.yml")
    job = retrain["jobs"]["retrain"]
    edit = _step(job, "Open the pull request")["run"]
    assert "set -o pipefail" in edit.split("mlstack model-version")[0], "pipefail before the piped edit"
    assert edit.index("mlstack model-version") < edit.index("gh pr create")


def test_only_a_reviewed_environment_publishes_a_model_to_prod() -> None:
    retrain = _load("retrain.yml")
    train = retrain["jobs"]["retrain"]
    assert "environment" not in train
    assert "PROD_MODEL_PUBLISH_URI" not in json.dumps(train)
    prod = retrain["jobs"]["publish-prod"]
    assert prod["environment"] == MODEL_PUBLISH_ENVIRONMENT
    assert prod["needs"] == "retrain"
    assert "mlstack_service.publish" in _step(prod, "Publish the reviewed version to prod")["run"]


def test_deploys_run_the_policy_pack() -> None:
    deploy = _load("deploy-stack.yml")
    ups = [step["run"] for job in _jobs(deploy) for step in job["steps"] if "pulumi up" in step.get("run", "")]
    assert len(ups) == 3  # the EKS registry closure, the dev host, the EKS apply
    for run in ups:
        assert "--policy-pack infra/policy" in run, run


def test_the_four_pipelines_exist() -> None:
    assert {path.name for path in WORKFLOW_PATHS} >= {"ci.yml", "preview.yml", "deploy.yml", "retrain.yml"}


def test_ci_runs_the_test_command_the_bootstrap_preview_and_keeps_every_stacks_plan() -> None:
    ci = _load("ci.yml")
    runs = [step.get("run") for step in ci["jobs"]["test"]["steps"]]
    assert "make test" in runs
    assert "make preview-bootstrap" in runs
    preview = ci["jobs"]["preview"]
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "staging", "prod"]
    (upload,) = _uses(preview, "actions/upload-artifact")
    assert upload["with"]["path"] == "build/${{ matrix.stack }}/"


def test_deploy_runs_one_at_a_time_in_push_order_dev_staging_prod() -> None:
    deploy = _load("deploy.yml")
    jobs = deploy["jobs"]
    assert deploy["on"] == {"push": {"branches": ["main"]}}
    # Workflow-level: a newer push waits for the run in progress, which is never cancelled.
    assert deploy["concurrency"]["cancel-in-progress"] is False
    assert "${{" not in deploy["concurrency"]["group"], "one group for every run, not one per commit"
    assert "needs" not in jobs["dev"]
    assert (jobs["staging"]["needs"], jobs["prod"]["needs"]) == ("dev", "staging")
    assert [jobs[name]["with"]["stack"] for name in ("dev", "staging", "prod")] == ["dev", "staging", "prod"]
    assert all(job["uses"] == "./.github/workflows/deploy-stack.yml" for job in jobs.values())
    assert "secrets" not in jobs["prod"], "no repository-wide token travels into a deploy"
    apply = _load("deploy-stack.yml")["jobs"]["apply"]
    assert apply["concurrency"] == {"group": "deploy-${{ inputs.stack }}", "cancel-in-progress": False}


def test_each_deploy_runs_in_its_stacks_environment_the_only_place_the_deploy_role_trusts() -> None:
    from infra.bootstrap.role_policies import deploy_subjects  # noqa: PLC0415

    apply = _load("deploy-stack.yml")["jobs"]["apply"]
    assert apply["environment"] == "${{ inputs.stack }}", "prod's approval lives on its GitHub environment"
    assert apply["permissions"] == {"contents": "read", "id-token": "write"}
    assert all(":environment:" in subject for subject in deploy_subjects("o/r", ["dev", "staging", "prod"]))
    for path in WORKFLOW_PATHS:
        workflow = _load(path.name)
        if "pull_request" in workflow["on"]:
            text = path.read_text()
            assert "DEPLOY_ROLE_ARN" not in text, f"{path.name}: pull-request code must never reach the deploy role"
            assert "secrets." not in text.replace("secrets.GITHUB_TOKEN", ""), f"{path.name}: no stored secrets"


def test_deploy_creates_the_stack_on_first_use_with_the_kms_secrets_provider() -> None:
    apply = _load("deploy-stack.yml")["jobs"]["apply"]
    select = _step(apply, "Log in to the state bucket; create the stack on first use")
    assert 'pulumi stack select --create --secrets-provider "$SECRETS_PROVIDER" "$STACK"' in select["run"]
    assert select["env"]["SECRETS_PROVIDER"] == "${{ steps.settings.outputs.secrets_provider }}"


def test_the_pulumi_cli_is_the_version_of_the_pinned_sdk() -> None:
    for path in WORKFLOW_PATHS:
        for job in _jobs(_load(path.name)):
            for step in _uses(job, "pulumi/actions") if "steps" in job else []:
                assert step["with"]["pulumi-version"] == _pinned_pulumi_sdk(), f"{path.name}: {step.get('name')}"
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    # uv would re-resolve pyproject.toml at every `pulumi up`; the pip toolchain runs the venv of the pinned list.
    assert project["runtime"]["options"] == {"toolchain": "pip", "virtualenv": ".venv"}


@pytest.mark.parametrize("path", WORKFLOW_PATHS, ids=lambda path: path.name)
def test_role_sessions_outlast_their_jobs_and_fit_the_roles_maximum(path: Path) -> None:
    for job in _jobs(_load(path.name)):
        for step in _uses(job, "aws-actions/configure-aws-credentials") if "steps" in job else []:
            role = step["with"]["role-to-assume"]
            duration = int(step["with"].get("role-duration-seconds", DEFAULT_SESSION_SECONDS))
            assert duration <= ROLE_MAX_SESSION[role], f"{path.name}: {role} allows {ROLE_MAX_SESSION[role]} s"
            assert job["timeout-minutes"] * 60 <= duration, f"{path.name}: the job outlives its credentials"


def test_no_deploy_targets_by_hand_or_writes_a_stack_file() -> None:
    apply = _load("deploy-stack.yml")["jobs"]["apply"]
    scripts = _scripts(_load("deploy-stack.yml")) + _scripts(_load("deploy.yml"))
    for forbidden in ("mlstack image-tag", "mlstack model-version", "pulumi config set", "stacks/", "docker save"):
        assert forbidden not in scripts, forbidden
    targeted = [step for step in apply["steps"] if re.search(r"--target(?!s-file)", step.get("run", ""))]
    assert [step["name"] for step in targeted] == [
        "Create the image repository on the first deploy (its dependency closure only)"
    ]
    (script,) = [step["run"] for step in targeted]
    # Only URNs from the closure mlstack computed (tests/test_deploy_settings.py), never one written here.
    assert "urn:pulumi" not in script
    assert "done < build/registry-targets.txt" in script
    settings = _step(apply, "Read the stack's settings from its stack file")["run"]
    assert "--targets-file build/registry-targets.txt" in settings
    assert not any(step.get("uses", "").startswith("actions/download-artifact@") for step in apply["steps"])


def test_the_dev_hosts_first_deploy_needs_no_target_and_eks_applies_after_its_images() -> None:
    apply = _load("deploy-stack.yml")["jobs"]["apply"]
    names = [step.get("name", step.get("uses", "")) for step in apply["steps"]]
    on_ec2 = "steps.settings.outputs.compute_mode == 'ec2'"
    on_eks = "steps.settings.outputs.compute_mode == 'eks'"
    targeted = _step(apply, "Create the image repository on the first deploy (its dependency closure only)")
    assert targeted["if"] == on_eks
    host_first = _step(apply, "Apply the dev host before its images")
    assert host_first["if"] == on_ec2
    assert "--target" not in host_first["run"]
    assert "pulumi up" in host_first["run"]
    assert _step(apply, "Apply")["if"] == on_eks
    # Each stack is applied exactly once: dev before its images are built, EKS stacks after.
    assert names.index("Apply the dev host before its images") < names.index(
        "Log in to the stack's registry; find what this commit still has to push"
    )
    assert names.index("Build and push the GPU image") < names.index("Apply")
    ups = [step for step in apply["steps"] if "pulumi up" in step.get("run", "")]
    assert sorted(step["if"] for step in ups) == sorted([on_eks, on_ec2, on_eks])


def test_images_are_built_once_per_commit_into_each_stacks_registry_with_a_layer_cache() -> None:
    apply = _load("deploy-stack.yml")["jobs"]["apply"]
    builds = _uses(apply, "docker/build-push-action")
    assert [step["with"]["tags"] for step in builds] == [
        "${{ steps.images.outputs.image }}:${{ github.sha }}",
        "${{ steps.images.outputs.image }}:${{ github.sha }}-gpu",
    ]
    for step, variant in zip(builds, ("cpu", "gpu"), strict=True):
        assert step["with"]["push"] is True
        assert f"VARIANT={variant}" in step["with"]["build-args"]
        assert "MLSTACK_BUILD_COMMIT=${{ github.sha }}" in step["with"]["build-args"]
        assert step["with"]["cache-from"].startswith("type=gha")
        # A re-run finds its immutable tag pushed and goes on.
        assert step["if"] == f"steps.images.outputs.{variant}-pushed != 'true'"
    assert _uses(apply, "docker/setup-buildx-action")
    login = _step(apply, "Log in to the stack's registry; find what this commit still has to push")
    assert login["env"]["REGION"] == "${{ steps.settings.outputs.region }}"
    assert 'aws ecr get-login-password --region "$REGION"' in login["run"]
    (credentials,) = _uses(apply, "aws-actions/configure-aws-credentials")
    assert credentials["with"]["aws-region"] == "${{ steps.settings.outputs.region }}", "each stack's own region"


def test_the_smoke_test_checks_commit_and_model_after_the_rollout_from_an_admitted_runner() -> None:
    apply = _load("deploy-stack.yml")["jobs"]["apply"]
    names = [step.get("name", step.get("uses", "")) for step in apply["steps"]]
    order = [
        names.index(name)
        for name in (
            "Build and push the GPU image",
            "Apply",
            "Wait for the dev host's instance refresh to finish",
            "Wait for the Argo Rollout to be Healthy",
            "Admit this runner to the stack's load balancers",
            "Smoke test the commit and the model the stack serves",
            "Remove this runner from the stack's load balancers",
        )
    ]
    assert order == sorted(order)
    assert "describe-instance-refreshes" in _step(apply, "Wait for the dev host's instance refresh to finish")["run"]
    assert "mlstack release status" in _step(apply, "Wait for the Argo Rollout to be Healthy")["run"]
    smoke = _step(apply, "Smoke test the commit and the model the stack serves")
    assert "/v2\" | jq -r '.build.commit'" in smoke["run"]
    assert '[ "$served" = "$GITHUB_SHA" ]' in smoke["run"]
    # The model check uses a route that needs no API key and answers only for the served version.
    assert 'ready="${url}/v2/models/${MODEL_NAME}/versions/${MODEL_VERSION}/ready"' in smoke["run"]
    assert smoke["env"]["MODEL_VERSION"] == "${{ steps.settings.outputs.model_version }}"
    cleanup = _step(apply, "Remove this runner from the stack's load balancers")
    assert cleanup["if"].startswith("always()")
    assert "revoke-security-group-ingress" in cleanup["run"]
    assert "authorize-security-group-ingress" in _step(apply, "Admit this runner to the stack's load balancers")["run"]


def test_preview_comments_on_every_pull_request_it_can_and_summarises_for_forks() -> None:
    preview = _load("preview.yml")
    assert list(preview["on"]) == ["pull_request"]
    offline = preview["jobs"]["offline"]
    script = _step(offline, "Preview every stack, before and after")["run"]
    assert "mlstack preview" in script
    # A stack whose preview failed has no plan: its error goes into the comment, diff never sees a missing file.
    assert script.index('if [ ! -f "build/$stack/plan.json" ]') < script.index("mlstack diff")
    assert "grep '^error:'" in script
    summary = _step(offline, "Job summary (every pull request, forks included)")
    assert "if" not in summary
    assert "$GITHUB_STEP_SUMMARY" in summary["run"]
    assert _step(offline, "Comment on the pull request")["if"] == SAME_REPOSITORY
    live = preview["jobs"]["live"]
    assert live["if"] == SAME_REPOSITORY, "forks get no OIDC token"
    (credentials,) = _uses(live, "aws-actions/configure-aws-credentials")
    assert credentials["with"]["role-to-assume"] == "${{ vars.PREVIEW_ROLE_ARN }}"
    run = _step(live, "pulumi preview with the policy pack")["run"]
    assert "--policy-pack infra/policy" in run
    assert "|| status=$?" in run, "a failed preview still reaches the comment"
    comment = _step(live, "Comment on the pull request (one comment per stack, kept up to date)")
    assert comment["if"] == "always()"


def test_retrain_listens_for_the_relays_event_and_opens_a_pull_request() -> None:
    retrain = _load("retrain.yml")
    # Only workflow_dispatch: the relay's token needs Actions: write, not the Contents: write (push) that
    # repository_dispatch asks for; the workflow the stack config names is this file.
    assert set(retrain["on"]) == {"workflow_dispatch"}
    assert RetrainConfig().workflow == "retrain.yml"
    assert set(retrain["on"]["workflow_dispatch"]["inputs"]) == {"model_name", "reason", "alerts"}
    # Prod's bucket is written only by a job of the reviewed environment.
    assert retrain["jobs"]["publish-prod"]["environment"] == "models-prod"
    assert "environment" not in retrain["jobs"]["retrain"]
    scripts = _scripts(retrain)
    assert "mlstack_service.train" in scripts
    assert "--publish" in scripts
    assert "mlstack model-version" in scripts
    assert "gh pr create" in scripts
