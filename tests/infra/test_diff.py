"""`mlstack diff`: each changed input old → new, secrets masked, long values folded, replace vs update in place,
instance-type changes as one cost line, and `--all`."""

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from infra.preview.diff import MAX_FIELDS, MAX_LISTED, render_markdown
from tests.conftest import REPO_ROOT

STACK_URN = "urn:pulumi:prod::mlstack::"


def _resource(type_token: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "urn": f"{STACK_URN}{type_token}::{name}",
        "type": type_token,
        "name": name,
        "parent": None,
        "custom": True,
        "inputs": inputs,
        "dependencies": [],
    }


def _plan(resources: list[dict[str, Any]], items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    total = round(sum(item["monthly"] for item in items or []), 2)
    return {
        "version": 1,
        "project": "mlstack",
        "stack": "prod",
        "resources": resources,
        "outputs": {},
        "cost": {"monthly_total": total, "items": items or [], "prices_as_of": "2026-11-28"},
        "policy": {"violations": []},
        "readiness": {"violations": []},
    }


RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
POOL = "aws:eks/nodeGroup:NodeGroup"


def _pool_item(instance_type: str, price: float) -> dict[str, Any]:
    return {
        "item": f"Node pool pools-cpu: 3 x {instance_type} (on-demand)",
        "urn": f"{STACK_URN}{POOL}::pools-cpu",
        "quantity": 2190,
        "unit": "instance-hours",
        "unit_price": price,
        "monthly": round(2190 * price, 2),
        "note": "",
    }


def test_a_changed_input_shows_its_old_and_new_value_and_updates_in_place() -> None:
    base = _plan([_resource(RULE, "lb-in-443", {"cidrIpv4": "203.0.113.0/24", "fromPort": 443})])
    new = _plan([_resource(RULE, "lb-in-443", {"cidrIpv4": "0.0.0.0/0", "fromPort": 443})])
    text = render_markdown(base, new)
    assert f"- `{RULE}` lb-in-443: update in place" in text
    assert "  - `cidrIpv4`: `203.0.113.0/24` → `0.0.0.0/0`" in text
    assert "0 to add, 1 to change, 0 to remove. " in text


def test_a_field_that_forces_replacement_is_marked() -> None:
    vpc = "aws:ec2/vpc:Vpc"
    base = _plan([_resource(vpc, "network-vpc", {"cidrBlock": "10.30.0.0/16", "tags": {"a": "1"}})])
    new = _plan([_resource(vpc, "network-vpc", {"cidrBlock": "10.31.0.0/16", "tags": {"a": "2"}})])
    text = render_markdown(base, new)
    assert f"- `{vpc}` network-vpc: **replace** (cidrBlock forces it)" in text
    assert "  - `cidrBlock`: `10.30.0.0/16` → `10.31.0.0/16` (replaces)" in text
    assert "  - `tags.a`: `1` → `2`\n" in text
    assert "0 to add, 1 to change, 0 to remove (1 of the changes replace the resource). " in text


def test_renaming_a_kubernetes_object_replaces_it_but_a_new_image_does_not() -> None:
    deployment = "kubernetes:apps/v1:Deployment"
    before: dict[str, Any] = {
        "metadata": {"name": "a"},
        "spec": {"template": {"spec": {"containers": [{"image": "x:1"}]}}},
    }
    after = copy.deepcopy(before)
    after["spec"]["template"]["spec"]["containers"][0]["image"] = "x:2"
    text = render_markdown(_plan([_resource(deployment, "d", before)]), _plan([_resource(deployment, "d", after)]))
    assert "  - `spec.template.spec.containers[0].image`: `x:1` → `x:2`" in text
    assert "update in place" in text
    after["metadata"]["name"] = "b"
    text = render_markdown(_plan([_resource(deployment, "d", before)]), _plan([_resource(deployment, "d", after)]))
    assert "**replace** (metadata.name forces it)" in text


def test_secrets_stay_masked_and_long_values_are_folded() -> None:
    secret = "kubernetes:core/v1:Secret"
    policy = "aws:iam/policy:Policy"
    long_before = json.dumps({"Statement": [{"Action": [f"s3:Action{n}" for n in range(30)]}]})
    long_after = long_before.replace("Action29", "Action99")
    base = _plan(
        [
            _resource(secret, "token", {"stringData": "[secret]", "apiToken": "plain-before"}),
            _resource(policy, "p", {"policy": long_before}),
        ]
    )
    new = _plan(
        [
            _resource(secret, "token", {"stringData": "[secret]", "apiToken": "plain-after"}),
            _resource(policy, "p", {"policy": long_after}),
        ]
    )
    text = render_markdown(base, new)
    assert "plain-before" not in text
    assert "plain-after" not in text
    assert "  - `apiToken`: `[secret]` → `[secret]`" in text
    # A JSON document input is compared by content: the one action that changed, not two folded blobs.
    assert "  - `policy.Statement[0].Action[29]`: `s3:Action29` → `s3:Action99`" in text
    long_text = "x" * 200
    base = _plan([_resource(policy, "p", {"description": long_text + "-old"})])
    new = _plan([_resource(policy, "p", {"description": long_text + "-new"})])
    line = next(line for line in render_markdown(base, new).splitlines() if line.startswith("  - `description`"))
    assert "-old… (204 characters)` → `…" in line
    assert "-new… (204 characters)`" in line
    assert len(line) < 250


def test_a_changed_instance_type_is_one_cost_line_with_the_percentage() -> None:
    base = _plan([_resource(POOL, "pools-cpu", {"instanceTypes": ["m6i.large"]})], [_pool_item("m6i.large", 0.096)])
    new = _plan([_resource(POOL, "pools-cpu", {"instanceTypes": ["m6i.xlarge"]})], [_pool_item("m6i.xlarge", 0.192)])
    text = render_markdown(base, new)
    assert (
        "- pools-cpu: 3 x m6i.large (on-demand) → 3 x m6i.xlarge (on-demand): $210.24 → $420.48 (+$210.24, +100.0%)"
        in text
    )
    assert "| Node pool pools-cpu" not in text  # not again as a removed and an added line item
    assert "**replace** (instanceTypes[0] forces it)" in text


def test_all_lists_everything_instead_of_and_n_more() -> None:
    many = [_resource(RULE, f"rule-{n:03d}", {"fromPort": n}) for n in range(MAX_LISTED + 5)]
    changed = [_resource(RULE, f"rule-{n:03d}", {"fromPort": n + 1}) for n in range(MAX_LISTED + 5)]
    short = render_markdown(_plan(many), _plan(changed))
    assert "- … and 5 more (`mlstack diff --all`)" in short
    assert "rule-054" not in short
    everything = render_markdown(_plan(many), _plan(changed), everything=True)
    assert "and 5 more" not in everything
    assert "rule-054" in everything
    wide_before = {f"key{n:02d}": n for n in range(MAX_FIELDS + 3)}
    wide_after = {key: value + 1 for key, value in wide_before.items()}
    base, new = _plan([_resource(RULE, "wide", wide_before)]), _plan([_resource(RULE, "wide", wide_after)])
    assert "… and 3 more inputs" in render_markdown(base, new)
    assert "`key10`" in render_markdown(base, new, everything=True)


def test_the_cli_takes_all(tmp_path: Path) -> None:
    many = [_resource(RULE, f"rule-{n:03d}", {"fromPort": n}) for n in range(MAX_LISTED + 1)]
    (tmp_path / "base.json").write_text(json.dumps(_plan([])))
    (tmp_path / "new.json").write_text(json.dumps(_plan(many)))
    result = subprocess.run(
        [sys.executable, "-m", "infra.cli", "diff", "--all", str(tmp_path / "base.json"), str(tmp_path / "new.json")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"rule-{MAX_LISTED:03d}" in result.stdout
    assert "more" not in result.stdout
