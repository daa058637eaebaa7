"""The recording engine: runs the real Pulumi program offline and records every resource it registers.

It stands in for the Pulumi CLI and the provider plugins. The program under it is the very program
`pulumi up` runs: it is loaded from `infra/` the same way the Python language host loads it.
"""

import asyncio
import json
import re
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import struct_pb2  # no stubs (pyproject ignores its missing imports): the SDK's wire types
from pulumi.runtime import rpc, settings
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import wait_for_rpcs

from infra.preview.fake_cloud import FakeCloud

PROJECT = "mlstack"
PROGRAM_DIR = Path(__file__).resolve().parents[1]
SECRET = "[secret]"
UNKNOWN = "[unknown]"


@dataclass(frozen=True)
class RecordedResource:
    """One registration, as the engine received it."""

    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    provider: str | None
    inputs: dict[str, Any]
    id: str | None
    outputs: dict[str, Any] = field(default_factory=dict)
    protect: bool = False
    retain_on_delete: bool = False
    # URNs this resource depends on, all together and per input property (for policy rules and the diagram).
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    # The `customTimeouts` option as sent ("create", "update", "delete": Go durations such as "20m"), and the
    # `ignoreChanges` paths: the provider's await deadline and what the next update leaves alone depend on them.
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    ignore_changes: list[str] = field(default_factory=list)


@dataclass
class StackRun:
    """Everything one run of the program registered and exported."""

    project: str
    stack: str
    resources: list[RecordedResource]
    outputs: dict[str, Any]
    invented: set[str] = field(default_factory=set)
    invokes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of_type(self, type_token: str) -> list[RecordedResource]:
        return [resource for resource in self.resources if resource.type == type_token]

    def by_urn(self, urn: str) -> RecordedResource:
        return next(resource for resource in self.resources if resource.urn == urn)

    def by_id(self, resource_id: str) -> RecordedResource:
        return next(resource for resource in self.resources if resource.id == resource_id)

    def children_of(self, urn: str) -> list[RecordedResource]:
        """Children in a stable order (by name, numbers compared as numbers), whatever the registration order."""
        children = [resource for resource in self.resources if resource.parent == urn]
        return sorted(children, key=lambda resource: _natural_key(resource.name))

    def in_tree_order(self) -> list[RecordedResource]:
        """Every resource, parents before children, siblings in `children_of` order."""
        ordered: list[RecordedResource] = []

        def visit(resource: RecordedResource) -> None:
            ordered.append(resource)
            for child in self.children_of(resource.urn):
                visit(child)

        for root in (resource for resource in self.resources if resource.parent is None):
            visit(root)
        return ordered


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part]


class RecordingMonitor(MockMonitor):
    """The SDK's mock monitor, keeping the parent, provider and inputs of each registration."""

    def __init__(self, cloud: FakeCloud) -> None:
        super().__init__(cloud)
        self.recorded: list[RecordedResource] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method's name)
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        inputs = deserialize_inputs(request.object) if request.type != "pulumi:pulumi:Stack" else {}
        timeouts = request.customTimeouts
        self.recorded.append(
            RecordedResource(
                urn=response.urn,
                type=request.type,
                name=request.name,
                parent=request.parent or None,
                custom=bool(request.custom),
                provider=request.provider or None,
                inputs=inputs,
                id=response.id or None,
                outputs=self.resources[response.urn].state if response.urn in self.resources else {},
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                dependencies=list(request.dependencies),
                property_dependencies={
                    key: list(value.urns) for key, value in request.propertyDependencies.items() if value.urns
                },
                custom_timeouts={
                    operation: getattr(timeouts, operation)
                    for operation in ("create", "update", "delete")
                    if getattr(timeouts, operation)
                },
                ignore_changes=list(request.ignoreChanges),
            )
        )
        return response


def deserialize_inputs(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A registration's inputs as the provider receives them.

    The SDK drops a top-level `None` before sending but sends a `None` nested in a map or list as a null, and the
    engine and the providers keep it (pulumi-kubernetes keeps nulls in Helm values since v4.30.0; Helm then deletes
    the chart's default for that key). `rpc.deserialize_properties` drops nulls at every level, so nested ones are
    put back here. Secrets, unknowns, assets and resource references are left to the SDK's own deserializer,
    which also lifts a nested secret to the property that holds it.
    """
    inputs = {key: _with_nulls(value) for key, value in struct.items()}
    return {key: value for key, value in inputs.items() if value is not None}


def _with_nulls(value: Any) -> Any:
    if isinstance(value, struct_pb2.Struct):
        if rpc._special_sig_key in value:
            return rpc.deserialize_property(value)
        items = {key: _with_nulls(item) for key, item in value.items()}
        if any(rpc.is_rpc_secret(item) for item in items.values()):
            return rpc.wrap_rpc_secret({key: rpc.unwrap_rpc_secret(item) for key, item in items.items()})
        return items
    if isinstance(value, struct_pb2.ListValue):
        listed = [_with_nulls(item) for item in value]
        if any(rpc.is_rpc_secret(item) for item in listed):
            return rpc.wrap_rpc_secret([rpc.unwrap_rpc_secret(item) for item in listed])
        return listed
    return rpc.deserialize_property(value)


def run_program(
    stack: str, config: dict[str, Any], secret_keys: list[str] | None = None, *, program_dir: Path = PROGRAM_DIR
) -> StackRun:
    """Run the Pulumi program in `program_dir` (default `infra/`) for `stack` with `config` (`namespace:key` ->
        value) and record it.
    import yaml

        Another program (the account bootstrap in `bootstrap/`) runs the same way, under its own Pulumi.yaml's name.
        Exceptions from the program (a StackConfigError, say) propagate unchanged.
    """
    project = PROJECT if program_dir == PROGRAM_DIR else _project_name(program_dir)
    region = config.get("aws:region")
    cloud = FakeCloud(region if isinstance(region, str) else "us-east-1")
    monitor = RecordingMonitor(cloud)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        settings.reset_options()
        pulumi.runtime.set_all_config({key: _as_config_text(value) for key, value in config.items()}, secret_keys or [])
        pulumi.runtime.set_mocks(cloud, project=project, stack=stack, preview=False, monitor=monitor)
        runpy.run_path(str(program_dir), run_name="__main__")
        loop.run_until_complete(wait_for_rpcs())
        outputs = loop.run_until_complete(_resolve_exports())
    except BaseException:
        _abandon_outstanding_work(loop)
        raise
    finally:
        settings.reset_options()
        pulumi.runtime.set_all_config({}, [])
        asyncio.set_event_loop(None)
        loop.close()
    return StackRun(
        project=project,
        stack=stack,
        resources=monitor.recorded,
        outputs=outputs,
        invented=cloud.invented,
        invokes=cloud.invokes,
    )


def _project_name(program_dir: Path) -> str:
    """The `name:` of the Pulumi.yaml beside the program, as the CLI would put it into URNs; a program without one
    (a test fixture) runs under this project's name."""
    project_file = program_dir / "Pulumi.yaml"
    if not project_file.is_file():
        return PROJECT
    document = yaml.safe_load(project_file.read_text(encoding="utf-8"))
    return str(document["name"])


def _abandon_outstanding_work(loop: asyncio.AbstractEventLoop) -> None:
    """A failed program leaves registrations in flight; cancel them so the loop closes cleanly."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _as_config_text(value: Any) -> str:
    """Config reaches a program as text, structured values as JSON, exactly as the CLI hands it over."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


async def _resolve_exports() -> dict[str, Any]:
    root = settings.get_root_resource()
    exported: dict[str, Any] = getattr(root, "outputs", {})
    resolved: dict[str, Any] = {}
    for name, value in exported.items():
        output = pulumi.Output.from_input(value)
        is_secret = await output.is_secret()
        resolved[name] = SECRET if is_secret else await output.future()
    return resolved


def is_secret_value(value: Any) -> bool:
    return bool(rpc.is_rpc_secret(value))


def unwrap_secret(value: Any) -> Any:
    return rpc.unwrap_rpc_secret(value)
