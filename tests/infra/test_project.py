"""The project's own contracts: Pulumi.yaml, the program's independence from the preview, the README."""

import ast
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel

from infra.config.load import STACK_CONFIG_DIR
from infra.config.models import StackConfig
from tests.conftest import REPO_ROOT

PREVIEW_ONLY = ("infra.preview", "pulumi.runtime.mocks")


def test_pulumi_yaml_runs_infra_in_the_pinned_venv_and_reads_stacks_dir() -> None:
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "mlstack"
    # `make bootstrap` builds .venv from requirements/dev.txt; uv would re-resolve pyproject.toml on every run.
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}
    assert project["main"] == "infra/"
    assert project["stackConfigDir"] == STACK_CONFIG_DIR


def test_no_component_knows_about_mocks_or_previews() -> None:
    """The program pulumi up runs must not branch on how it is being run."""
    program_files = [
        path
        for path in (REPO_ROOT / "infra").rglob("*.py")
        # The preview engine and the command's own tools (infra/cli/) may use the mocks; the program may not.
        if not {"preview", "cli"} & set(path.relative_to(REPO_ROOT / "infra").parts)
    ]
    assert program_files
    for path in program_files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(PREVIEW_ONLY), f"{path} imports {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith(PREVIEW_ONLY), f"{path} imports {alias.name}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("is_dry_run", "set_mocks"), f"{path} uses pulumi.runtime.{node.attr}"


def _config_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        keys.append(key)
        for candidate in (field.annotation, *typing.get_args(field.annotation)):  # X | None too
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                keys += _config_keys(candidate, f"{key}.")
    return keys


def test_readme_documents_every_config_key() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [key for key in _config_keys(StackConfig) if f"`{key}`" not in readme]
    assert not missing, f"README's config reference lacks {missing}"


def test_readme_starts_with_the_two_commands() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    first_command = readme.index("make preview")
    assert first_command < readme.index("make test") < readme.index("## ")


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in Path(REPO_ROOT / ".ci" / "run").read_text()
