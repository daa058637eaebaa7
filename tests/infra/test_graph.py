"""`mlstack preview --graph`: components and their dependencies as Mermaid, DOT and (with graphviz) SVG."""

import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

from infra.preview.engine import StackRun
from infra.preview.graph import component_graph, to_mermaid
from tests.conftest import REPO_ROOT


def _names(run: StackRun) -> dict[str, str]:
    return {urn: label.split("\n")[0] for urn, label in component_graph(run).nodes.items()}


def test_components_and_who_depends_on_whom(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["prod"]
    names = _names(run)
    graph = component_graph(run)
    assert {"network", "eks", "pools", "model-service", "monitoring", "models", "registry", "keys"} <= set(
        names.values()
    )
    edges = {(names[source], names[target]) for source, target in graph.edges}
    assert ("eks", "network") in edges  # the cluster's subnets
    assert ("model-service", "eks") in edges  # through the cluster's Kubernetes provider
    assert ("models", "keys") in edges  # the bucket's KMS key
    assert ("network", "eks") not in edges
    dev_names = set(_names(committed_runs["dev"]).values())
    assert "host" in dev_names
    assert "eks" not in dev_names


def test_mermaid_is_one_node_per_component_and_one_arrow_per_edge(committed_runs: dict[str, StackRun]) -> None:
    graph = component_graph(committed_runs["staging"])
    text = to_mermaid(graph)
    assert text.startswith("flowchart LR\n")
    assert text.count('["') == len(graph.nodes)
    assert text.count(" --> ") == len(graph.edges)


def test_the_preview_writes_the_diagram_and_graphviz_renders_it(tmp_path: Path) -> None:
    assert shutil.which("dot"), "graphviz is missing: make test installs it (tools/system-deps)"
    result = subprocess.run(
        [sys.executable, "-m", "infra.cli", "preview", "staging", "--out", str(tmp_path), "--graph"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"Diagram: {tmp_path / 'graph.svg'}" in result.stdout
    svg = ElementTree.parse(tmp_path / "graph.svg").getroot()
    assert svg.tag.endswith("svg")
    texts = {element.text for element in svg.iter() if element.tag.endswith("text")}
    assert "network" in texts
    assert "model-service" in texts
