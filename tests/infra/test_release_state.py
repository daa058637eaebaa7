"""The image a deploy runs is the commit's: git HEAD of the checkout, or MLSTACK_IMAGE_TAG, never a file's tag."""

import subprocess
from pathlib import Path

import pytest

from infra.config import StackConfigError
from infra.release_state import IMAGE_TAG_ENV, PROJECT_ROOT, deployed_image_tag, service_image_tag

SHA = "0123456789abcdef0123456789abcdef01234567"


def _git(folder: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_the_tag_is_the_checkouts_head_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(IMAGE_TAG_ENV, raising=False)
    assert deployed_image_tag() == _git(PROJECT_ROOT, "rev-parse", "HEAD")
    assert service_image_tag(gpu=True) == f"{deployed_image_tag()}-gpu"


def test_a_new_commit_is_a_new_tag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(IMAGE_TAG_ENV, raising=False)
    _git(tmp_path, "init", "--quiet")
    _git(
        tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "--allow-empty", "-m", "a"
    )
    first = deployed_image_tag(tmp_path)
    _git(
        tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "--allow-empty", "-m", "b"
    )
    assert deployed_image_tag(tmp_path) != first == _git(tmp_path, "rev-parse", "HEAD~1")


def test_the_environment_overrides_with_a_full_sha(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(IMAGE_TAG_ENV, SHA)
    assert deployed_image_tag(tmp_path) == SHA, "no checkout needed"
    monkeypatch.setenv(IMAGE_TAG_ENV, "0.1.0")
    with pytest.raises(StackConfigError, match=r"MLSTACK_IMAGE_TAG: '0.1.0' is not a commit SHA; CI tags images"):
        deployed_image_tag()
    monkeypatch.setenv(IMAGE_TAG_ENV, SHA[:12])
    with pytest.raises(StackConfigError, match="is not a commit SHA"):
        deployed_image_tag()


def test_outside_a_checkout_the_error_says_what_to_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(IMAGE_TAG_ENV, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    with pytest.raises(
        StackConfigError, match=rf"{tmp_path}: not a git checkout with a commit .*set MLSTACK_IMAGE_TAG"
    ):
        deployed_image_tag(tmp_path)
    _git(tmp_path, "init", "--quiet")  # a repository without a commit has no HEAD either
    with pytest.raises(StackConfigError, match="not a git checkout with a commit"):
        deployed_image_tag(tmp_path)
