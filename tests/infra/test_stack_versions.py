"""`mlstack model-version`: a new model version is one reviewed line, service.modelVersion, in every strategy."""

import difflib
import shutil
from pathlib import Path

import pytest

from infra.cli import main
from tests.conftest import REPO_ROOT


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's stack files to edit, as a pull request's checkout would hold them."""
    shutil.copy(REPO_ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(REPO_ROOT / "stacks", tmp_path / "stacks")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_strategy_takes_the_version_in_service_model_version(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {stack: (project / "stacks" / f"Pulumi.{stack}.yaml").read_text() for stack in ("dev", "staging", "prod")}
    assert main(["model-version", "1.1.0"]) == 0
    # Each change says what its deploy does to live traffic, in the stack's own release settings.
    assert capsys.readouterr().out.splitlines() == [
        "stacks/Pulumi.dev.yaml: service.modelVersion: 1.0.0 -> 1.1.0",
        "  on deploy the host is replaced new-one-first (instance refresh): all traffic moves from 1.0.0 to 1.1.0 "
        "once the new host answers ready",
        "stacks/Pulumi.prod.yaml: service.modelVersion: 1.0.0 -> 1.1.0",
        "  on deploy a canary: 1.1.0 takes 5% (hold 5m) → 25% (hold 10m) → 50% (hold 10m) → 100% of requests, "
        "each step gated by analysis; a failed analysis sends all traffic back to 1.0.0",
        "stacks/Pulumi.staging.yaml: service.modelVersion: 1.0.0 -> 1.1.0",
        "  on deploy 1.1.0 starts beside 1.0.0 behind the preview Service (no live traffic), then switches all "
        "traffic at once when the analysis passes",
    ]
    for stack, text in before.items():
        after = (project / "stacks" / f"Pulumi.{stack}.yaml").read_text()
        # Comments, order and layout kept; the one addition is the version, quoted so YAML keeps it a string, in the
        # stack's service block (a new one at the end where the file had none).
        diff = list(difflib.ndiff(text.splitlines(), after.splitlines()))
        assert [line for line in diff if line.startswith("- ")] == [], stack
        expected = ['    modelVersion: "1.1.0"']
        if "  mlstack:service:\n" not in text:
            expected.insert(0, "  mlstack:service:")
            assert after.startswith(text), stack
        assert [line[2:] for line in diff if line.startswith("+ ")] == expected, stack
    assert main(["model-version", "1.1.0", "--stack", "prod"]) == 0
    assert capsys.readouterr().out.strip() == "stacks/Pulumi.prod.yaml: service.modelVersion: already 1.1.0"
    assert main(["model-version", "1.2.0", "--stack", "prod"]) == 0
    assert 'modelVersion: "1.2.0"' in (project / "stacks" / "Pulumi.prod.yaml").read_text()


def test_a_version_that_would_break_the_stack_file_changes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (project / "stacks" / "Pulumi.dev.yaml").read_text()
    assert main(["model-version", "no spaces please", "--stack", "dev"]) == 2
    error = capsys.readouterr().err
    assert "stacks/Pulumi.dev.yaml: mlstack:service.modelVersion: 'no spaces please' is not allowed" in error
    assert main(["model-version", "banana", "--stack", "dev"]) == 2
    assert "'banana' is not allowed: model versions are X.Y.Z" in capsys.readouterr().err
    assert (project / "stacks" / "Pulumi.dev.yaml").read_text() == before
    assert main(["model-version", "1.1.0", "--stack", "qa"]) == 2
    assert "stacks/Pulumi.qa.yaml: no such stack file" in capsys.readouterr().err


def test_image_tags_are_not_in_stack_files_any_more(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["image-tag", "3f2a9c1", "--stack", "prod"])
    assert exited.value.code == 2
    assert "invalid choice: 'image-tag'" in capsys.readouterr().err
    config = project / "stacks" / "Pulumi.dev.yaml"  # a stack file with no service block of its own
    config.write_text(config.read_text() + '  mlstack:service:\n    imageTag: "0.1.0"\n')
    assert main(["model-version", "1.1.0", "--stack", "dev"]) == 2
    assert "mlstack:service.imageTag: unknown key" in capsys.readouterr().err
