"""Every pin in infra/versions.py names where it was verified; the LB controller policy is the upstream file."""

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra import versions
from infra.compute.addons.cluster_autoscaler import autoscaler_image
from infra.versions import (
    AWS_LOAD_BALANCER_CONTROLLER_CHART,
    AWS_LOAD_BALANCER_CONTROLLER_POLICY,
    CLUSTER_AUTOSCALER_IMAGES,
    DEFAULT_KUBERNETES_VERSION,
    EKS_ADDON_PROVENANCE,
    EKS_ADDON_VERSIONS,
    KUBERNETES_RELEASES,
    ChartPin,
    KubernetesRelease,
    Pin,
    Provenance,
)
from infra.workloads.load_balancer_controller import POLICY_FILE

REPOSITORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*\d[A-Za-z0-9._/-]*$")  # a release tag names a version
ABBREVIATED_COMMIT = re.compile(r"^[0-9a-f]{4,39}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
PATH = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
# AWS names the stack passes through (not versions of anything): they have no upstream release to cite.
AWS_NAMES = {"AL2023_AMI_SSM_PARAMETER", "CPU_AMI_TYPE", "GPU_AMI_TYPE", "RESOLVE_DEFAULT_ADDON_VERSION"}
# The seven actions the controller's newer releases call that the v2.9 policy lacked (diffed against the old file),
# SetRulePriorities on every reconcile of an existing rule, and two it has always needed.
CONTROLLER_ACTIONS = {
    "ec2:DescribeIpamPools",
    "ec2:DescribeRouteTables",
    "ec2:GetSecurityGroupsForVpc",
    "elasticloadbalancing:DescribeCapacityReservation",
    "elasticloadbalancing:ModifyCapacityReservation",
    "elasticloadbalancing:ModifyIpPools",
    "elasticloadbalancing:SetRulePriorities",
    "elasticloadbalancing:AddTags",
    "elasticloadbalancing:CreateLoadBalancer",
}


def _provenances() -> dict[str, Provenance]:
    """Every provenance recorded in versions.py, named by the pin it belongs to."""
    found: dict[str, Provenance] = {}
    for name, value in vars(versions).items():
        if isinstance(value, ChartPin | Pin | KubernetesRelease):
            found[name] = value.provenance
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, Pin | KubernetesRelease):
                    found[f"{name}[{key}]"] = item.provenance
                elif isinstance(item, Provenance):
                    found[f"{name}[{key}]"] = item
    return found


def _looks_like_a_reference(provenance: Provenance) -> list[str]:
    problems = []
    if not REPOSITORY.match(provenance.repository):
        problems.append(f"repository {provenance.repository!r} is not owner/name")
    if not COMMIT.match(provenance.ref) and (ABBREVIATED_COMMIT.match(provenance.ref) or not TAG.match(provenance.ref)):
        problems.append(f"ref {provenance.ref!r} is neither a 40-hex commit nor a release tag")
    if not (DIGEST.match(provenance.path) or PATH.match(provenance.path)):
        problems.append(f"path {provenance.path!r} is neither a file path nor a sha256 digest")
    return problems


def test_every_pin_carries_provenance_that_looks_like_a_real_reference() -> None:
    provenances = _provenances()
    assert len(provenances) >= 15
    problems = {name: _looks_like_a_reference(p) for name, p in provenances.items()}
    assert {name: found for name, found in problems.items() if found} == {}


@pytest.mark.parametrize(
    "provenance",
    [
        Provenance("not-a-repo", "v1.0.0", "Chart.yaml"),
        Provenance("owner/name", "main", "Chart.yaml"),
        Provenance("owner/name", "abc123", "Chart.yaml"),
        Provenance("owner/name", "v1.0.0", "https://example.invalid/x"),
        Provenance("owner/name", "v1.0.0", "sha256:1234"),
    ],
)
def test_the_provenance_check_rejects_what_is_not_a_reference(provenance: Provenance) -> None:
    assert _looks_like_a_reference(provenance)


def test_no_string_constant_escapes_the_provenance_check() -> None:
    """A bare string in versions.py must be an AWS name, a value some Pin carries, or listed as unverified."""
    pinned_values = {value.value for value in vars(versions).values() if isinstance(value, Pin)}
    bare = {
        name
        for name, value in vars(versions).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, str) and not name.endswith("_URL")
    }
    unaccounted = {
        name
        for name in bare - AWS_NAMES - set(versions.UNVERIFIED)
        if getattr(versions, name) not in pinned_values and name != "DEFAULT_KUBERNETES_VERSION"
    }
    assert unaccounted == set()
    # The unverified list only shrinks: a new pin without provenance fails here instead of joining it.
    assert versions.UNVERIFIED == {}, "every pin is verified upstream"


def test_every_managed_addon_names_its_upstream_project() -> None:
    for table in EKS_ADDON_VERSIONS.values():
        assert set(table) == set(EKS_ADDON_PROVENANCE)


def test_every_supported_minor_has_addons_an_autoscaler_and_a_support_calendar() -> None:
    assert DEFAULT_KUBERNETES_VERSION in EKS_ADDON_VERSIONS
    for minor in EKS_ADDON_VERSIONS:
        assert minor in CLUSTER_AUTOSCALER_IMAGES
        assert minor in KUBERNETES_RELEASES
        image = autoscaler_image(minor)
        # The autoscaler's minor matches the cluster's, and the image is pinned by digest.
        assert image["tag"].startswith(f"v{minor}.")
        assert DIGEST.match(image["tag"].split("@", 1)[1])


@pytest.mark.parametrize("name", ["PROMETHEUS_IMAGE", "GRAFANA_IMAGE"])
def test_images_the_stack_names_are_digest_pinned(name: str) -> None:
    pin: Pin = getattr(versions, name)
    reference, _, digest = pin.value.partition("@")
    assert DIGEST.match(digest)
    assert pin.provenance.path == digest
    assert reference.rsplit(":", 1)[1].lstrip("v") == pin.provenance.ref.lstrip("v")


def _git_blob_sha(path: Path) -> str:
    content = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


def test_lb_controller_policy_is_the_upstream_file_at_the_charts_app_version() -> None:
    source = AWS_LOAD_BALANCER_CONTROLLER_POLICY.provenance
    assert source.repository == "kubernetes-sigs/aws-load-balancer-controller"
    assert source.path == "docs/install/iam_policy.json"
    assert source.ref == AWS_LOAD_BALANCER_CONTROLLER_CHART.app_version
    # Byte-identical to the upstream blob (git hash-object), so no action was dropped or added by hand.
    assert source.url == f"blob {_git_blob_sha(POLICY_FILE)}"


def _actions(document: dict[str, Any]) -> set[str]:
    actions: set[str] = set()
    for statement in document["Statement"]:
        action = statement["Action"]
        actions |= {action} if isinstance(action, str) else set(action)
    return actions


def test_lb_controller_policy_allows_the_actions_the_controller_calls() -> None:
    document = json.loads(POLICY_FILE.read_text())
    assert CONTROLLER_ACTIONS - _actions(document) == set()
    # The check fails when one of them is missing.
    for statement in document["Statement"]:
        if isinstance(statement["Action"], list) and "elasticloadbalancing:SetRulePriorities" in statement["Action"]:
            statement["Action"].remove("elasticloadbalancing:SetRulePriorities")
    assert CONTROLLER_ACTIONS - _actions(document) == {"elasticloadbalancing:SetRulePriorities"}
