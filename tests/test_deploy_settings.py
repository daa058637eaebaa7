"""`mlstack deploy-settings`: what deploy-stack.yml reads from a stack before it has credentials, and the registry
closure its first, targeted `pulumi up` names."""

from pathlib import Path

import pytest

from infra.cli import main
from infra.cli.deploy_settings import ROOT_STACK_IN_TYPE, dependency_closure, deploy_settings, engine_urn
from infra.preview.engine import StackRun
from tests.conftest import REPO_ROOT

REPOSITORY_TYPE = "aws:ecr/repository:Repository"


def _closure(run: StackRun) -> list[str]:
    return dependency_closure(run, run.of_type(REPOSITORY_TYPE))


def test_the_registry_closure_is_closed_under_parents_dependencies_and_providers(stack_run: StackRun) -> None:
    """What the engine checks before a targeted create (pulumi/pulumi step_generator.go, "untargeted create")."""
    closure = set(_closure(stack_run))
    for resource in stack_run.resources:
        if engine_urn(resource.urn) not in closure:
            continue
        needed = [resource.parent] if resource.parent else []
        needed += resource.dependencies
        needed += [urn for urns in resource.property_dependencies.values() for urn in urns]
        needed += [resource.provider.rsplit("::", 1)[0]] if resource.provider else []
        for urn in needed:
            assert engine_urn(urn) in closure, f"{resource.name} needs {urn}, which is not targeted"


def test_the_registry_closure_holds_the_repository_its_key_and_provider_and_nothing_else(
    committed_runs: dict[str, StackRun],
) -> None:
    closure = _closure(committed_runs["staging"])
    types = sorted(urn.split("::")[2].rsplit("$", 1)[-1] for urn in closure)
    assert types == [
        "aws:ecr/repository:Repository",
        "aws:kms/key:Key",
        "mlstack:registry:ContainerRegistry",
        "mlstack:security:EncryptionKeys",
        "pulumi:providers:aws",
        "pulumi:pulumi:Stack",
    ]
    # URNs as the real engine spells them: top-level resources carry no root stack in their type chain.
    assert not any(ROOT_STACK_IN_TYPE in urn for urn in closure)
    assert (
        "urn:pulumi:staging::mlstack::mlstack:registry:ContainerRegistry$aws:ecr/repository:Repository"
        + ("::registry-model-service")
        in closure
    )


def test_engine_urn_drops_only_the_root_stack() -> None:
    mocked = "urn:pulumi:dev::mlstack::pulumi:pulumi:Stack$mlstack:registry:ContainerRegistry::registry"
    assert engine_urn(mocked) == "urn:pulumi:dev::mlstack::mlstack:registry:ContainerRegistry::registry"
    stack = "urn:pulumi:dev::mlstack::pulumi:pulumi:Stack::mlstack-dev"
    assert engine_urn(stack) == stack


@pytest.mark.parametrize(("stack", "region", "mode"), [("dev", "us-east-1", "ec2"), ("staging", "us-west-2", "eks")])
def test_settings_come_from_the_stack_file(stack: str, region: str, mode: str) -> None:
    settings = deploy_settings(REPO_ROOT, stack)
    lines = dict(line.split("=", 1) for line in settings.github_output().splitlines())
    assert lines["region"] == region
    assert lines["compute_mode"] == mode
    assert lines["repository"] == f"mlstack-{stack}/model-service"
    assert lines["secrets_provider"] == "awskms://alias/mlstack-pulumi?region=us-east-1"
    assert (lines["model_name"], lines["model_version"]) == ("loan-approval", "1.0.0")


def test_a_stack_file_without_the_kms_provider_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "Pulumi.yaml").write_text((REPO_ROOT / "Pulumi.yaml").read_text())
    committed = (REPO_ROOT / "stacks" / "Pulumi.dev.yaml").read_text()
    without = "\n".join(line for line in committed.splitlines() if not line.startswith("secretsprovider:"))
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(without)
    monkeypatch.chdir(tmp_path)
    assert main(["deploy-settings", "dev"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: stacks/Pulumi.dev.yaml: secretsprovider: must name the bootstrap's key")
    assert "\n" not in error.strip()


def test_the_targets_file_lists_the_closure_one_urn_a_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    targets = tmp_path / "targets.txt"
    assert main(["deploy-settings", "dev", "--targets-file", str(targets)]) == 0
    assert "region=us-east-1\n" in capsys.readouterr().out
    lines = targets.read_text().splitlines()
    assert lines[0] == "urn:pulumi:dev::mlstack::pulumi:pulumi:Stack::mlstack-dev"
    assert any(line.endswith("::registry-model-service") for line in lines)
