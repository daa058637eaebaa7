"""The committed stacks keep every mandatory rule (advisory findings only where ACKNOWLEDGED says why), and a stack
file that breaks one fails the preview, naming it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.policy.rules import MANDATORY
from infra.preview.engine import StackRun
from infra.preview.policy import check_policies
from tests.conftest import COMMITTED_STACKS, REPO_ROOT

# Advisory findings the committed stacks carry, each with what clears it; any other finding fails the test, and a
# committed stack never carries a mandatory violation.
ACKNOWLEDGED: dict[tuple[str, str, str], str] = {
    ("prod", "account-pinned", "aws"): 'prod\'s owner sets mlstack:accountId (README "Security model")',
}


@pytest.mark.parametrize("stack", COMMITTED_STACKS)
def test_every_committed_stack_passes_every_mandatory_rule_and_only_known_advisories(
    committed_runs: dict[str, StackRun], stack: str
) -> None:
    violations = check_policies(committed_runs[stack])
    assert [v.policy for v in violations if v.level == MANDATORY] == []
    found = {(stack, v.policy, v.urn.rsplit("::", 1)[-1]) for v in violations}
    assert found == {key for key in ACKNOWLEDGED if key[0] == stack}, sorted(found)


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
    # The one other mandatory violation is no-ssh on the same rule; advisory findings fail nothing.
    assert re.fullmatch(
        r"error: policy no-world-ingress violated by security-lb-extra-22-1: opens port 22 to 0\.0\.0\.0/0; "
        r"only 80 and 443 may be open to the world \(and 1 more\)",
        result.stderr.strip(),
    ), result.stderr
    assert "[mandatory] no-ssh: security-lb-extra-22-1: opens port 22 to 0.0.0.0/0" in result.stdout
    assert (tmp_path / "out" / "plan.json").exists(), "the plan is still written for review"
