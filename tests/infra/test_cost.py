"""The monthly cost estimate: line items from the preview's resources, priced from the committed snapshot."""

import dataclasses
import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from infra.preview.cost.estimate import EKS_EXTENDED_SUPPORT_CLUSTER_HOUR, CostEstimate, estimate_cost
from infra.preview.cost.prices import SNAPSHOT_PATH, PriceSnapshotError, load_snapshot
from infra.preview.engine import StackRun
from infra.versions import DEFAULT_KUBERNETES_VERSION, KUBERNETES_RELEASES
from tests.conftest import REPO_ROOT, CommittedPreview, RunStack, stack_config

SNAPSHOT = load_snapshot()


def _estimate(run: StackRun, region: str | None = None) -> CostEstimate:
    return estimate_cost(run, region or str(stack_config(run.stack)["aws:region"]), SNAPSHOT)


def _items(cost: CostEstimate, prefix: str) -> list[Any]:
    return [item for item in cost.items if item.item.startswith(prefix)]


def test_the_snapshot_records_its_source_and_date_and_prices_three_regions() -> None:
    assert {"us-east-1", "us-west-2", "eu-west-1"} <= set(SNAPSHOT.regions)
    assert SNAPSHOT.as_of
    assert SNAPSHOT.source
    assert SNAPSHOT.hours_per_month == 730


def test_prod_line_items_add_up_and_follow_the_stack_file(committed_runs: dict[str, StackRun]) -> None:
    cost = _estimate(committed_runs["prod"])
    prices = SNAPSHOT.regions["us-east-1"]
    assert cost.unpriced == []
    assert cost.monthly_total == round(sum(item.monthly or 0.0 for item in cost.items), 2)
    for item in cost.items:
        assert item.unit_price is not None
        assert item.monthly == round(item.quantity * item.unit_price, 2), item
    (control_plane,) = _items(cost, "EKS control plane")
    assert control_plane.monthly == round(730 * prices["eks_cluster_hour"], 2)
    (cpu,) = _items(cost, "Node pool pools-cpu: 3 x m6i.xlarge (on-demand)")
    assert cpu.quantity == 3 * 730
    assert cpu.unit_price == prices["ec2_instance_hour"]["m6i.xlarge"]
    assert len(_items(cost, "NAT gateway")) == 3
    assert len(_items(cost, "Public IPv4 address")) == 3
    assert len(_items(cost, "KMS key")) == 3
    assert _items(cost, "Application load balancer for Ingress model-service-ingress")
    assert _items(cost, "Prometheus volume (100 GB gp3)")
    assert _items(cost, "Log group network-flow-logs: storage")


def test_dev_prices_its_single_host_and_alb_without_a_cluster(committed_runs: dict[str, StackRun]) -> None:
    cost = _estimate(committed_runs["dev"])
    assert [item.item for item in _items(cost, "EC2 hosts")] == [
        "EC2 hosts host-asg: 1 x t3.large (on-demand)",
        "EC2 hosts host-asg: root volumes (1 x 30 GB gp3)",
    ]
    assert not _items(cost, "EKS")
    assert not _items(cost, "NAT gateway")
    assert cost.monthly_total is not None
    assert cost.monthly_total < _estimate(committed_runs["prod"]).priced_subtotal


def test_the_region_picks_the_prices(committed_runs: dict[str, StackRun]) -> None:
    east = _estimate(committed_runs["staging"], "us-east-1")
    ireland = _estimate(committed_runs["staging"], "eu-west-1")
    (nat_east,) = _items(east, "NAT gateway")
    (nat_ireland,) = _items(ireland, "NAT gateway")
    assert nat_ireland.unit_price == SNAPSHOT.regions["eu-west-1"]["nat_gateway_hour"] > nat_east.unit_price


def test_an_unknown_region_or_instance_type_is_reported_not_priced_at_zero(
    committed_runs: dict[str, StackRun], run_stack: RunStack
) -> None:
    nowhere = _estimate(committed_runs["prod"], "ap-south-2")
    assert nowhere.monthly_total is None
    assert all(item.monthly is None for item in nowhere.items)
    assert nowhere.unpriced[0].startswith("region ap-south-2: not in the price snapshot")
    config = stack_config("staging")
    # A real EC2 type (the config refuses made-up ones) that the committed snapshot does not price.
    config["mlstack:compute"] = {"mode": "eks", "eks": {"cpuPool": {"instanceTypes": ["c7i.large"]}}}
    odd = _estimate(run_stack("staging", config))
    (pool,) = _items(odd, "Node pool pools-cpu: 2 x c7i.large")
    assert pool.monthly is None
    assert pool.unit_price is None
    assert odd.monthly_total is None
    assert odd.priced_subtotal > 0
    assert any("instance type c7i.large is not in the price snapshot for us-west-2" in p for p in odd.unpriced)


def test_spot_pools_take_the_stated_discount(run_stack: RunStack) -> None:
    config = stack_config("staging")
    config["mlstack:compute"] = {"mode": "eks", "eks": {"cpuPool": {"capacityType": "SPOT"}}}
    run = run_stack("staging", config)
    (pool,) = _items(_estimate(run), "Node pool pools-cpu: 2 x")
    assert pool.item.endswith("(spot)")
    assert pool.unit_price == round(SNAPSHOT.regions["us-west-2"]["ec2_instance_hour"]["m6i.large"] * 0.4, 5)
    assert "60% below on-demand" in pool.note


def test_a_malformed_snapshot_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "prices.json"
    snapshot = json.loads(SNAPSHOT_PATH.read_text())
    del snapshot["regions"]["us-east-1"]["nat_gateway_hour"]
    broken.write_text(json.dumps(snapshot))
    with pytest.raises(PriceSnapshotError, match=r"region us-east-1 lacks \['nat_gateway_hour'\]"):
        load_snapshot(broken)


def _mlstack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )


def test_diff_between_the_dev_and_prod_plans_shows_the_cost_delta(
    tmp_path: Path, committed_preview: CommittedPreview
) -> None:
    for stack in ("dev", "prod"):
        assert committed_preview(stack).returncode == 0
    dev_plan, prod_plan = committed_preview("dev").out / "plan.json", committed_preview("prod").out / "plan.json"
    dev = json.loads(dev_plan.read_text())
    prod = json.loads(prod_plan.read_text())
    result = _mlstack("diff", str(dev_plan), str(prod_plan))
    assert result.returncode == 0, result.stderr
    delta = prod["cost"]["monthly_total"] - dev["cost"]["monthly_total"]
    assert (
        f"Estimated monthly cost: ${dev['cost']['monthly_total']:,.2f} → ${prod['cost']['monthly_total']:,.2f} "
        f"(**+${delta:,.2f}**)"
    ) in result.stdout
    assert f"| EKS control plane (Kubernetes {DEFAULT_KUBERNETES_VERSION}) | n/a | $73.00 | +$73.00 |" in result.stdout
    assert "- `aws:eks/cluster:Cluster` eks-cluster" in result.stdout
    assert "- `aws:lb/loadBalancer:LoadBalancer` host-alb" in result.stdout  # removed: dev's ALB

    same = _mlstack("diff", str(prod_plan), str(prod_plan))
    assert "0 to add, 0 to change, 0 to remove" in same.stdout
    assert "(**±$0.00**)" in same.stdout

    (tmp_path / "broken.json").write_text("{")
    broken = _mlstack("diff", str(tmp_path / "broken.json"), str(prod_plan))
    assert broken.returncode == 2
    assert broken.stderr.startswith(f"error: {tmp_path / 'broken.json'}: not JSON")


def _with_cluster_version(run: StackRun, version: str) -> StackRun:
    resources = [
        dataclasses.replace(r, inputs={**r.inputs, "version": version}) if r.type == "aws:eks/cluster:Cluster" else r
        for r in run.resources
    ]
    return dataclasses.replace(run, resources=resources)


def test_the_default_version_is_in_standard_support_on_the_snapshot_date() -> None:
    assert date.fromisoformat(SNAPSHOT.as_of) < KUBERNETES_RELEASES[DEFAULT_KUBERNETES_VERSION].end_of_standard_support


def test_control_plane_is_priced_at_the_standard_rate_until_standard_support_ends(
    committed_runs: dict[str, StackRun],
) -> None:
    run = committed_runs["staging"]
    end = KUBERNETES_RELEASES[DEFAULT_KUBERNETES_VERSION].end_of_standard_support
    standard = dataclasses.replace(SNAPSHOT, as_of=(end - timedelta(days=1)).isoformat())
    (item,) = _items(estimate_cost(run, "us-east-1", standard), "EKS control plane")
    assert item.unit_price == SNAPSHOT.regions["us-east-1"]["eks_cluster_hour"]
    assert "extended" not in item.item


def test_control_plane_is_priced_at_the_extended_rate_from_the_day_standard_support_ends(
    committed_runs: dict[str, StackRun],
) -> None:
    run = committed_runs["staging"]
    end = KUBERNETES_RELEASES[DEFAULT_KUBERNETES_VERSION].end_of_standard_support
    extended = dataclasses.replace(SNAPSHOT, as_of=end.isoformat())
    (item,) = _items(estimate_cost(run, "us-east-1", extended), "EKS control plane")
    assert item.unit_price == EKS_EXTENDED_SUPPORT_CLUSTER_HOUR
    assert item.unit_price == pytest.approx(6 * SNAPSHOT.regions["us-east-1"]["eks_cluster_hour"])
    assert item.monthly == round(730 * EKS_EXTENDED_SUPPORT_CLUSTER_HOUR, 2)
    assert item.item == f"EKS control plane (Kubernetes {DEFAULT_KUBERNETES_VERSION}, extended support)"
    # A cluster left on 1.33 (standard support ended 2026-07-29) pays extended support at the snapshot's date.
    (old,) = _items(estimate_cost(_with_cluster_version(run, "1.33"), "us-east-1", SNAPSHOT), "EKS control plane")
    assert old.unit_price == EKS_EXTENDED_SUPPORT_CLUSTER_HOUR
    assert "2026-07-29" in old.note


def test_a_version_without_a_known_support_calendar_is_unpriced(committed_runs: dict[str, StackRun]) -> None:
    cost = estimate_cost(_with_cluster_version(committed_runs["staging"], "1.99"), "us-east-1", SNAPSHOT)
    assert not _items(cost, "EKS control plane")
    assert cost.monthly_total is None
    assert any("Kubernetes 1.99" in reason for reason in cost.unpriced)


def test_each_line_shows_quantity_times_unit_price_and_autoscaling_pools_their_ceiling(
    committed_runs: dict[str, StackRun],
) -> None:
    from infra.preview.tree import render_cost  # noqa: PLC0415

    cost = _estimate(committed_runs["prod"])
    (gpu,) = _items(cost, "Node pool pools-gpu: 0 x g5.xlarge")
    price = SNAPSHOT.regions["us-east-1"]["ec2_instance_hour"]["g5.xlarge"]
    # prod's GPU pool: scaled from zero (desired 0), maximum 4 (the stack's tier default).
    assert (gpu.monthly, gpu.max_count, gpu.monthly_at_max) == (0, 4, round(4 * 730 * price, 2))
    (nat, *_) = _items(cost, "NAT gateway")
    assert nat.monthly_at_max is None
    text = render_cost(cost)
    gpu_line = next(line for line in text.splitlines() if "pools-gpu: 0 x g5.xlarge" in line)
    assert f"0 instance-hours x {price:g}" in gpu_line
    assert f"scales from zero: nothing runs at the desired size; up to {4 * 730 * price:,.2f} at its maximum of 4" in (
        gpu_line
    )
    assert _items(cost, "Node pool pools-cpu: 3 x m6i.xlarge")
    cpu_price = SNAPSHOT.regions["us-east-1"]["ec2_instance_hour"]["m6i.xlarge"]
    cpu_line = next(line for line in text.splitlines() if "pools-cpu: 3 x m6i.xlarge" in line)
    assert f"2,190 instance-hours x {cpu_price:g}" in cpu_line
    assert f"up to {10 * 730 * cpu_price:,.2f} at its maximum of 10" in cpu_line
    assert cost.total_at_max is not None
    assert cost.monthly_total is not None
    assert cost.total_at_max > cost.monthly_total
    assert "Total with every pool at its maximum" in text


def test_line_items_come_in_a_fixed_order(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["prod"]
    shuffled = dataclasses.replace(run, resources=list(reversed(run.resources)))
    assert _estimate(shuffled).to_plan() == _estimate(run).to_plan()
