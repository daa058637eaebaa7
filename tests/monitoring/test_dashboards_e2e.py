"""A real Prometheus, with the repository's scrape config and rules, scraping a real model service under load.

Every query of every service dashboard must return data, and the error-ratio alert must go pending or firing.
"""

import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO_ROOT
from tests.monitoring.daemons import prometheus_daemon
from tests.service.conftest import ServerProcess, infer_body, start_server, wait_for
from tests.service.models import failing_model_bytes, package_with_model

MONITORING = REPO_ROOT / "monitoring"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
# Metrics other exporters provide: kube-state-metrics on EKS, dcgm-exporter on GPU nodes.
OTHER_EXPORTERS = re.compile(r"^(kube_|DCGM_)")
# Needs a GPU node running dcgm-exporter; the CPU machines that run these tests have neither.
GPU_ONLY = {"mlstack-gpu"}
PROMQL_FUNCTIONS = {
    "sum",
    "group_left",
    "rate",
    "histogram_quantile",
    "max",
    "avg",
    "by",
    "scalar",
    "increase",
    "and",
    "on",
    "le",
    "abs",
    "sqrt",
    "bool",
    "or",
}


def _dashboard(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def _queries(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _rule_exprs() -> list[str]:
    return [
        rule["expr"]
        for name in ("model-service.rules.yml", "drift.rules.yml")
        for group in yaml.safe_load((MONITORING / "rules" / name).read_text())["groups"]
        for rule in group["rules"]
    ]


def _metric_names(expr: str) -> set[str]:
    without_labels = re.sub(r"\{[^}]*\}", "", re.sub(r'"[^"]*"', "", expr))
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", without_ranges)) - PROMQL_FUNCTIONS
    names = {name for name in names if not name.startswith("mlstack:")}  # recording rules
    names -= {
        "model_name",
        "model_version",
        "status",
        "class_name",
        "instance",
        "Hostname",
        "gpu",
        "pod",
        "deployment",
        "feature",
        "test",
        # Labels named in on (...) / by (...) clauses of the kube-state-metrics joins.
        "namespace",
        "replicaset",
    }
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_dashboards_are_grafana_json_with_a_datasource_and_targets(path: Path) -> None:
    dashboard = _dashboard(path)
    assert {"uid", "title", "panels", "schemaVersion"} <= set(dashboard)
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["type"] == "prometheus", panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["expr"] for target in panel["targets"]), panel["title"]


@pytest.fixture(scope="module")
def failing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The service with a model that fails on ages past 99: real 500s on demand."""
    work = tmp_path_factory.mktemp("e2e")
    server = start_server(work, model_uri=str(package_with_model(work / "package", failing_model_bytes())))
    yield server
    server.stop()


def test_every_metric_a_rule_or_panel_uses_is_exported(failing_server: ServerProcess) -> None:
    failing_server.client.post("/v2/models/loan-approval/infer", json=infer_body(3))
    exported = {family.name for family in text_string_to_metric_families(failing_server.metrics_text())}
    used = set()
    for expr in _rule_exprs() + [q for path in DASHBOARDS for q in _queries(_dashboard(path))]:
        used |= _metric_names(expr)
    ours = {name for name in used if not OTHER_EXPORTERS.match(name)}
    assert ours
    missing = {name.removesuffix("_total") for name in ours} - {name.removesuffix("_total") for name in exported}
    assert not missing, f"used but not exported: {sorted(missing)}"


@pytest.fixture(scope="module")
def prometheus(failing_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus with the repository's scrape config (target and intervals adapted) and rule files."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: .ci/run installs Debian's prometheus package"
    work = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(MONITORING / path) for path in config["rule_files"]]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{failing_server.internal_port}"]}]
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    flags = [f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}"]
    with prometheus_daemon(binary, flags, work / "prometheus.log", 60) as url:
        yield url


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert response["status"] == "success", response
    result: list[dict[str, Any]] = response["data"]["result"]
    return result


def test_prometheus_sees_every_panel_and_the_error_alert(failing_server: ServerProcess, prometheus: str) -> None:
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=failing_server.url, timeout=30) as client:
            deadline = time.monotonic() + 120
            while not stop.is_set() and time.monotonic() < deadline:
                for _ in range(10):
                    client.post("/v2/models/loan-approval/infer", json=infer_body(1))
                client.post("/v2/models/loan-approval/infer", json=infer_body(64))
                client.post("/v2/models/loan-approval/infer", json=infer_body(2000))  # the slow ones
                broken = infer_body(1)
                broken["inputs"][0]["data"][0][0] = 500.0  # an age past the model's table: a 500
                client.post("/v2/models/loan-approval/infer", json=broken)

    driver = threading.Thread(target=traffic)
    driver.start()
    try:
        queries = [
            (path.stem, expr)
            for path in DASHBOARDS
            if _dashboard(path)["uid"] not in GPU_ONLY
            for expr in _queries(_dashboard(path))
        ]
        wait_for(lambda: all(_query(prometheus, expr) for _, expr in queries), 90, "every panel query to return data")
        for dashboard, expr in queries:
            assert _query(prometheus, expr), f"{dashboard}: no data for {expr}"

        def error_alert_raised() -> bool:
            alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
            return any(
                a["labels"]["alertname"] == "ModelServiceErrorBudgetBurn" and a["state"] in ("pending", "firing")
                for a in alerts
            )

        wait_for(error_alert_raised, 60, "ModelServiceErrorBudgetBurn to go pending or firing")
    finally:
        stop.set()
        driver.join(timeout=60)
