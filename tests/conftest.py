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
