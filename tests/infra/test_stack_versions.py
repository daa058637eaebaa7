"""`mlstack model-version`: a new model version lands where each stack's release strategy takes it from."""

import shutil
from pathlib import Path

import pytest

from infra.cli import main
from infra.preview.engine import run_program
from infra.preview.plan import PlanRenderer, kubernetes_manifests
from infra.preview.stack_file import read_stack_file
from tests.conftest import REPO_ROOT
from tests.infra.test_workloads import traffic_of


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(REPO_ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(REPO_ROOT / "stacks", tmp_path / "stacks")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _model_versions_deployed(root: Path, stack: str) -> set[str]:
    config, secret_keys = read_stack_file(root, stack)
    run = run_program(stack, config, secret_keys)
    # The Kubernetes Deployments carry the model URI in their env; dev's host gets it in its user data, and the
    # stack's modelUri output says which.
    rendered = str(PlanRenderer(run.invented).value([r.inputs for r in run.resources])) + run.outputs["modelUri"]
    return {version for version in ("1.0.0", "1.1.0") if f"/{version}/" in rendered}


def test_each_strategy_gets_the_new_version_its_own_way(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    staging_before = (project / "stacks" / "Pulumi.staging.yaml").read_text()
    assert main(["model-version", "1.1.0"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "stacks/Pulumi.dev.yaml: service.modelVersion: 1.0.0 -> 1.1.0",
        "stacks/Pulumi.prod.yaml: release.canary.version: (none) -> 1.1.0",
        "stacks/Pulumi.staging.yaml: release.blueGreen.green: 1.0.0 -> 1.1.0",
    ]
    staging = (project / "stacks" / "Pulumi.staging.yaml").read_text()
    assert staging.replace('green: {imageTag: "0.1.0", modelVersion: "1.1.0"}', "") == staging_before.replace(
        'green: {imageTag: "0.1.0", modelVersion: "1.0.0"}', ""
    ), "only the idle colour changed; comments and layout kept"
    prod = (project / "stacks" / "Pulumi.prod.yaml").read_text()
    assert "# Percent of requests the canary takes" in prod
    assert 'version: {imageTag: "0.1.0", modelVersion: "1.1.0"}' in prod
    assert "weight: 10" in prod

    # The previews now deploy the new model beside the old one (blue-green, canary) or instead of it (rolling).
    assert _model_versions_deployed(project, "dev") == {"1.1.0"}
    assert _model_versions_deployed(project, "staging") == {"1.0.0", "1.1.0"}
    assert _model_versions_deployed(project, "prod") == {"1.0.0", "1.1.0"}

    assert main(["model-version", "1.1.0", "--stack", "dev"]) == 0
    assert capsys.readouterr().out.strip() == "stacks/Pulumi.dev.yaml: service.modelVersion: already 1.1.0"


def test_a_version_that_would_break_the_stack_file_changes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (project / "stacks" / "Pulumi.dev.yaml").read_text()
    assert main(["model-version", "no spaces please", "--stack", "dev"]) == 2
    error = capsys.readouterr().err
    assert "stacks/Pulumi.dev.yaml: mlstack:service.modelVersion: 'no spaces please' is not allowed" in error
    assert (project / "stacks" / "Pulumi.dev.yaml").read_text() == before
    assert main(["model-version", "1.1.0", "--stack", "qa"]) == 2
    assert "stacks/Pulumi.qa.yaml: no such stack file" in capsys.readouterr().err


def test_a_new_image_rolls_dev_and_prod_and_flips_stagings_colours(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for stack in ("dev", "staging", "prod"):
        assert main(["image-tag", "3f2a9c1", "--stack", stack]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "stacks/Pulumi.dev.yaml: service.imageTag: 0.1.0 -> 3f2a9c1",
        "stacks/Pulumi.staging.yaml: release.blueGreen.green (now active): 0.1.0 -> 3f2a9c1",
        "stacks/Pulumi.prod.yaml: service.imageTag: 0.1.0 -> 3f2a9c1",
    ]
    staging = (project / "stacks" / "Pulumi.staging.yaml").read_text()
    assert "activeColor: green" in staging
    assert 'blue: {imageTag: "0.1.0", modelVersion: "1.0.0"}' in staging, "the previous colour stays for a switch back"
    config, secret_keys = read_stack_file(project, "staging")
    run = run_program("staging", config, secret_keys)
    manifests = [PlanRenderer(run.invented).value(resource.inputs) for resource in kubernetes_manifests(run)]
    assert traffic_of(next(m for m in manifests if m["kind"] == "Ingress")) == {"model-service-green": 100}
    (green,) = [m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "model-service-green"]
    assert green["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":3f2a9c1")
    assert run.outputs["imageTag"] == "3f2a9c1", "deploy.yml rolls back to what this output said before"
    assert main(["image-tag", "3f2a9c1", "--stack", "staging"]) == 0
    assert "already 3f2a9c1" in capsys.readouterr().out
    # Rolling back is the same command with the previous tag: the previous colour becomes active again.
    assert main(["image-tag", "0.1.0", "--stack", "staging"]) == 0
    rolled_back = (project / "stacks" / "Pulumi.staging.yaml").read_text()
    assert "activeColor: blue" in rolled_back
    assert 'green: {imageTag: "3f2a9c1", modelVersion: "1.0.0"}' in rolled_back
