"""The GitHub Actions workflows keep the promises the README makes about them (actionlint and zizmor, which
`make test` also runs, check syntax and security; these check the pipeline's shape)."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config.models import RetrainConfig
from tests.conftest import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def _load(name: str) -> dict[str, Any]:
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # PyYAML reads the bare key `on` as True.
    document["on"] = document.pop(True, document.get("on"))
    return document


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda path: path.name)
def test_actions_are_pinned_to_commits_and_scripts_take_no_expressions(path: Path) -> None:
    workflow = _load(path.name)
    assert workflow.get("permissions") == {} or workflow.get("permissions") == {"contents": "read"}
    for step in _steps(workflow):
        uses = step.get("uses", "")
        if uses and not uses.startswith("./"):
            assert PINNED.match(uses), f"{path.name}: {uses} is not pinned to a commit"
        assert "${{" not in step.get("run", ""), f"{path.name}: an expression inside a script: {step.get('name')}"


def test_the_four_pipelines_exist() -> None:
    assert {path.name for path in WORKFLOWS.glob("*.yml")} >= {"ci.yml", "preview.yml", "deploy.yml", "retrain.yml"}


def test_ci_runs_the_test_command_and_keeps_every_stacks_plan() -> None:
    ci = _load("ci.yml")
    assert any(step.get("run") == "make test" for step in ci["jobs"]["test"]["steps"])
    preview = ci["jobs"]["preview"]
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "staging", "prod"]
    (upload,) = [step for step in preview["steps"] if step.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["with"]["path"] == "build/${{ matrix.stack }}/"


def test_preview_comments_the_cost_diff_and_runs_the_policy_pack() -> None:
    preview = _load("preview.yml")
    assert list(preview["on"]) == ["pull_request"]
    offline = "\n".join(step.get("run", "") for step in preview["jobs"]["offline"]["steps"])
    assert "mlstack diff" in offline
    assert "mlstack preview" in offline
    (pulumi,) = [s for s in preview["jobs"]["live"]["steps"] if s.get("uses", "").startswith("pulumi/actions@")]
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["policyPacks"] == "infra/policy"
    assert pulumi["with"]["comment-on-pr"] is True


def test_deploy_goes_dev_staging_prod_with_one_concurrency_group_per_stack() -> None:
    deploy = _load("deploy.yml")
    jobs = deploy["jobs"]
    assert deploy["on"] == {"push": {"branches": ["main"]}}
    assert (jobs["dev"]["needs"], jobs["staging"]["needs"], jobs["prod"]["needs"]) == ("image", "dev", "staging")
    assert [jobs[name]["with"]["stack"] for name in ("dev", "staging", "prod")] == ["dev", "staging", "prod"]
    apply = _load("deploy-stack.yml")["jobs"]["apply"]
    assert apply["environment"] == "${{ inputs.stack }}", "prod's approval lives on its GitHub environment"
    assert apply["concurrency"] == {"group": "deploy-${{ inputs.stack }}", "cancel-in-progress": False}
    names = [step.get("name", step.get("uses", "")) for step in apply["steps"]]
    order = [
        names.index(name) for name in ("Push the image, tagged with the commit", "Apply", "Smoke test the ready route")
    ]
    assert order == sorted(order)
    (rollback,) = [step for step in apply["steps"] if step.get("name") == "Roll back to the image served before"]
    assert rollback["if"].startswith("failure()")
    assert 'mlstack image-tag "$PREVIOUS"' in rollback["run"]
    assert any(s.get("uses", "").startswith("aws-actions/configure-aws-credentials@") for s in apply["steps"])
    assert apply["permissions"]["id-token"] == "write", "OIDC role assumption, no stored AWS keys"


def test_retrain_listens_for_the_relays_event_and_opens_a_pull_request() -> None:
    retrain = _load("retrain.yml")
    assert retrain["on"]["repository_dispatch"]["types"] == [RetrainConfig().event_type]
    scripts = "\n".join(step.get("run", "") for step in _steps(retrain))
    assert "mlstack_service.train" in scripts
    assert "--publish" in scripts
    assert "mlstack model-version" in scripts
    assert "gh pr create" in scripts
