"""`mlstack preview` and `make preview`, run as a person runs them: real processes, real files."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.cli import EXIT_PROGRAM_FAILED, preview
from infra.policy.rules import RULES
from infra.preview.readiness import READINESS_RULES
from tests.conftest import REPO_ROOT, CommittedPreview

MLSTACK = [sys.executable, "-m", "infra.cli"]


def _project_copy(tmp_path: Path) -> Path:
    """A project folder with this repository's Pulumi.yaml and stack files, for stack files a test writes."""
    shutil.copy(REPO_ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(REPO_ROOT / "stacks", tmp_path / "stacks")
    return tmp_path


def _mlstack(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([*MLSTACK, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def _plan(out_dir: Path) -> dict[str, Any]:
    plan: dict[str, Any] = json.loads((out_dir / "plan.json").read_text())
    return plan


def _of_type(plan: dict[str, Any], type_token: str) -> list[dict[str, Any]]:
    return [resource for resource in plan["resources"] if resource["type"] == type_token]


def _private_subnet_zones(plan: dict[str, Any]) -> list[str]:
    return sorted(
        subnet["inputs"]["availabilityZone"]
        for subnet in _of_type(plan, "aws:ec2/subnet:Subnet")
        if "kubernetes.io/role/internal-elb" in subnet["inputs"]["tags"]
    )


def test_make_preview_prod_prints_the_tree_and_writes_the_plan() -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "preview", "STACK=prod"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "└─ network  mlstack:network:Network" in result.stdout or "├─ network  mlstack:network:Network" in result.stdout
    )
    assert "network-nat-3  aws:ec2.NatGateway" in result.stdout
    for listed in (
        "registry-model-service  aws:ecr.Repository",
        "models-bucket  aws:s3.Bucket",
        "eks-cluster  aws:eks.Cluster",
        "pools-cpu  aws:eks.NodeGroup",
        "pools-gpu  aws:eks.NodeGroup",
        "nvidia-device-plugin-release  kubernetes:helm.sh.Release",
        "cluster-autoscaler-release  kubernetes:helm.sh.Release",
        "eks-addons-vpc-cni  aws:eks.Addon",
    ):
        assert listed in result.stdout, listed
    plan = _plan(REPO_ROOT / "build" / "prod")
    assert plan["stack"] == "prod"
    # The offline account's us-east-1a is use1-az3, which EKS cannot use.
    assert _private_subnet_zones(plan) == ["us-east-1b", "us-east-1c", "us-east-1d"]
    assert len(_of_type(plan, "aws:ec2/natGateway:NatGateway")) == 3


@pytest.mark.parametrize(("stack", "nat_count", "zones"), [("staging", 1, 2), ("dev", 0, 2)])
def test_preview_shows_what_each_stack_file_says(
    committed_preview: CommittedPreview, stack: str, nat_count: int, zones: int
) -> None:
    result = committed_preview(stack)
    assert result.returncode == 0, result.stderr
    plan = result.plan()
    assert len(_of_type(plan, "aws:ec2/natGateway:NatGateway")) == nat_count
    assert len(_private_subnet_zones(plan)) == zones


def test_plan_json_has_the_contracted_shape(tmp_path: Path, committed_preview: CommittedPreview) -> None:
    first = committed_preview("prod")
    assert first.returncode == 0, first.stderr
    plan = first.plan()
    assert list(plan) == ["version", "project", "stack", "resources", "outputs", "cost", "policy", "readiness"]
    assert (plan["version"], plan["project"]) == (1, "mlstack")
    urns = {resource["urn"] for resource in plan["resources"]}
    for resource in plan["resources"]:
        assert list(resource) == ["urn", "type", "name", "parent", "custom", "inputs", "dependencies"]
        assert resource["parent"] is None or resource["parent"] in urns, f"{resource['urn']} has a dangling parent"
        assert set(resource["dependencies"]) <= urns, f"{resource['urn']} depends on something not in the plan"
    # The contracted keys, plus what a reviewer needs to trust the figure: region, assumptions, what went unpriced.
    assert set(plan["cost"]) == {
        "currency", "monthly_total", "items", "prices_as_of", "region", "assumptions", "unpriced", "priced_subtotal",
        "monthly_total_at_max", "per_prediction",
    }  # fmt: skip
    assert plan["cost"]["monthly_total"] == round(sum(item["monthly"] for item in plan["cost"]["items"]), 2)
    prod_rules = [rule for rule in RULES if rule.runs_for("prod")]
    assert plan["policy"]["rules_run"] == len(prod_rules)
    # Prod passes every mandatory rule; its advisory findings are the ones tests/policy/test_stacks.py acknowledges.
    assert {v["level"] for v in plan["policy"]["violations"]} <= {"advisory"}
    assert {v["policy"] for v in plan["policy"]["violations"]} == {"account-pinned"}
    assert plan["readiness"] == {"violations": [], "rules_run": len(READINESS_RULES)}
    (vpc,) = _of_type(plan, "aws:ec2/vpc:Vpc")
    assert vpc["inputs"]["cidrBlock"] == "10.30.0.0/16"
    # Ids AWS assigns on create are not known before it; the plan must not pass invented ones off as real.
    subnet = _of_type(plan, "aws:ec2/subnet:Subnet")[0]
    assert subnet["inputs"]["vpcId"] == "[unknown]"
    assert plan["outputs"]["vpcId"] == "[unknown]"
    assert plan["outputs"]["availabilityZones"] == ["us-east-1b", "us-east-1c", "us-east-1d"]
    rule = _of_type(plan, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")[0]
    assert isinstance(rule["inputs"]["fromPort"], int)
    assert (first.out / "manifests").is_dir()
    # Two previews of the same stack are byte-identical (the engine registers resources in a varying order).
    again = tmp_path / "again"
    assert _mlstack(REPO_ROOT, "preview", "prod", "--out", str(again)).returncode == 0
    assert (again / "plan.json").read_bytes() == (first.out / "plan.json").read_bytes()
    manifests = sorted(path.name for path in (first.out / "manifests").iterdir())
    assert manifests == sorted(path.name for path in (again / "manifests").iterdir())
    for name in manifests:
        assert (again / "manifests" / name).read_bytes() == (first.out / "manifests" / name).read_bytes(), name


def test_a_new_environment_is_a_new_file(tmp_path: Path) -> None:
    project = _project_copy(tmp_path)
    staging = yaml.safe_load((project / "stacks" / "Pulumi.staging.yaml").read_text())
    staging["config"]["mlstack:network"]["cidr"] = "10.77.0.0/16"
    (project / "stacks" / "Pulumi.qa.yaml").write_text(yaml.safe_dump(staging))
    result = _mlstack(project, "preview", "qa")
    assert result.returncode == 0, result.stderr
    plan = _plan(project / "build" / "qa")
    assert plan["stack"] == "qa"
    (vpc,) = _of_type(plan, "aws:ec2/vpc:Vpc")
    assert vpc["inputs"]["cidrBlock"] == "10.77.0.0/16"
    (provider,) = _of_type(plan, "pulumi:providers:aws")
    assert json.loads(provider["inputs"]["defaultTags"])["tags"]["environment"] == "qa"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: c["mlstack:network"].update(cidr="10.0.0.0/33"),
            "error: stacks/Pulumi.broken.yaml: mlstack:network.cidr: '10.0.0.0/33' is not allowed: not a valid IPv4",
        ),
        (
            lambda c: c["mlstack:network"].update(azCount=0),
            "error: stacks/Pulumi.broken.yaml: mlstack:network.azCount: 0 is not allowed: must be from 1 to 6",
        ),
        (
            lambda c: c["mlstack:network"].update(natStrategie="single"),
            "error: stacks/Pulumi.broken.yaml: mlstack:network.natStrategie: unknown key; did you mean 'natStrategy'?",
        ),
        (
            lambda c: c.update({"mlstack:computer": {"mode": "eks"}}),
            "error: stacks/Pulumi.broken.yaml: mlstack:computer: unknown key; did you mean 'compute'?",
        ),
    ],
)
def test_a_wrong_stack_file_fails_with_one_line_naming_file_and_key(tmp_path: Path, edit: Any, expected: str) -> None:
    project = _project_copy(tmp_path)
    document = yaml.safe_load((project / "stacks" / "Pulumi.prod.yaml").read_text())
    edit(document["config"])
    (project / "stacks" / "Pulumi.broken.yaml").write_text(yaml.safe_dump(document))
    result = _mlstack(project, "preview", "broken")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, f"expected one line, got:\n{result.stderr}"
    assert result.stderr.startswith(expected)
    assert "Traceback" not in result.stderr
    assert not (project / "build" / "broken" / "plan.json").exists()


def test_an_unknown_stack_lists_the_ones_that_exist() -> None:
    result = _mlstack(REPO_ROOT, "preview", "nosuchstack")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: stacks/Pulumi.nosuchstack.yaml: no such stack file; stacks found: dev, prod, staging"
    )


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    project = _project_copy(tmp_path)
    (project / "stacks" / "Pulumi.broken.yaml").write_text("config:\n  aws:region: us-east-1\n  mlstack:tier: [prod\n")
    result = _mlstack(project, "preview", "broken")
    assert result.returncode == 2
    assert result.stderr.startswith("error: stacks/Pulumi.broken.yaml: not valid YAML at line")


PROGRAM_FAILURE = REPO_ROOT / "tests" / "fixtures" / "program_failure"


def test_a_program_that_fails_exits_3_with_one_line_and_no_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A valid stack file whose program raises: exit 3 (not 1, a policy violation; not 2, bad input)."""
    monkeypatch.chdir(REPO_ROOT)
    code = preview("staging", tmp_path, debug=False, program_dir=PROGRAM_FAILURE)
    assert code == EXIT_PROGRAM_FAILED == 3
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "error: the program failed for stack staging: RuntimeError: the node pool component could not size the GPU "
        "pool (run with --debug for the traceback)"
    )
    assert not (tmp_path / "plan.json").exists()


def test_debug_shows_the_programs_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    assert preview("staging", tmp_path, debug=True, program_dir=PROGRAM_FAILURE) == EXIT_PROGRAM_FAILED
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "program_failure" in err
