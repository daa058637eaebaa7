"""Each subcommand's --help says what it does, its defaults, the credentials it needs and its exit codes; verify
without credentials says how to provide them and exits 3 as its help and the README say."""

from pathlib import Path

import pytest

from infra.cli import main

SUBCOMMANDS = [
    ["preview"],
    ["model-version"],
    ["release", "status"],
    ["release", "promote"],
    ["release", "abort"],
    ["cost", "refresh"],
    ["verify"],
    ["diff"],
    ["deploy-settings"],
]


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_help_names_credentials_and_exit_codes(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "\ncredentials: " in text
    assert "\nexit codes:\n  0  " in text
    assert "  2  " in text  # every command refuses bad input with 2


def test_options_state_their_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    for command, default in (
        (["preview"], "default: build/STACK"),
        (["model-version"], "default: every stack file"),
        (["diff"], "default: the first 50"),
        (["cost", "refresh"], "default: the committed snapshot"),
    ):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        assert default in " ".join(capsys.readouterr().out.split()), command


def test_verify_without_credentials_says_how_to_provide_them_and_exits_3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    assert main(["verify", "prod"]) == 3
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith("error: no AWS credentials to read the account for stack prod; provide them")
    assert "AWS_PROFILE" in error
    assert "AWS_ACCESS_KEY_ID" in error
