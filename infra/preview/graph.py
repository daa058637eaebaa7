"""`mlstack preview --graph`: the stack's components and which depends on which, for a reviewer to open.

Writes graph.mmd (Mermaid: GitHub and most editors render it) and graph.dot, and graph.svg when graphviz's `dot`
is installed. A node is a top-level component with its resource count; an arrow A -> B means something in A
takes an input from something in B.
"""

import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from infra.preview.engine import RecordedResource, StackRun

STACK_TYPE = "pulumi:pulumi:Stack"


@dataclass(frozen=True)
class ComponentGraph:
    nodes: dict[str, str]  # component URN -> label
    edges: set[tuple[str, str]]  # (dependent URN, dependency URN)


def component_graph(run: StackRun) -> ComponentGraph:
    stack_urns = {resource.urn for resource in run.resources if resource.type == STACK_TYPE}
    by_urn = {resource.urn: resource for resource in run.resources}

    def top_component(resource: RecordedResource) -> str | None:
        """The outermost component holding the resource (itself, for a top-level component)."""
        current = resource
        while current.parent is not None and current.parent not in stack_urns:
            current = by_urn[current.parent]
        return None if current.custom or current.type.startswith("pulumi:") else current.urn

    owner = {resource.urn: top_component(resource) for resource in run.resources if resource.type != STACK_TYPE}
    counts = Counter(owner[resource.urn] for resource in run.resources if resource.custom and resource.urn in owner)
    nodes = {}
    for urn in sorted({component for component in owner.values() if component is not None}):
        component = by_urn[urn]
        count = counts[urn]
        nodes[urn] = f"{component.name}\n{component.type.rsplit(':', 1)[-1]} · {count} resource{'s' * (count != 1)}"
    edges = set()
    for resource in run.resources:
        source = owner.get(resource.urn)
        # A resource created through another component's provider (the cluster's kubeconfig) depends on it too.
        for dependency in [*resource.dependencies, *_provider_urn(resource)]:
            target = owner.get(dependency)
            if source and target and source != target:
                edges.add((source, target))
    return ComponentGraph(nodes, edges)


def _provider_urn(resource: RecordedResource) -> list[str]:
    """The URN in a provider reference ("<urn>::<id>")."""
    return [resource.provider.rsplit("::", 1)[0]] if resource.provider else []


def _ids(graph: ComponentGraph) -> dict[str, str]:
    return {urn: f"c{index}" for index, urn in enumerate(graph.nodes)}


def to_mermaid(graph: ComponentGraph) -> str:
    ids = _ids(graph)
    lines = ["flowchart LR"]
    for urn, label in graph.nodes.items():
        text = re.sub(r'["<>]', "", label).replace("\n", "<br/>")
        lines.append(f'  {ids[urn]}["{text}"]')
    lines += [f"  {ids[source]} --> {ids[target]}" for source, target in sorted(graph.edges)]
    return "\n".join(lines) + "\n"


def to_dot(graph: ComponentGraph) -> str:
    ids = _ids(graph)
    lines = ["digraph mlstack {", "  rankdir=LR;", '  node [shape=box, style="rounded", fontname="Helvetica"];']
    for urn, label in graph.nodes.items():
        text = label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lines.append(f'  {ids[urn]} [label="{text}"];')
    lines += [f"  {ids[source]} -> {ids[target]};" for source, target in sorted(graph.edges)]
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_graph(run: StackRun, out_dir: Path) -> list[Path]:
    graph = component_graph(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    mermaid, dot = out_dir / "graph.mmd", out_dir / "graph.dot"
    mermaid.write_text(to_mermaid(graph), encoding="utf-8")
    dot.write_text(to_dot(graph), encoding="utf-8")
    written = [mermaid, dot]
    dot_binary = shutil.which("dot")
    if dot_binary:
        svg = out_dir / "graph.svg"
        subprocess.run([dot_binary, "-Tsvg", str(dot), "-o", str(svg)], check=True, capture_output=True)
        written.append(svg)
    return written
