"""What the plan shows a reviewer: secrets hidden, invented values marked, numbers as numbers."""

from pulumi.runtime import rpc

from infra.preview.plan import PlanRenderer


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
