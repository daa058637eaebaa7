"""The `mlstack` command: review a stack before anything changes.

mlstack preview STACK [--out DIR] [--graph] [--project bootstrap]
mlstack diff BASE_PLAN NEW_PLAN
mlstack cost refresh [--region R ...] [--out PATH]
mlstack verify STACK
mlstack model-version VERSION [--stack STACK ...]
mlstack deploy-settings STACK [--targets-file PATH]
mlstack release status|promote [--full]|abort STACK [--context CONTEXT]
"""

import argparse
import json
import sys
import textwrap
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from infra.cli.deploy_settings import deploy_settings
from infra.cli.release import ReleaseError, abort, connect, describe, promote
from infra.cli.stack_versions import VersionChange, set_model_version
from infra.cli.verify import verify_account
from infra.config import StackConfigError
from infra.config.load import STACK_CONFIG_DIR, parse_stack_config
from infra.policy.rules import MANDATORY, Violation
from infra.preview.cost.bench import BenchResultsError, load_bench_results
from infra.preview.cost.estimate import CostEstimate, estimate_cost
from infra.preview.cost.prices import SNAPSHOT_PATH, PriceSnapshotError, load_snapshot
from infra.preview.cost.refresh import PRICING_REGION, PriceRefreshError, refresh_snapshot
from infra.preview.cost.serving import ServingEstimate, estimate_serving
from infra.preview.diff import MAX_FIELDS, MAX_LISTED, PlanError, load_plan, render_markdown
from infra.preview.engine import PROGRAM_DIR, StackRun, run_program
from infra.preview.graph import write_graph
from infra.preview.plan import build_plan, write_plan
from infra.preview.policy import check_policies, policy_rules_run
from infra.preview.readiness import READINESS_RULES, check_readiness
from infra.preview.stack_file import available_stacks, cidr_overlaps, read_stack_file
from infra.preview.tree import (
    render_cost,
    render_outputs,
    render_serving,
    render_summary,
    render_tree,
    render_violations,
)

EXIT_OK = 0
EXIT_POLICY_VIOLATION = 1
EXIT_INVALID = 2
EXIT_PROGRAM_FAILED = 3
# The standard AWS credential chain boto3 reads; said wherever a command needs an account.
PROVIDE_CREDENTIALS = (
    "provide them the usual AWS way: AWS_PROFILE (after `aws sso login --profile NAME`), or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or a role the machine already has (CI's OIDC role, an instance "
    "profile)"
)


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


def preview(
    stack: str,
    out_dir: Path | None,
    debug: bool,
    graph: bool = False,
    project: str | None = None,
    *,
    program_dir: Path = PROGRAM_DIR,
) -> int:
    """`mlstack preview STACK`; `project` previews another Pulumi project of this repository (the account
    bootstrap); `program_dir` runs another program with this project's stack files (the readiness fixtures in
    tests/fixtures/readiness use it)."""
    root = project_root(Path.cwd())
    out_dir = out_dir or root / "build" / (f"{project}-{stack}" if project else stack)
    unusable = _unusable_out_dir(out_dir)
    if unusable:
        print(f"error: --out {out_dir}: {unusable}", file=sys.stderr)
        return EXIT_PROGRAM_FAILED
    try:
        if project is None:
            config, secret_keys = read_stack_file(root, stack)
        else:
            # Another Pulumi project of this repository (the account bootstrap), with its own stack files.
            program_dir = _other_project(root, project)
            config, secret_keys = read_stack_file(program_dir, stack)
        run = run_program(stack, config, secret_keys, program_dir=program_dir)
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

    try:
        cost, serving = _priced(run, str(config.get("aws:region", "")))
    except (PriceSnapshotError, BenchResultsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_PROGRAM_FAILED
    violations, readiness, plan = _checked_plan(run, cost, serving)
    rules_run = plan["policy"]["rules_run"]
    try:
        plan_path = write_plan(run, plan, out_dir)
    except OSError as error:
        print(f"error: cannot write the plan to {out_dir}: {error.strerror or error}", file=sys.stderr)
        return EXIT_PROGRAM_FAILED
    print(f"Preview of stack '{stack}' (offline: nothing was created; [unknown] marks values AWS assigns)\n")
    if project is None:
        for warning in cidr_overlaps(root, stack, config):
            print(f"warning: {warning}\n")
    print(render_tree(run))
    print()
    print(render_summary(run))
    print("\nOutputs:")
    print(render_outputs(plan["outputs"]))
    print()
    print(render_cost(cost), render_serving(serving), sep="\n\n")
    print()
    print(render_violations(violations, rules_run=rules_run))
    print(render_violations(readiness, title="Readiness", rules_run=len(READINESS_RULES)))
    if graph:
        try:
            diagrams = write_graph(run, out_dir)
        except OSError as error:
            print(f"error: cannot write the diagram to {out_dir}: {error.strerror or error}", file=sys.stderr)
            return EXIT_PROGRAM_FAILED
        for path in diagrams:
            print(f"\nDiagram: {path}")
    print(f"\nWrote {plan_path} and {plan_path.parent / 'manifests'}/")
    return _exit_code(violations, readiness)


def _priced(run: StackRun, region: str) -> tuple[CostEstimate, ServingEstimate]:
    """The monthly estimate and the price per prediction, from the committed price snapshot and bench results."""
    snapshot = load_snapshot()
    return estimate_cost(run, region, snapshot), estimate_serving(run, region, snapshot, load_bench_results())


def _checked_plan(
    run: StackRun, cost: CostEstimate, serving: ServingEstimate
) -> tuple[list[Violation], list[Violation], dict[str, Any]]:
    """The policy and readiness findings and the plan that records them with how many rules ran; the plan's cost
    carries the price per prediction under `per_prediction`."""
    violations = check_policies(run)
    # Sorted: the rules walk resources in the order the engine registered them, which varies from run to run.
    readiness = sorted(check_readiness(run), key=lambda found: (found.policy, found.urn, found.message))
    plan = build_plan(
        run,
        cost.to_plan() | {"per_prediction": serving.to_plan()},
        [asdict(violation) for violation in violations],
        [asdict(violation) for violation in readiness],
    )
    plan["policy"]["rules_run"] = policy_rules_run(run)
    plan["readiness"]["rules_run"] = len(READINESS_RULES)
    return violations, readiness, plan


def _exit_code(violations: list[Violation], readiness: list[Violation]) -> int:
    """EXIT_POLICY_VIOLATION, with one line naming the first mandatory finding, or EXIT_OK."""
    failures = [("policy", violation) for violation in violations if violation.level == MANDATORY]
    failures += [("readiness rule", violation) for violation in readiness if violation.level == MANDATORY]
    if failures:
        kind, first = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        print(
            f"error: {kind} {first.policy} violated by {first.urn.rsplit('::', 1)[-1]}: {first.message}{more}",
            file=sys.stderr,
        )
        return EXIT_POLICY_VIOLATION
    return EXIT_OK


def _unusable_out_dir(out_dir: Path) -> str | None:
    """Why plan.json and manifests/ cannot go to `out_dir`, checked before the program runs; None when they can."""
    for folder in (out_dir, *out_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                return f"{folder} is a file, not a folder; name a folder for plan.json and manifests/"
            return None
    return None


def _other_project(root: Path, project: str) -> Path:
    program_dir = root / project
    if not (program_dir / "Pulumi.yaml").is_file() or not (program_dir / "__main__.py").is_file():
        raise StackConfigError(f"{project}/: not a Pulumi project of this repository (no Pulumi.yaml and __main__.py)")
    return program_dir


def diff(base: Path, new: Path, everything: bool = False) -> int:
    try:
        print(render_markdown(load_plan(base), load_plan(new), everything=everything), end="")
    except PlanError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def cost_refresh(regions: list[str] | None, instance_types: list[str] | None, out: Path) -> int:
    import boto3  # noqa: PLC0415 (only this command talks to AWS)
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    root = project_root(Path.cwd())
    try:
        current = load_snapshot()
        stack_regions, stack_types = _stack_prices_needed(root)
    except (PriceSnapshotError, StackConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    wanted_regions = regions or sorted(set(current.regions) | stack_regions)
    wanted_types = instance_types or sorted(
        {name for table in current.regions.values() for name in table["ec2_instance_hour"]} | stack_types
    )
    try:
        client = boto3.client("pricing", region_name=PRICING_REGION)
        snapshot = refresh_snapshot(client, wanted_regions, wanted_types)
    except PriceRefreshError as error:
        print(f"error: {error}; the snapshot was not changed", file=sys.stderr)
        return EXIT_PROGRAM_FAILED
    except (BotoCoreError, ClientError) as error:
        print(f"error: cannot read the AWS Price List API: {error}; the snapshot was not changed", file=sys.stderr)
        return EXIT_PROGRAM_FAILED
    out.write_text(json.dumps(snapshot.to_json(), indent=2) + "\n", encoding="utf-8")
    print(f"Wrote {out}: {len(wanted_regions)} regions, {len(wanted_types)} instance types, as of {snapshot.as_of}")
    return EXIT_OK


def _stack_prices_needed(root: Path) -> tuple[set[str], set[str]]:
    """The regions and instance types the stack files use, so a refresh prices all of them."""
    regions: set[str] = set()
    types: set[str] = set()
    for stack in available_stacks(root):
        config, _ = read_stack_file(root, stack)
        env = parse_stack_config(stack, config)
        regions.add(env.region)
        compute = env.config.compute
        if compute.mode == "ec2":
            types.add(compute.ec2.instance_type)
        if compute.eks is not None:
            types.update(compute.eks.cpu_pool.instance_types)
            types.update(compute.eks.gpu_pool.instance_types)
    return regions, types


def verify(stack: str) -> int:
    import boto3  # noqa: PLC0415 (only this command talks to AWS)
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError  # noqa: PLC0415

    root = project_root(Path.cwd())
    try:
        config, _ = read_stack_file(root, stack)
        env = parse_stack_config(stack, config)
    except StackConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    try:
        checks = verify_account(env, boto3.Session())
    except NoCredentialsError:
        print(
            f"error: no AWS credentials to read the account for stack {stack}; {PROVIDE_CREDENTIALS}", file=sys.stderr
        )
        return EXIT_PROGRAM_FAILED
    except (BotoCoreError, ClientError) as error:
        print(f"error: cannot read the account for stack {stack} in {env.region}: {error}", file=sys.stderr)
        return EXIT_PROGRAM_FAILED
    for check in checks:
        print(check.line())
    failed = [check for check in checks if not check.ok]
    print(f"{len(checks)} checks, {len(failed)} failed")
    return EXIT_POLICY_VIOLATION if failed else EXIT_OK


def change_versions(stacks: list[str] | None, change_one: Callable[[Path, str], VersionChange]) -> int:
    root = project_root(Path.cwd())
    try:
        for stack in stacks or available_stacks(root):
            change = change_one(root, stack)
            state = f"{change.before} -> {change.after}" if change.changed else f"already {change.after}"
            print(f"{STACK_CONFIG_DIR}/Pulumi.{stack}.yaml: {change.where}: {state}")
            if change.changed and change.traffic:
                print(f"  {change.traffic}")
    except StackConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def print_deploy_settings(stack: str, targets_file: Path | None) -> int:
    root = project_root(Path.cwd())
    try:
        settings = deploy_settings(root, stack)
    except StackConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    except Exception as error:
        config_error = _stack_config_error(error)
        print(f"error: {config_error or f'the program failed for stack {stack}: {error}'}", file=sys.stderr)
        return EXIT_INVALID if config_error else EXIT_PROGRAM_FAILED
    print(settings.github_output(), end="")
    if targets_file is not None:
        targets_file.parent.mkdir(parents=True, exist_ok=True)
        targets_file.write_text("".join(f"{urn}\n" for urn in settings.registry_targets), encoding="utf-8")
    return EXIT_OK


def release(action: str, stack: str, context: str | None, full: bool) -> int:
    """Show, promote or abort the stack's release in progress, on the stack's cluster."""
    root = project_root(Path.cwd())
    try:
        config, _ = read_stack_file(root, stack)
        env = parse_stack_config(stack, config)
    except StackConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    if env.config.compute.mode != "eks":
        print(
            f"error: {STACK_CONFIG_DIR}/Pulumi.{stack}.yaml: compute.mode is 'ec2'; releases are Rollouts on EKS "
            "(the EC2 host rolls its instance instead)",
            file=sys.stderr,
        )
        return EXIT_INVALID
    try:
        rollout = connect(env.cluster_name, context)
        if action == "status":
            print(f"{rollout.where}, stack {stack} ({env.config.release.strategy})")
            for line in describe(rollout.get()):
                print(f"  {line}")
        elif action == "promote":
            print(promote(rollout, full))
        else:
            print(abort(rollout))
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_PROGRAM_FAILED
    return EXIT_OK


NO_CREDENTIALS = "none: works offline, without AWS credentials"
AWS_CREDENTIALS = f"AWS credentials; {PROVIDE_CREDENTIALS}"


def _command(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    name: str,
    summary: str,
    *,
    credentials: str,
    exits: dict[int, str],
    details: str = "",
) -> argparse.ArgumentParser:
    """A subcommand whose --help says what it does, its defaults (per option), the credentials it needs and its
    exit codes."""
    epilog = (
        textwrap.fill(f"credentials: {credentials}", width=100)
        + "\n\nexit codes:\n"
        + "".join(f"  {code}  {meaning}\n" for code, meaning in sorted(exits.items()))
    )
    return commands.add_parser(
        name,
        help=summary,
        description=f"{summary}.{' ' + details if details else ''}",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlstack", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    preview_parser = _command(
        commands,
        "preview",
        "offline preview of a stack: resources, cost, policy and deploy readiness",
        details="Runs infra/__main__.py under the Pulumi SDK's mocks with stacks/Pulumi.STACK.yaml; "
        "writes plan.json and manifests/.",
        credentials=NO_CREDENTIALS,
        exits={
            EXIT_OK: "the stack is valid and breaks no mandatory policy or readiness rule",
            EXIT_POLICY_VIOLATION: "a mandatory policy or readiness rule is violated (the plan is still written)",
            EXIT_INVALID: "the stack file is wrong (one line: file, key, value, what is allowed)",
            EXIT_PROGRAM_FAILED: "anything else: the program failed, --out is unusable (--debug: traceback)",
        },
    )
    preview_parser.add_argument("stack", help="stack name: reads stacks/Pulumi.<stack>.yaml")
    preview_parser.add_argument("--out", type=Path, help="where plan.json and manifests/ go (default: build/STACK)")
    preview_parser.add_argument("--debug", action="store_true", help="show tracebacks of program failures")
    preview_parser.add_argument(
        "--graph",
        action="store_true",
        help="also draw the components (Mermaid; SVG with graphviz) (default: off)",
    )
    preview_parser.add_argument(
        "--project", help="another Pulumi project in this repository, e.g. bootstrap (reads bootstrap/stacks/)"
    )
    version_parser = _command(
        commands,
        "model-version",
        "set service.modelVersion in the stack files (the stack's Rollout releases it)",
        details="Edits the files in place, comments kept, and prints for each stack what deploying the change does "
        "to live traffic; a version that would make a file invalid writes nothing.",
        credentials=NO_CREDENTIALS,
        exits={EXIT_OK: "written (or already that version)", EXIT_INVALID: "not an X.Y.Z version, or no such stack"},
    )
    version_parser.add_argument("version", help="the published model package version, X.Y.Z, e.g. 1.1.0")
    version_parser.add_argument(
        "--stack", action="append", dest="stacks", help="a stack to change (repeatable; default: every stack file)"
    )
    release_parser = commands.add_parser(
        "release", help="the stack's release in progress (its Argo Rollout): status, promote, abort"
    )
    release_commands = release_parser.add_subparsers(dest="release_command", required=True)
    for action, text in (
        ("status", "which version serves, the step or switch in progress, the analysis and what waits"),
        ("promote", "go on past the current pause (blue-green: switch now), like kubectl argo rollouts promote"),
        ("abort", "stop the release: all traffic back to the stable version, like kubectl argo rollouts abort"),
    ):
        action_parser = _command(
            release_commands,
            action,
            text,
            credentials="a kubeconfig that reaches the stack's cluster (`aws eks update-kubeconfig --name "
            "mlstack-STACK`), and the AWS credentials it uses; " + PROVIDE_CREDENTIALS,
            exits={
                EXIT_OK: "done",
                EXIT_INVALID: "the stack file is wrong or the stack is not on EKS",
                EXIT_PROGRAM_FAILED: "the cluster or the Rollout cannot be reached or changed",
            },
        )
        action_parser.add_argument("stack", help="stack name: its cluster is mlstack-STACK")
        action_parser.add_argument("--context", help="kubeconfig context (default: the one for the stack's cluster)")
        if action == "promote":
            action_parser.add_argument(
                "--full", action="store_true", help="skip the remaining steps, pauses and analysis (default: off)"
            )
    cost_parser = commands.add_parser("cost", help="the price snapshot behind the preview's cost estimate")
    cost_commands = cost_parser.add_subparsers(dest="cost_command", required=True)
    refresh_parser = _command(
        cost_commands,
        "refresh",
        "rebuild the price snapshot from the AWS Price List API",
        details="Writes nothing unless every price was found.",
        credentials=f"AWS credentials allowed pricing:GetProducts; {PROVIDE_CREDENTIALS}",
        exits={
            EXIT_OK: "written",
            EXIT_INVALID: "the current snapshot or a stack file is wrong",
            EXIT_PROGRAM_FAILED: "the Price List API could not be read or lacked a price",
        },
    )
    refresh_parser.add_argument(
        "--region", action="append", dest="regions", help="repeatable (default: the snapshot's and the stacks')"
    )
    refresh_parser.add_argument(
        "--instance-type",
        action="append",
        dest="instance_types",
        help="repeatable (default: the snapshot's and the stacks')",
    )
    refresh_parser.add_argument(
        "--out", type=Path, default=SNAPSHOT_PATH, help="default: the committed snapshot, %(default)s"
    )
    verify_parser = _command(
        commands,
        "verify",
        "check a live account against the stack: ECR, S3, security groups, EKS, IMDSv2 (read-only)",
        credentials=f"read-only AWS credentials in the stack's account; {PROVIDE_CREDENTIALS}",
        exits={
            EXIT_OK: "every check passed",
            EXIT_POLICY_VIOLATION: "a check failed (a missing resource is a failure)",
            EXIT_INVALID: "the stack file is wrong",
            EXIT_PROGRAM_FAILED: "the account could not be read: no credentials, access denied, no network",
        },
    )
    verify_parser.add_argument("stack", help="stack name: reads stacks/Pulumi.<stack>.yaml for region and names")
    diff_parser = _command(
        commands,
        "diff",
        "Markdown for a pull request: resources added, changed (old → new, replace or in place) and removed, "
        "and the monthly cost delta",
        credentials=NO_CREDENTIALS,
        exits={EXIT_OK: "printed", EXIT_INVALID: "a plan file cannot be read or is not an mlstack plan.json"},
    )
    diff_parser.add_argument("base", type=Path, help="the plan.json before the change (e.g. main's)")
    diff_parser.add_argument("new", type=Path, help="the plan.json after it")
    diff_parser.add_argument(
        "--all",
        action="store_true",
        dest="everything",
        help=f"list every resource and changed input (default: the first {MAX_LISTED}, {MAX_FIELDS} inputs each)",
    )
    settings_parser = _command(
        commands,
        "deploy-settings",
        "region, secrets provider, image repository and expected model of a stack, for the deploy workflow",
        details="Prints KEY=value lines for $GITHUB_OUTPUT.",
        credentials=NO_CREDENTIALS,
        exits={
            EXIT_OK: "printed",
            EXIT_INVALID: "the stack file is wrong",
            EXIT_PROGRAM_FAILED: "the program failed",
        },
    )
    settings_parser.add_argument("stack", help="stack name: reads stacks/Pulumi.<stack>.yaml")
    settings_parser.add_argument(
        "--targets-file", type=Path, help="write the URNs that create the image repository, one a line (default: none)"
    )
    args = parser.parse_args(argv)
    if args.command == "preview":
        return preview(args.stack, args.out, args.debug, args.graph, args.project)
    if args.command == "cost":
        return cost_refresh(args.regions, args.instance_types, args.out)
    if args.command == "verify":
        return verify(args.stack)
    if args.command == "diff":
        return diff(args.base, args.new, args.everything)
    if args.command == "model-version":
        return change_versions(args.stacks, lambda root, stack: set_model_version(root, stack, args.version))
    if args.command == "release":
        return release(args.release_command, args.stack, args.context, getattr(args, "full", False))
    if args.command == "deploy-settings":
        return print_deploy_settings(args.stack, args.targets_file)
    parser.error(f"unknown command {args.command}")
    return EXIT_INVALID
