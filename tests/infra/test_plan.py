"""What the plan shows a reviewer: secrets hidden, invented values marked, numbers as numbers."""

import asyncio
import json

from pulumi.runtime import rpc

from infra.preview.engine import StackRun, deserialize_inputs, run_program, unwrap_secret
from infra.preview.plan import PlanRenderer, build_plan
from tests.conftest import REPO_ROOT


def test_secrets_are_never_shown() -> None:
    renderer = PlanRenderer(set())
    secret = {rpc._special_sig_key: rpc._special_secret_sig, "value": "hunter2"}
    assert renderer.value({"password": secret, "user": "admin"}) == {"password": "[secret]", "user": "admin"}


def test_values_the_fake_cloud_invented_are_unknown_even_inside_other_strings() -> None:
    renderer = PlanRenderer({"vpc-0abc", "arn:aws:iam::123456789012:role/x", "123456789012"})
    assert renderer.value("vpc-0abc") == "[unknown]"
    assert renderer.value(["vpc-0abc", "vpc-other"]) == ["[unknown]", "vpc-other"]
    assert renderer.value('{"Resource": "arn:aws:iam::123456789012:role/x"}') == '{"Resource": "[unknown]"}'
    assert renderer.value("account 123456789012") == "account [unknown]"


def test_unknowns_from_the_engine_are_marked() -> None:
    assert PlanRenderer(set()).value(rpc.UNKNOWN) == "[unknown]"


def test_whole_numbers_stay_integers() -> None:
    renderer = PlanRenderer(set())
    assert renderer.value({"fromPort": 443.0, "ratio": 0.5}) == {"fromPort": 443, "ratio": 0.5}
    assert isinstance(renderer.value(443.0), int)


def test_a_secret_map_shows_its_keys_but_no_value() -> None:
    renderer = PlanRenderer(set())
    secret = {rpc._special_sig_key: rpc._special_secret_sig, "value": {"password": "hunter2", "user": "admin"}}
    assert renderer.value({"stringData": secret}) == {"stringData": {"password": "[secret]", "user": "[secret]"}}


# --- The engine's truthfulness and plan.json's dependencies ------------------------------------------------------

SECRETS_PROGRAM = REPO_ROOT / "tests" / "fixtures" / "engine" / "secrets"


def _secrets_run() -> StackRun:
    return run_program("staging", {"aws:region": "us-east-1"}, program_dir=SECRETS_PROGRAM)


def test_the_sdk_drops_a_top_level_null_but_sends_a_nested_one_and_the_engine_keeps_it() -> None:
    """serialize_properties skips a None property; a None inside a map goes over the wire as null, and the engine
    and pulumi-kubernetes (since v4.30.0) hand it to Helm, which deletes the chart's default for that key."""
    struct = asyncio.run(rpc.serialize_properties({"top": None, "values": {"affinity": None, "keep": [1, None]}}, {}))
    assert deserialize_inputs(struct) == {"values": {"affinity": None, "keep": [1.0, None]}}


def test_the_recording_keeps_nulls_nested_in_inputs() -> None:
    (release,) = _secrets_run().of_type("kubernetes:helm.sh/v3:Release")
    assert "description" not in release.inputs
    values = unwrap_secret(release.inputs["values"])
    assert "affinity" in values
    assert values["affinity"] is None


def test_secrets_stay_secret_in_the_plan_nested_in_values_and_in_kubernetes_secret_data() -> None:
    run = _secrets_run()
    plan = build_plan(run, {}, [])
    text = json.dumps(plan)
    for revealed in ("hunter2", "s3cr3t", "not-a-pulumi-secret", "c2VjcmV0"):
        assert revealed not in text
    (secret,) = [r for r in plan["resources"] if r["type"] == "kubernetes:core/v1:Secret"]
    assert secret["inputs"]["stringData"] == {"token": "[secret]"}
    assert secret["inputs"]["data"] == {"key": "[secret]"}
    (release,) = [r for r in plan["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release"]
    assert release["inputs"]["values"]["adminPassword"] == "[secret]"


def test_every_resource_lists_what_it_depends_on(committed_runs: dict[str, StackRun]) -> None:
    plan = build_plan(committed_runs["staging"], {}, [])
    by_name = {resource["name"]: resource for resource in plan["resources"]}
    (vpc,) = [r for r in plan["resources"] if r["type"] == "aws:ec2/vpc:Vpc"]
    subnets = [r for r in plan["resources"] if r["type"] == "aws:ec2/subnet:Subnet"]
    assert subnets
    assert all(vpc["urn"] in subnet["dependencies"] for subnet in subnets), "a subnet depends on its VPC"
    for resource in plan["resources"]:
        assert resource["dependencies"] == sorted(set(resource["dependencies"]))
        if resource["parent"]:
            assert resource["parent"] in resource["dependencies"], f"{resource['name']} lists its parent"
    # depends_on: the model service's objects wait for the namespace they live in.
    namespace = by_name["model-service-namespace"]["urn"]
    assert namespace in by_name["model-service-service-account"]["dependencies"]
    # The provider a resource is created through orders it too: the cluster's objects wait for the kubeconfig.
    (provider,) = [r for r in plan["resources"] if r["type"] == "pulumi:providers:kubernetes"]
    assert provider["urn"] in by_name["model-service-namespace"]["dependencies"]


def test_readiness_findings_go_into_the_plan() -> None:
    violation = {"policy": "storage-class", "level": "mandatory", "urn": "urn:x", "message": "no class"}
    plan = build_plan(_secrets_run(), {}, [], [violation])
    assert plan["readiness"] == {"violations": [violation]}
