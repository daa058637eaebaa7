"""The committed stacks keep every rule, and a stack file that breaks one fails the preview, naming it."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.preview.engine import StackRun
from infra.preview.policy import check_policies
from tests.conftest import COMMITTED_STACKS, REPO_ROOT


@pytest.mark.parametrize("stack", COMMITTED_STACKS)
def test_every_committed_stack_passes_every_rule(committed_runs: dict[str, StackRun], stack: str) -> None:
    assert check_policies(committed_runs[stack]) == []


def test_opening_port_22_to_the_world_fails_the_preview_naming_the_rule_and_resource(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "Pulumi.yaml").write_text((REPO_ROOT / "Pulumi.yaml").read_text())
    document = yaml.safe_load((REPO_ROOT / "stacks" / "Pulumi.staging.yaml").read_text())
    document["config"]["mlstack:network"]["extraIngress"] = [
        {"port": 22, "cidrs": ["0.0.0.0/0"], "description": "debugging, just this once"}
    ]
    (tmp_path / "stacks" / "Pulumi.staging.yaml").write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [sys.executable, "-m", "infra.cli", "preview", "staging", "--out", str(tmp_path / "out")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: policy no-world-ingress violated by security-lb-extra-22-1: opens port 22 to 0.0.0.0/0; "
        "only 80 and 443 may be open to the world (and 1 more)"
    )
    assert "[mandatory] no-ssh: security-lb-extra-22-1: opens port 22 to 0.0.0.0/0" in result.stdout
    assert (tmp_path / "out" / "plan.json").exists(), "the plan is still written for review"
