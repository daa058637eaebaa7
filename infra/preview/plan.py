"""plan.json and the manifests folder, in the shape ARCHITECTURE.md fixes."""

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pulumi.runtime import rpc

from infra.preview.engine import SECRET, UNKNOWN, RecordedResource, StackRun

PLAN_VERSION = 1
MANIFEST_HEAD = ("apiVersion", "kind", "metadata", "spec")
# Types that are not objects in a cluster even though the Kubernetes provider registers them.
NOT_MANIFESTS = ("kubernetes:helm.sh/", "pulumi:providers:kubernetes")
KUBERNETES_SECRET = "kubernetes:core/v1:Secret"
# pulumi-kubernetes marks a Secret's `data` and `stringData` secret whatever the program passed (annotateSecrets in
# provider/pkg/provider/provider.go), so the plan hides them the same way.
SECRET_FIELDS = ("data", "stringData")


class PlanRenderer:
    """Turns recorded values into what a reviewer may see: secrets hidden, invented values marked unknown."""

    def __init__(self, invented: set[str]) -> None:
        # Longest first, so an ARN is replaced whole before the account id inside it.
        self._invented = sorted(invented, key=len, reverse=True)
        self._invented_exact = set(invented)
        self._pattern = re.compile("|".join(re.escape(value) for value in self._invented)) if invented else None

    def value(self, value: Any) -> Any:
        if rpc.is_rpc_secret(value):
            inner = rpc.unwrap_rpc_secret(value)
            # A secret map keeps its keys (a reviewer sees which entries a Secret holds), never its values.
            return dict.fromkeys(sorted(inner), SECRET) if isinstance(inner, dict) else SECRET
        if isinstance(value, str):
            return self._string(value)
        if isinstance(value, float) and value.is_integer():
            # The engine's wire format carries every number as a double; ports and counts are integers.
            return int(value)
        if isinstance(value, dict):
            # The engine's maps are unordered; sorted keys make plans and manifests diff cleanly.
            return {key: self.value(value[key]) for key in sorted(value)}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value

    def _string(self, text: str) -> str:
        if text == rpc.UNKNOWN or text in self._invented_exact:
            return UNKNOWN
        if self._pattern is None:
            return text
        return self._pattern.sub(UNKNOWN, text)


def shown_inputs(resource: RecordedResource) -> dict[str, Any]:
    """The inputs with the fields the provider always treats as secret marked secret."""
    if resource.type != KUBERNETES_SECRET:
        return resource.inputs
    return {
        key: rpc.wrap_rpc_secret(rpc.unwrap_rpc_secret(value)) if key in SECRET_FIELDS else value
        for key, value in resource.inputs.items()
    }


def dependencies_of(resource: RecordedResource) -> list[str]:
    """What the engine orders this resource after: its depends_on and input references (as the SDK sends them),
    its parent and its provider."""
    found = set(resource.dependencies)
    if resource.parent:
        found.add(resource.parent)
    if resource.provider:
        found.add(resource.provider.rsplit("::", 1)[0])
    return sorted(found)


def build_plan(
    run: StackRun,
    cost: dict[str, Any],
    violations: list[dict[str, Any]],
    readiness: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    renderer = PlanRenderer(run.invented)
    return {
        "version": PLAN_VERSION,
        "project": run.project,
        "stack": run.stack,
        "resources": [
            {
                "urn": resource.urn,
                "type": resource.type,
                "name": resource.name,
                "parent": resource.parent,
                "custom": resource.custom,
                "inputs": renderer.value(shown_inputs(resource)),
                "dependencies": dependencies_of(resource),
            }
            for resource in run.in_tree_order()
        ],
        "outputs": renderer.value(run.outputs),
        "cost": cost,
        "policy": {"violations": violations},
        "readiness": {"violations": readiness or []},
    }


def kubernetes_manifests(run: StackRun) -> list[RecordedResource]:
    return [
        resource
        for resource in run.in_tree_order()
        if resource.type.startswith("kubernetes:") and not resource.type.startswith(NOT_MANIFESTS)
    ]


def write_plan(run: StackRun, plan: dict[str, Any], out_dir: Path) -> Path:
    """Write plan.json and one YAML file per Kubernetes object; returns the plan's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plan_path = out_dir / "plan.json"
    plan_path.write_text(json.dumps(plan, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    manifests_dir = out_dir / "manifests"
    manifests_dir.mkdir(exist_ok=True)
    for stale in manifests_dir.glob("*.yaml"):
        stale.unlink()
    renderer = PlanRenderer(run.invented)
    for index, resource in enumerate(kubernetes_manifests(run), start=1):
        kind = resource.type.rsplit(":", 1)[-1]
        rendered = renderer.value(shown_inputs(resource))
        manifest = {key: rendered[key] for key in MANIFEST_HEAD if key in rendered}
        manifest |= {key: value for key, value in rendered.items() if key not in MANIFEST_HEAD}
        path = manifests_dir / f"{index:03d}-{kind.lower()}-{resource.name}.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return plan_path
