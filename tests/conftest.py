"""Whole-stack fixtures: the real program, run by the same engine `mlstack preview` uses."""

import copy
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.preview.engine import StackRun, run_program
from infra.preview.stack_file import read_stack_file

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMITTED_STACKS = ("dev", "staging", "prod")

RunStack = Callable[..., StackRun]
# Fixture scopes wider than a test but narrower than a worker's session.
SHARED_WITHIN_A_FILE = {"class", "module", "package"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep the tests that share a module-scoped fixture (a server, a daemon, a run) on one xdist worker.

    `make unit` distributes tests one by one (`--dist loadgroup`); a test in no group can go to any worker. A
    module-scoped fixture is computed once per worker that runs a test using it, so its users are grouped by file:
    a server or Prometheus starts once, not once per worker. Session-scoped fixtures are once per worker anyway.
    Without xdist the mark does nothing. Runs before xdist's own hook, which reads the mark.
    """
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        definitions = item._fixtureinfo.name2fixturedefs.values()
        if any(definition.scope in SHARED_WITHIN_A_FILE for chain in definitions for definition in chain):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


def stack_config(stack: str) -> dict[str, Any]:
    """A committed stack file's config map, as a fresh copy a test may edit."""
    config, _ = read_stack_file(REPO_ROOT, stack)
    return copy.deepcopy(config)


@pytest.fixture(scope="session")
def committed_runs() -> dict[str, StackRun]:
    """One run per committed stack file, shared by the tests that only read the graph."""
    runs = {}
    for stack in COMMITTED_STACKS:
        config, secret_keys = read_stack_file(REPO_ROOT, stack)
        runs[stack] = run_program(stack, config, secret_keys)
    return runs


@pytest.fixture(params=COMMITTED_STACKS)
def stack_run(request: pytest.FixtureRequest, committed_runs: dict[str, StackRun]) -> StackRun:
    """Each committed stack file's run in turn."""
    return committed_runs[request.param]


@pytest.fixture
def run_stack() -> RunStack:
    """Run the program for a stack name and a config map (e.g. a committed file with one key changed)."""

    def run(stack: str, config: dict[str, Any], secret_keys: list[str] | None = None) -> StackRun:
        return run_program(stack, config, secret_keys)

    return run


@dataclass(frozen=True)
class CliPreview:
    """What one `mlstack preview STACK --out OUT` process did; OUT is shared, so tests only read it."""

    out: Path
    returncode: int
    stdout: str
    stderr: str

    def plan(self) -> dict[str, Any]:
        plan: dict[str, Any] = json.loads((self.out / "plan.json").read_text())
        return plan


CommittedPreview = Callable[[str], CliPreview]


@pytest.fixture(scope="session")
def committed_preview(tmp_path_factory: pytest.TempPathFactory) -> CommittedPreview:
    """`mlstack preview STACK` of a committed stack file as a real process, run once per test session.

    Several tests read the same plan (its shape, its cost, what a stack file says); they share one process's output,
    across xdist workers too: the first worker to ask runs it under a lock, the others read its record.
    """
    shared = _this_sessions_folder(tmp_path_factory) / "committed-previews"
    shared.mkdir(exist_ok=True)

    def preview(stack: str) -> CliPreview:
        assert stack in COMMITTED_STACKS, f"{stack} is not a committed stack file"
        out, record = shared / stack, shared / f"{stack}.json"
        with (shared / f"{stack}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not record.exists():
                result = subprocess.run(
                    [sys.executable, "-m", "infra.cli", "preview", stack, "--out", str(out)],
                    cwd=REPO_ROOT,
                    env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=False,
                )
                fields = {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr}
                record.write_text(json.dumps(fields))
        return CliPreview(out, **json.loads(record.read_text()))

    return preview


def _this_sessions_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of this test session that all its xdist workers see: each worker's base folder lies inside it."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base
