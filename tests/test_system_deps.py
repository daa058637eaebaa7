"""tools/system-deps: what `make test` installs from Debian, and the one line it prints when it can't."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "tools" / "system-deps"
PACKAGES = ("prometheus", "prometheus-alertmanager", "graphviz", "nodejs", "npm")
COMMANDS = ("promtool", "prometheus", "prometheus-alertmanager", "dot", "node", "npm")


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/bash\n{body}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _run(path_dir: Path) -> subprocess.CompletedProcess[str]:
    """The script with PATH limited to `path_dir`, where each test puts the commands it means to exist."""
    return subprocess.run(
        ["/bin/bash", str(SCRIPT)],
        env={"PATH": str(path_dir), "HOME": os.environ.get("HOME", "/")},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(("uid", "with_apt"), [("1000", True), ("0", False)])
def test_without_root_or_apt_it_stops_with_one_line_naming_every_package(
    tmp_path: Path, uid: str, with_apt: bool
) -> None:
    _stub(tmp_path, "id", f"echo {uid}")
    if with_apt:
        _stub(tmp_path, "apt-get", "echo must-not-run >&2; exit 9")
    result = _run(tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: make test needs the Debian packages")
    assert "apt-get install" in lines[0]
    for package in PACKAGES:
        assert f" {package}" in lines[0]
    assert "must-not-run" not in result.stderr


def test_as_root_with_apt_it_installs_only_what_is_missing(tmp_path: Path) -> None:
    calls = tmp_path / "apt-calls"
    _stub(tmp_path, "id", "echo 0")
    _stub(tmp_path, "apt-get", f'echo "$*" >> {calls}')
    # graphviz and Node.js are present; Prometheus and Alertmanager are not.
    for command in ("dot", "node", "npm"):
        _stub(tmp_path, command, "true")
    result = _run(tmp_path)
    assert result.returncode == 0, result.stderr
    recorded = calls.read_text(encoding="utf-8").splitlines()
    assert recorded[0].startswith("update")
    installed = recorded[1].split()
    assert installed[0] == "install"
    assert sorted(word for word in installed if not word.startswith("-") and word != "install") == [
        "prometheus",
        "prometheus-alertmanager",
    ]


def test_with_every_command_present_it_does_nothing(tmp_path: Path) -> None:
    _stub(tmp_path, "id", "echo 1000")
    for command in COMMANDS:
        _stub(tmp_path, command, "true")
    result = _run(tmp_path)
    assert result.returncode == 0
    assert result.stdout == result.stderr == ""
