"""What the preview prints around the plan: errors outside the program, copied CIDRs, the rules that ran."""

import subprocess
from pathlib import Path

import yaml

from infra.preview.stack_file import available_stacks, cidr_overlaps, read_stack_file
from infra.preview.tree import render_violations
from tests.conftest import REPO_ROOT
from tests.infra.test_preview_cli import _mlstack, _project_copy


def test_out_pointing_at_a_file_is_one_line_and_exit_3(tmp_path: Path) -> None:
    target = tmp_path / "plan-here"
    target.write_text("not a folder\n")
    result = _mlstack(REPO_ROOT, "preview", "dev", "--out", str(target))
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"error: --out {target}: {target} is a file, not a folder; name a folder for plan.json and manifests/"
    ]
    assert "Traceback" not in result.stdout + result.stderr


def test_out_below_a_file_is_refused_the_same_way(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("")
    result = _mlstack(REPO_ROOT, "preview", "dev", "--out", str(target / "build"))
    assert result.returncode == 3
    assert f"{target} is a file, not a folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_make_preview_fails_when_the_preview_fails_and_shows_its_line() -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "preview", "STACK=no-such-stack"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0
    assert "error: stacks/Pulumi.no-such-stack.yaml: no such stack file" in result.stderr
    assert "mlstack preview exited 2" in result.stderr


def test_a_copied_stack_that_keeps_another_stacks_cidr_is_warned_about(tmp_path: Path) -> None:
    project = _project_copy(tmp_path)
    staging = yaml.safe_load((project / "stacks" / "Pulumi.staging.yaml").read_text())
    (project / "stacks" / "Pulumi.qa.yaml").write_text(yaml.safe_dump(staging))
    config, _ = read_stack_file(project, "qa")
    assert cidr_overlaps(project, "qa", config) == [
        "stacks/Pulumi.qa.yaml: mlstack:network.cidr 10.20.0.0/16 overlaps stacks/Pulumi.staging.yaml's "
        "10.20.0.0/16; VPCs that are ever peered or joined by a Transit Gateway or VPN need distinct ranges, "
        "so give this stack its own"
    ]
    staging["config"]["mlstack:network"]["cidr"] = "10.20.128.0/17"  # inside staging's range
    (project / "stacks" / "Pulumi.qa.yaml").write_text(yaml.safe_dump(staging))
    config, _ = read_stack_file(project, "qa")
    assert len(cidr_overlaps(project, "qa", config)) == 1


def test_the_committed_stacks_use_distinct_ranges() -> None:
    for stack in available_stacks(REPO_ROOT):
        config, _ = read_stack_file(REPO_ROOT, stack)
        assert cidr_overlaps(REPO_ROOT, stack, config) == [], stack


def test_the_summaries_say_how_many_rules_ran() -> None:
    assert render_violations([], rules_run=13) == "Policy: 13 rules ran, no violations"
    assert render_violations([], title="Readiness", rules_run=7) == "Readiness: 7 rules ran, no violations"
