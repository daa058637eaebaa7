"""retrain.yml's "Choose the training data" step, run by bash with a stand-in `aws` that serves a folder as S3."""

import os
import stat
import subprocess
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT

FAKE_AWS = """#!/usr/bin/env bash
# `aws s3 cp [--recursive] [--only-show-errors] SRC DST [--exclude PATTERN]`, s3://bucket/key -> $FAKE_S3/bucket/key
set -euo pipefail
[ "$1 $2" = "s3 cp" ] || exit 64
shift 2
recursive=0; args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --recursive) recursive=1 ;;
    --only-show-errors) ;;
    --exclude) shift ;;
    *) args+=("$1") ;;
  esac
  shift
done
source="$FAKE_S3/${args[0]#s3://}"
if [ "$recursive" = 1 ]; then
  mkdir -p "${args[1]}"; find "$source" -maxdepth 1 -type f -exec cp {} "${args[1]}" \\;
else
  [ -f "$source" ] || { echo "fatal error: (404) $source" >&2; exit 1; }
  cp "$source" "${args[1]}"
fi
"""


def _step_script() -> str:
    workflow = yaml.safe_load((REPO_ROOT / ".github/workflows/retrain.yml").read_text())
    (step,) = [s for s in workflow["jobs"]["retrain"]["steps"] if s.get("name") == "Choose the training data"]
    script: str = step["run"]
    return script


def _run(tmp_path: Path, labelled_rows: int | None, min_rows: int = 1000) -> tuple[set[str], str]:
    """The files the training step would read, and what the step said."""
    s3 = tmp_path / "s3"
    (s3 / "data-bucket/datasets/loan-approval").mkdir(parents=True)
    (s3 / "data-bucket/datasets/loan-approval/base.csv").write_text("a,label\n1,0\n")
    if labelled_rows is not None:
        model = s3 / "models-bucket/labelled/loan-approval"
        (model / "dataset").mkdir(parents=True)
        (model / "summary.json").write_text(f'{{"dataset": {{"rows": {labelled_rows}}}}}')
        (model / "dataset/labelled.csv").write_text("a,label\n2,1\n")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "aws").write_text(FAKE_AWS)
    (tools / "aws").chmod(stat.S_IRWXU)
    work = tmp_path / "work"
    work.mkdir()
    env_file = tmp_path / "github-env"
    env = {
        **os.environ,
        "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}",
        "FAKE_S3": str(s3),
        "GITHUB_ENV": str(env_file),
        "DATA_URI": "s3://data-bucket/datasets/loan-approval/",
        "MODEL_NAME": "loan-approval",
        "LABELLED_PREFIX": "s3://models-bucket/labelled/",
        "MIN_LABELLED_ROWS": str(min_rows),
    }
    result = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", _step_script()],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (line,) = env_file.read_text().splitlines()
    name, _, folder = line.partition("=")
    assert name == "TRAINING_DATA"
    return {path.name for path in (work / folder).iterdir()}, result.stdout


def test_enough_labelled_production_rows_join_the_training_data(tmp_path: Path) -> None:
    files, said = _run(tmp_path, labelled_rows=5000)
    assert files == {"base.csv", "production-labelled.csv"}
    assert "5000 labelled production rows" in said


def test_too_few_labelled_rows_or_no_join_yet_train_on_the_fixed_dataset(tmp_path: Path) -> None:
    files, said = _run(tmp_path / "few", labelled_rows=10)
    assert files == {"base.csv"}
    assert "10 labelled production rows, fewer than 1000" in said
    files, _ = _run(tmp_path / "none", labelled_rows=None)
    assert files == {"base.csv"}
