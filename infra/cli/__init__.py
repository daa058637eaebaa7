"""The `mlstack` command: review a stack before anything changes.

mlstack preview STACK [--out DIR]
mlstack model-version VERSION [--stack STACK ...]
mlstack image-tag TAG --stack STACK
"""

import argparse
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from infra.cli.stack_versions import DEFAULT_CANARY_WEIGHT, VersionChange, set_image_tag, set_model_version
from infra.config import StackConfigError
from infra.config.load import STACK_CONFIG_DIR
from infra.preview.engine import PROGRAM_DIR, run_program
from infra.preview.plan import build_plan, write_plan
from infra.preview.stack_file import available_stacks, read_stack_file
from infra.preview.tree import render_outputs, render_summary, render_tree

EXIT_OK = 0
EXIT_POLICY_VIOLATION = 1
EXIT_INVALID = 2
EXIT_PROGRAM_FAILED = 3


def project_root(start: Path) -> Path:
    """The folder holding Pulumi.yaml: the working directory or one above it, else this checkout."""
    for folder in (start, *start.parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder
    return PROGRAM_DIR.parent


def _stack_config_error(error: BaseException) -> StackConfigError | None:
    """The StackConfigError behind an exception, even when the SDK wrapped it on the way out."""
    current: BaseException | None = error
    visited: set[int] = set()
    while current is not None and id(current) not in visited:  # chains can loop back on themselves
        if isinstance(current, StackConfigError):
            return current
        visited.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def preview(stack: str, out_dir: Path | None, debug: bool) -> int:
    root = project_root(Path.cwd())
    out_dir = out_dir or root / "build" / stack
    try:
        config, secret_keys = read_stack_file(root, stack)
        run = run_program(stack, config, secret_keys)
    except Exception as error:
        config_error = _stack_config_error(error)
        if config_error is not None:
            print(f"error: {config_error}", file=sys.stderr)
            return EXIT_INVALID
        if debug:
            traceback.print_exc()
        print(
            f"error: the program failed for stack {stack}: {type(error).__name__}: {error}"
            " (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_PROGRAM_FAILED

    plan = build_plan(run)
    plan_path = write_plan(run, plan, out_dir)
    print(f"Preview of stack '{stack}' (offline: nothing was created; [unknown] marks values AWS assigns)\n")
    print(render_tree(run))
    print()
    print(render_summary(run))
    print("\nOutputs:")
    print(render_outputs(plan["outputs"]))
    print("\nEstimated monthly cost: not estimated by this version of mlstack")
    violations = plan["policy"]["violations"]
    print(f"\nPolicy: {len(violations)} violation(s)")
    print(f"\nWrote {plan_path} and {plan_path.parent / 'manifests'}/")
    return EXIT_OK


def change_versions(stacks: list[str] | None, change_one: Callable[[Path, str], VersionChange]) -> int:
    root = project_root(Path.cwd())
    try:
        for stack in stacks or available_stacks(root):
            change = change_one(root, stack)
            state = f"{change.before} -> {change.after}" if change.changed else f"already {change.after}"
            print(f"{STACK_CONFIG_DIR}/Pulumi.{stack}.yaml: {change.where}: {state}")
    except StackConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlstack", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    preview_parser = commands.add_parser(
        "preview", help="offline preview of a stack: resources, cost and policy, with no credentials"
    )
    preview_parser.add_argument("stack", help="stack name: reads stacks/Pulumi.<stack>.yaml")
    preview_parser.add_argument("--out", type=Path, help="where plan.json and manifests/ go (default build/STACK)")
    preview_parser.add_argument("--debug", action="store_true", help="show tracebacks of program failures")
    version_parser = commands.add_parser(
        "model-version", help="put a new model version into the stack files, the way each stack releases"
    )
    version_parser.add_argument("version", help="the published model package version, e.g. 1.1.0")
    version_parser.add_argument(
        "--stack", action="append", dest="stacks", help="a stack to change (repeatable; default: every stack file)"
    )
    version_parser.add_argument(
        "--canary-weight", type=int, default=DEFAULT_CANARY_WEIGHT, help="percent for a canary that was off"
    )
    tag_parser = commands.add_parser(
        "image-tag", help="put a new service image into a stack file, the way the stack releases (deploy.yml)"
    )
    tag_parser.add_argument("tag", help="the image tag pushed to the stack's ECR repository, e.g. the git SHA")
    tag_parser.add_argument("--stack", required=True, help="the stack to change")
    args = parser.parse_args(argv)
    if args.command == "preview":
        return preview(args.stack, args.out, args.debug)
    if args.command == "model-version":
        return change_versions(
            args.stacks, lambda root, stack: set_model_version(root, stack, args.version, args.canary_weight)
        )
    if args.command == "image-tag":
        return change_versions([args.stack], lambda root, stack: set_image_tag(root, stack, args.tag))
    parser.error(f"unknown command {args.command}")
    return EXIT_INVALID
