"""Whole-stack fixtures: the real program, run by the same engine `mlstack preview` uses."""

import copy
from collections.abc import Callable
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
