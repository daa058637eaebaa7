"""The price per prediction: the bench's requests a second per core, the serving pods' CPU request and replica
range, the HPA's CPU target and the node prices, combined as infra/preview/cost/serving.py documents."""

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from infra.cli import EXIT_PROGRAM_FAILED, preview
from infra.preview.cost import bench
from infra.preview.cost.bench import BENCH_RESULTS, BenchResults, BenchResultsError, load_bench_results
from infra.preview.cost.estimate import SPOT_DISCOUNT
from infra.preview.cost.money import format_money
from infra.preview.cost.prices import load_snapshot
from infra.preview.cost.serving import (
    INSTANCE_VCPUS,
    ROLLOUT,
    SERVER_PROCESS_CORES,
    ServingEstimate,
    ServingFigure,
    estimate_serving,
)
from infra.preview.diff import render_markdown
from infra.preview.engine import StackRun
from tests.conftest import REPO_ROOT, stack_config

SNAPSHOT = load_snapshot()
BENCH = load_bench_results(REPO_ROOT)
GOOD_RESULTS: dict[str, Any] = {
    "measured_on": "2026-11-28",
    "machine": "Example CPU",
    "cores": 1,
    "headline": [
        {"protocol": "rest-json", "rows_per_request": 1, "requests_per_second_per_core": 1000.0},
        {"protocol": "rest-json", "rows_per_request": 64, "requests_per_second_per_core": 500.0},
    ],
}


def _write_results(root: Path, document: Any) -> Path:
    path = root / BENCH_RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return path


def _serving(run: StackRun, bench: BenchResults = BENCH) -> ServingEstimate:
    return estimate_serving(run, str(stack_config(run.stack)["aws:region"]), SNAPSHOT, bench)


def _figure(serving: ServingEstimate, rows: int, protocol: str = "rest-json") -> ServingFigure:
    (figure,) = [f for f in serving.figures if (f.protocol, f.rows_per_request) == (protocol, rows)]
    return figure


def _with_inputs(run: StackRun, resource_type: str, change: Any) -> StackRun:
    """The run with `change(inputs)` applied to a deep copy of every `resource_type`'s inputs."""

    def changed(inputs: dict[str, Any]) -> dict[str, Any]:
        inputs = copy.deepcopy(inputs)
        change(inputs)
        return inputs

    resources = [
        dataclasses.replace(resource, inputs=changed(resource.inputs)) if resource.type == resource_type else resource
        for resource in run.resources
    ]
    return dataclasses.replace(run, resources=resources)


def _with_cpu_request(run: StackRun, quantity: str) -> StackRun:
    def change(inputs: dict[str, Any]) -> None:
        for container in inputs["spec"]["template"]["spec"]["containers"]:
            container["resources"]["requests"]["cpu"] = quantity

    return _with_inputs(run, ROLLOUT, change)


def _with_cpu_target(run: StackRun, percent: int) -> StackRun:
    def change(inputs: dict[str, Any]) -> None:
        for metric in inputs["spec"]["metrics"]:
            if metric["type"] == "Resource":
                metric["resource"]["target"]["averageUtilization"] = percent

    return _with_inputs(run, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler", change)


# The results file


def test_the_committed_results_hold_the_contracted_figures() -> None:
    document = json.loads((REPO_ROOT / BENCH_RESULTS).read_text())
    assert set(document) == {"measured_on", "machine", "cores", "headline"}
    assert {(f.protocol, f.rows_per_request) for f in BENCH.headline} >= {("rest-json", 1), ("rest-json", 64)}
    assert BENCH.cores >= 1
    assert all(f.requests_per_second_per_core > 0 for f in BENCH.headline)


def test_a_missing_results_file_is_one_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BenchResultsError) as error:
        load_bench_results(tmp_path)
    message = str(error.value)
    assert str(tmp_path / BENCH_RESULTS) in message
    assert "make bench" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ("{not json", "not JSON"),
        ([], "expected an object"),
        ({**GOOD_RESULTS, "measured_on": ""}, "measured_on"),
        ({**GOOD_RESULTS, "cores": 0}, "cores"),
        ({**GOOD_RESULTS, "headline": {}}, "headline must be a list"),
        ({**GOOD_RESULTS, "headline": GOOD_RESULTS["headline"][:1]}, "lacks the figures for rest-json with 64 rows"),
        ({**GOOD_RESULTS, "headline": GOOD_RESULTS["headline"] * 2}, "more than one figure for rest-json"),
        (
            {**GOOD_RESULTS, "headline": [*GOOD_RESULTS["headline"], {"protocol": "soap", "rows_per_request": 1}]},
            "headline[2]: protocol must be one of",
        ),
        (
            {
                **GOOD_RESULTS,
                "headline": [
                    *GOOD_RESULTS["headline"],
                    {"protocol": "grpc", "rows_per_request": 1, "requests_per_second_per_core": -3},
                ],
            },
            "requests_per_second_per_core must be a positive number",
        ),
    ],
)
def test_malformed_results_are_refused_with_what_is_wrong(tmp_path: Path, document: Any, complaint: str) -> None:
    path = _write_results(tmp_path, document)
    with pytest.raises(BenchResultsError) as error:
        load_bench_results(tmp_path)
    assert str(path) in str(error.value)
    assert complaint in str(error.value)


def test_the_preview_stops_with_one_line_when_the_results_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A checkout whose service/bench/ has no results file.
    monkeypatch.setattr(bench, "REPOSITORY_ROOT", tmp_path)
    monkeypatch.chdir(REPO_ROOT)
    assert preview("dev", tmp_path / "out", debug=False) == EXIT_PROGRAM_FAILED
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [
        f"error: {tmp_path / BENCH_RESULTS}: no benchmark results; run `make bench` (it writes them) or restore the "
        "committed file"
    ]


# The computation


def test_prod_capacity_and_cost_follow_the_pods_the_hpa_and_the_node(committed_runs: dict[str, StackRun]) -> None:
    serving = _serving(committed_runs["prod"])
    assert serving.unpriced == []
    workload = serving.workload
    assert workload is not None
    # prod: 3..12 replicas of a 500m pod on m6i.xlarge (4 vCPUs), HPA at 70% CPU and 200 requests/s per replica.
    assert (workload.replicas_floor, workload.replicas_ceiling) == (3, 12)
    assert (workload.cpu_request, workload.cpu_target_utilization) == (0.5, 70)
    assert workload.requests_per_second_target == 200
    assert (workload.node_instance_type, workload.node_vcpus) == ("m6i.xlarge", INSTANCE_VCPUS["m6i.xlarge"])
    node_hourly = SNAPSHOT.regions["us-east-1"]["ec2_instance_hour"]["m6i.xlarge"]
    assert workload.replica_hourly == pytest.approx(node_hourly * 0.5 / 4)
    for rows in (1, 64):
        rate = next(f for f in BENCH.headline if (f.protocol, f.rows_per_request) == ("rest-json", rows))
        per_core = rate.requests_per_second_per_core * rows
        figure = _figure(serving, rows)
        assert figure.capacity_at_floor == pytest.approx(3 * 0.5 * per_core, abs=0.1)
        assert figure.capacity_at_ceiling == pytest.approx(12 * 0.5 * per_core, abs=0.1)
        at_target = 0.5 * 0.70 * per_core  # predictions a second per replica at the CPU target
        assert figure.cost_per_million_at_cpu_target == pytest.approx(
            node_hourly * 0.5 / 4 * 1_000_000 / (at_target * 3600), rel=1e-4
        )


def test_doubling_the_cpu_request_buys_cpu_in_proportion_until_one_process_cannot_use_it(
    committed_runs: dict[str, StackRun],
) -> None:
    half, one, two = (_serving(_with_cpu_request(committed_runs["prod"], q)) for q in ("500m", "1", "2"))
    for rows in (1, 64):
        # 500m -> 1: twice the cost an hour and twice the predictions at 70%: the same price, twice the capacity.
        assert _figure(one, rows).cost_per_million_at_cpu_target == pytest.approx(
            _figure(half, rows).cost_per_million_at_cpu_target, rel=1e-3
        )
        # Capacities are rounded to 0.1 prediction/s, so twice a rounded figure may be 0.1 off.
        assert _figure(one, rows).capacity_at_floor == pytest.approx(2 * _figure(half, rows).capacity_at_floor, abs=0.1)
        # 1 -> 2: one server process keeps one core busy, so the second core is paid for and serves nothing.
        assert _figure(two, rows).cost_per_million_at_cpu_target == pytest.approx(
            2 * (_figure(one, rows).cost_per_million_at_cpu_target or 0) * 0.7 / SERVER_PROCESS_CORES, rel=1e-3
        )
        assert _figure(two, rows).capacity_at_floor == _figure(one, rows).capacity_at_floor


def test_a_lower_cpu_target_makes_each_prediction_dearer(committed_runs: dict[str, StackRun]) -> None:
    at_70 = _serving(committed_runs["prod"])
    at_35 = _serving(_with_cpu_target(committed_runs["prod"], 35))
    for rows in (1, 64):
        before, after = _figure(at_70, rows), _figure(at_35, rows)
        assert after.cost_per_million_at_cpu_target == pytest.approx(
            2 * (before.cost_per_million_at_cpu_target or 0), rel=1e-3
        )
        assert after.capacity_at_floor == before.capacity_at_floor


def test_spot_nodes_lower_the_price_of_a_prediction(committed_runs: dict[str, StackRun]) -> None:
    def spot(inputs: dict[str, Any]) -> None:
        inputs["capacityType"] = "SPOT"

    on_demand = _serving(committed_runs["prod"])
    cheaper = _serving(_with_inputs(committed_runs["prod"], "aws:eks/nodeGroup:NodeGroup", spot))
    assert _figure(cheaper, 1).cost_per_million_at_cpu_target == pytest.approx(
        (1 - SPOT_DISCOUNT) * (_figure(on_demand, 1).cost_per_million_at_cpu_target or 0), rel=1e-3
    )


def test_the_request_rate_target_scaling_out_first_is_priced_where_it_does(committed_runs: dict[str, StackRun]) -> None:
    serving = _serving(committed_runs["prod"])
    figure = _figure(serving, 1)
    # 200 requests/s per replica comes long before 70% of 500m at thousands of requests/s per core.
    assert figure.scales_out_at_per_replica == 200
    assert figure.cost_per_million_at_scale_out is not None
    assert figure.cost_per_million_at_cpu_target is not None
    assert figure.cost_per_million_at_scale_out > figure.cost_per_million_at_cpu_target


def test_the_dev_host_charges_its_one_container_the_whole_host(committed_runs: dict[str, StackRun]) -> None:
    serving = _serving(committed_runs["dev"])
    workload = serving.workload
    assert workload is not None
    assert (workload.replicas_floor, workload.replicas_ceiling, workload.cpu_request) == (1, 1, None)
    instance_type = str(stack_config("dev")["mlstack:compute"].get("ec2", {}).get("instanceType", "t3.large"))
    assert workload.node_instance_type == instance_type
    assert workload.replica_hourly == SNAPSHOT.regions["us-east-1"]["ec2_instance_hour"][instance_type]
    one_row = next(f for f in BENCH.headline if (f.protocol, f.rows_per_request) == ("rest-json", 1))
    assert _figure(serving, 1).capacity_at_floor == pytest.approx(one_row.requests_per_second_per_core, abs=0.1)


def test_gpu_pods_are_unpriced_rather_than_priced_from_a_cpu_bench(committed_runs: dict[str, StackRun]) -> None:
    def gpu(inputs: dict[str, Any]) -> None:
        for container in inputs["spec"]["template"]["spec"]["containers"]:
            container["resources"]["limits"]["nvidia.com/gpu"] = "1"

    serving = _serving(_with_inputs(committed_runs["prod"], ROLLOUT, gpu))
    assert serving.workload is None
    assert serving.figures == []
    assert any("GPUs" in reason for reason in serving.unpriced)


def test_an_instance_type_without_known_vcpus_is_unpriced(committed_runs: dict[str, StackRun]) -> None:
    def unknown(inputs: dict[str, Any]) -> None:
        inputs["instanceTypes"] = ["m6i.metal"]

    serving = _serving(_with_inputs(committed_runs["prod"], "aws:eks/nodeGroup:NodeGroup", unknown))
    assert serving.workload is not None
    assert serving.workload.replica_hourly is None
    assert all(f.cost_per_million_at_cpu_target is None for f in serving.figures)
    assert any("m6i.metal" in reason for reason in serving.unpriced)


def test_every_stack_prints_capacity_and_cost_per_million_with_assumptions(stack_run: StackRun) -> None:
    from infra.preview.tree import render_serving  # noqa: PLC0415

    text = render_serving(_serving(stack_run))
    assert "predictions/s at floor" in text
    assert "per 1M" in text
    assert "Assumptions:" in text
    assert "share of its node's vCPUs" in text
    assert "unpriced" not in text.split("Assumptions:")[0]


# plan.json and the diff


def test_the_plan_carries_the_figures_and_the_diff_shows_their_change(committed_runs: dict[str, StackRun]) -> None:
    def plan(run: StackRun) -> dict[str, Any]:
        return {"version": 1, "stack": run.stack, "resources": [], "cost": {"per_prediction": _serving(run).to_plan()}}

    base = plan(committed_runs["prod"])
    assert json.loads(json.dumps(base)) == base  # plain JSON
    assert base["cost"]["per_prediction"]["assumptions"]
    assert render_markdown(base, base).count("price per prediction") == 0
    doubled = plan(_with_cpu_target(committed_runs["prod"], 35))
    text = render_markdown(base, doubled)
    before = base["cost"]["per_prediction"]["figures"][0]["cost_per_million_at_cpu_target"]
    after = doubled["cost"]["per_prediction"]["figures"][0]["cost_per_million_at_cpu_target"]
    assert "**Capacity and price per prediction**" in text
    assert f"${format_money(before)} → ${format_money(after)} (+100.0%)" in text
