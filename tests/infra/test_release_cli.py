"""`mlstack release status|promote|abort`: the patches kubectl-argo-rollouts sends, through a real HTTP API server."""

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.cli import main
from infra.cli.release import MERGE_PATCH
from tests.infra.fake_kube_api import FakeKubeApi, serve, write_kubeconfig

CANARY_STEPS = [
    {"setWeight": 5},
    {"pause": {"duration": "5m"}},
    {"analysis": {"templates": [{"templateName": "model-service-slo"}]}},
    {"setWeight": 25},
    {"pause": {}},
    {"analysis": {"templates": [{"templateName": "model-service-slo"}]}},
]
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlstack-prod/model-service:" + "b" * 40


def canary_rollout(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "model-service", "namespace": "mlstack"},
        "spec": {
            "strategy": {"canary": {"stableService": "model-service", "steps": copy.deepcopy(CANARY_STEPS)}},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "model-service",
                            "image": IMAGE,
                            "env": [{"name": "MLSTACK_MODEL_URI", "value": "s3://b/models/loan-approval/1.1.0/"}],
                        }
                    ]
                }
            },
        },
        "status": {"phase": "Paused", "stableRS": "aaaa", "currentPodHash": "bbbb", **status},
    }


def blue_green_rollout(**status: Any) -> dict[str, Any]:
    rollout = canary_rollout(**status)
    rollout["spec"]["strategy"] = {"blueGreen": {"activeService": "model-service", "previewService": "p"}}
    return rollout


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKubeApi]:
    """The fake API server (a test sets its Rollout), and a KUBECONFIG whose current context is staging's."""
    for running in serve(FakeKubeApi(rollout=canary_rollout())):
        config = write_kubeconfig(
            tmp_path / "kubeconfig",
            running.url,
            {
                "staging": "arn:aws:eks:us-west-2:123456789012:cluster/mlstack-staging",
                "prod": "arn:aws:eks:us-east-1:123456789012:cluster/mlstack-prod",
            },
            current="staging",
        )
        monkeypatch.setenv("KUBECONFIG", str(config))
        monkeypatch.chdir(Path(__file__).resolve().parents[2])
        yield running


def test_promote_at_a_pause_clears_it_on_the_status_subresource(api: FakeKubeApi) -> None:
    api.rollout = canary_rollout(currentStepIndex=4, pauseConditions=[{"reason": "CanaryPauseStep"}])
    assert main(["release", "promote", "prod"]) == 0
    assert api.patches == [("status", {"status": {"pauseConditions": None}})]
    assert all(r.content_type == MERGE_PATCH for r in api.requests if r.method == "PATCH")
    assert api.rollout is not None
    assert "pauseConditions" not in api.rollout["status"]


def test_promote_during_an_analysis_step_moves_to_the_next_step(api: FakeKubeApi) -> None:
    api.rollout = canary_rollout(currentStepIndex=2)
    assert main(["release", "promote", "prod"]) == 0
    assert api.patches == [("status", {"status": {"pauseConditions": None, "currentStepIndex": 3}})]


def test_promote_of_a_rollout_paused_by_hand_also_unpauses_its_spec(api: FakeKubeApi) -> None:
    api.rollout = canary_rollout(currentStepIndex=1, pauseConditions=[{"reason": "CanaryPauseStep"}])
    api.rollout["spec"]["paused"] = True
    assert main(["release", "promote", "prod"]) == 0
    assert api.patches == [
        ("status", {"status": {"pauseConditions": None}}),
        ("object", {"spec": {"paused": False}}),
    ]


def test_promote_an_inconclusive_analysis_resumes_the_controller_past_the_step(api: FakeKubeApi) -> None:
    api.rollout = canary_rollout(
        currentStepIndex=2,
        controllerPause=True,
        pauseConditions=[{"reason": "InconclusiveAnalysisRun"}],
        canary={"currentStepAnalysisRunStatus": {"name": "run-1", "status": "Inconclusive"}},
    )
    assert main(["release", "promote", "prod"]) == 0
    assert api.patches == [
        ("status", {"status": {"pauseConditions": None, "controllerPause": False, "currentStepIndex": 3}})
    ]


def test_promote_full_skips_the_remaining_steps(api: FakeKubeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.rollout = canary_rollout(currentStepIndex=1)
    assert main(["release", "promote", "prod", "--full"]) == 0
    assert api.patches == [("status", {"status": {"promoteFull": True}})]
    assert "fully promoted" in capsys.readouterr().out


def test_promote_blue_green_waiting_for_the_switch(api: FakeKubeApi) -> None:
    api.rollout = blue_green_rollout(pauseConditions=[{"reason": "BlueGreenPause"}])
    assert main(["release", "promote", "prod"]) == 0
    assert api.patches == [("status", {"status": {"pauseConditions": None}})]


def test_without_a_status_subresource_the_whole_patch_goes_to_the_object(api: FakeKubeApi) -> None:
    api.rollout, api.status_subresource = canary_rollout(currentStepIndex=2), False
    assert main(["release", "promote", "prod"]) == 0
    assert api.patches == [
        ("status", {"status": {"pauseConditions": None, "currentStepIndex": 3}}),
        ("object", {"spec": {"paused": False}, "status": {"pauseConditions": None, "currentStepIndex": 3}}),
    ]
    assert main(["release", "abort", "prod"]) == 0
    assert api.patches[-2:] == [("status", {"status": {"abort": True}}), ("object", {"status": {"abort": True}})]


def test_abort_sets_status_abort_and_status_shows_it(api: FakeKubeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["release", "abort", "prod"]) == 0
    assert api.patches == [("status", {"status": {"abort": True}})]
    assert "aborted: traffic returns to the stable version" in capsys.readouterr().out
    assert main(["release", "status", "prod"]) == 0
    assert "aborted:   traffic is on the stable version" in capsys.readouterr().out


def test_status_shows_the_version_the_step_and_the_analysis(
    api: FakeKubeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.rollout = canary_rollout(
        currentStepIndex=2,
        readyReplicas=4,
        replicas=4,
        updatedReplicas=1,
        canary={
            "weights": {"canary": {"weight": 5}, "stable": {"weight": 95}},
            "currentStepAnalysisRunStatus": {"name": "model-service-bbbb-2", "status": "Running"},
        },
    )
    assert main(["release", "status", "prod"]) == 0
    out = capsys.readouterr().out
    assert "rollout mlstack/model-service (context prod), stack prod (canary)" in out
    assert f"image:     {IMAGE}" in out
    assert "model:     s3://b/models/loan-approval/1.1.0/" in out
    assert "strategy:  canary, step 2 of 6, canary weight 5%" in out
    assert "analysis:  model-service-bbbb-2 Running" in out
    assert [r.method for r in api.requests] == ["GET"], "status only reads"


def test_the_context_must_be_the_stacks_cluster(api: FakeKubeApi, capsys: pytest.CaptureFixture[str]) -> None:
    # The current context is staging's; prod's is found by its cluster, and an explicit wrong one is refused.
    assert main(["release", "status", "prod"]) == 0
    capsys.readouterr()
    assert main(["release", "abort", "prod", "--context", "nowhere"]) == 3
    assert "kubeconfig has no context 'nowhere'; it has prod, staging" in capsys.readouterr().err
    assert main(["release", "status", "dev"]) == 2
    assert "compute.mode is 'ec2'" in capsys.readouterr().err
    assert api.patches == []


def test_a_missing_rollout_or_refused_credentials_are_one_line(
    api: FakeKubeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.rollout = None
    assert main(["release", "promote", "prod"]) == 3
    assert capsys.readouterr().err.strip() == (
        "error: rollout mlstack/model-service (context prod): not found; "
        "has the stack been deployed (pulumi up) to this cluster?"
    )
    api.rollout, api.refuse_with = canary_rollout(), 403
    assert main(["release", "abort", "prod"]) == 3
    assert "the API refused the credentials (403 Forbidden)" in capsys.readouterr().err


def test_no_kubeconfig_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    assert main(["release", "status", "prod"]) == 3
    assert "cannot read the kubeconfig (KUBECONFIG or ~/.kube/config)" in capsys.readouterr().err
