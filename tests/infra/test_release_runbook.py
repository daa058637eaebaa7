"""The release runbook, step by step: each scenario walks stack-file (and commit) states through previews and checks
what the cluster would be asked to do. The controller carries out the release; the program must hand it exactly
one changed object per release, never touch what the controller or the autoscaler owns, and never undo an abort.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.cli import main
from infra.preview.engine import StackRun, run_program
from infra.preview.plan import PlanRenderer
from infra.preview.stack_file import read_stack_file
from infra.release_state import IMAGE_TAG_ENV
from tests.conftest import REPO_ROOT, RunStack, stack_config
from tests.infra.fake_kube_api import FakeKubeApi, serve, write_kubeconfig
from tests.infra.test_workloads import container, env_of, manifests, one, rollout

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40
ROLLOUT_TYPE = "kubernetes:argoproj.io/v1alpha1:Rollout"


def at_commit(
    run_stack: RunStack, monkeypatch: pytest.MonkeyPatch, stack: str, commit: str, **changes: Any
) -> StackRun:
    """A preview of `stack` deployed from `commit`, with stack-file keys changed (`release={...}`)."""
    monkeypatch.setenv(IMAGE_TAG_ENV, commit)
    config = stack_config(stack)
    for key, value in changes.items():
        config[f"mlstack:{key}"] = {**config.get(f"mlstack:{key}", {}), **value}
    return run_stack(stack, config)


def changed(before: StackRun, after: StackRun) -> dict[str, str]:
    """Resource name -> added / removed / changed between two previews: what `pulumi up` would send."""
    renderer_before, renderer_after = PlanRenderer(before.invented), PlanRenderer(after.invented)
    old = {r.name: renderer_before.value(r.inputs) for r in before.resources}
    new = {r.name: renderer_after.value(r.inputs) for r in after.resources}
    changes = dict.fromkeys(old.keys() - new.keys(), "removed") | dict.fromkeys(new.keys() - old.keys(), "added")
    return changes | {name: "changed" for name in old.keys() & new.keys() if old[name] != new[name]}


def no_replicas_anywhere(run: StackRun) -> None:
    """The HPA's field: under server-side apply a program that writes it conflicts with the autoscaler."""
    (resource,) = run.of_type(ROLLOUT_TYPE)
    assert "replicas" not in resource.inputs["spec"]


@pytest.fixture
def kube_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKubeApi]:
    for running in serve(FakeKubeApi(rollout=None)):
        config = write_kubeconfig(tmp_path / "kubeconfig", running.url, {"prod": "mlstack-prod"}, current="prod")
        monkeypatch.setenv("KUBECONFIG", str(config))
        monkeypatch.chdir(REPO_ROOT)
        yield running


def as_deployed(run: StackRun, **status: Any) -> dict[str, Any]:
    """The Rollout the preview would create, as the API would hold it with the controller's status."""
    return {**rollout(run), "status": status}


def test_first_deploy(run_stack: RunStack, monkeypatch: pytest.MonkeyPatch) -> None:
    run = at_commit(run_stack, monkeypatch, "prod", COMMIT_A)
    kinds = sorted(m["kind"] for m in manifests(run) if m["metadata"].get("namespace") == "mlstack")
    assert kinds == [
        "AnalysisTemplate",
        "CronJob",  # batch scoring and the label join
        "CronJob",
        "HorizontalPodAutoscaler",
        "Ingress",  # REST and, with prod's certificate, gRPC on the same ALB
        "Ingress",
        "NetworkPolicy",  # default deny, the service's ingress allows, essential egress (DNS, 443)
        "NetworkPolicy",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Rollout",
        "Secret",  # the API clients' key digests, and the prediction-id key the replicas share
        "Secret",
        "Service",  # stable, canary, internal (metrics and feedback)
        "Service",
        "Service",
        "ServiceAccount",  # the service's, the batch job's and the label join's
        "ServiceAccount",
        "ServiceAccount",
    ]
    assert container(rollout(run))["image"].endswith(f":{COMMIT_A}")
    # The first Rollout goes straight to its full size (Rollouts skips the steps without a previous version); its
    # pods load the model this stack published, and `pulumi up` does not wait for them at the Rollout.
    metadata = next(r for r in run.resources if r.name == "bundled-model-metadata-json")
    (resource,) = run.of_type(ROLLOUT_TYPE)
    assert metadata.urn in resource.dependencies
    assert resource.inputs["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    no_replicas_anywhere(run)
    # The next `up` of the same commit asks nothing of the cluster.
    assert changed(run, at_commit(run_stack, monkeypatch, "prod", COMMIT_A)) == {}


def test_a_new_image_is_canaried_at_5_percent_and_promoted(
    run_stack: RunStack, monkeypatch: pytest.MonkeyPatch, kube_api: FakeKubeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    before = at_commit(run_stack, monkeypatch, "prod", COMMIT_A)
    after = at_commit(run_stack, monkeypatch, "prod", COMMIT_B)
    # One changed pod template (and the two jobs on the same image); Services, Ingress and weights stay the
    # controller's.
    assert changed(before, after) == {
        "model-service-rollout": "changed",
        "batch-cronjob": "changed",
        "label-join-cronjob": "changed",
    }
    old, new = rollout(before), rollout(after)
    assert {**new, "spec": {**new["spec"], "template": old["spec"]["template"]}} == old
    assert container(new)["image"].endswith(f":{COMMIT_B}")
    steps = new["spec"]["strategy"]["canary"]["steps"]
    assert steps[:3] == [
        {"setWeight": 5},
        {"pause": {"duration": "5m"}},
        {"analysis": steps[2]["analysis"]},
    ]
    # Held at the 5% pause, an operator promotes it on: the pause condition goes, the controller moves on.
    kube_api.rollout = as_deployed(
        after,
        phase="Paused",
        stableRS="aaaa",
        currentPodHash="bbbb",
        currentStepIndex=1,
        pauseConditions=[{"reason": "CanaryPauseStep", "startTime": "2026-11-29T18:00:00Z"}],
        canary={"weights": {"canary": {"weight": 5}, "stable": {"weight": 95}}},
    )
    assert main(["release", "status", "prod"]) == 0
    assert "strategy:  canary, step 1 of 9, canary weight 5%" in capsys.readouterr().out
    assert main(["release", "promote", "prod"]) == 0
    assert kube_api.patches == [("status", {"status": {"pauseConditions": None}})]
    no_replicas_anywhere(after)


def test_a_failed_analysis_rolls_back_and_the_next_up_does_not_undo_it(
    run_stack: RunStack, monkeypatch: pytest.MonkeyPatch, kube_api: FakeKubeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    after = at_commit(run_stack, monkeypatch, "prod", COMMIT_B)
    template = one(after, "AnalysisTemplate")
    # A measurement over the SLO fails it; past failureLimit the run fails and the controller aborts the update.
    assert template["spec"]["metrics"]
    for metric in template["spec"]["metrics"]:
        assert metric["failureCondition"].startswith("len(result) > 0 && !isNaN(result[0]) && result[0] >")
        assert metric["failureLimit"] < metric["count"]
    # The controller aborted: the canary at weight 0, the action annotation back to the stable Service.
    kube_api.rollout = as_deployed(
        after,
        phase="Degraded",
        message='RolloutAborted: Rollout aborted update to revision 2: Metric "error-ratio" assessed Failed',
        abort=True,
        stableRS="aaaa",
        currentPodHash="bbbb",
        canary={
            "weights": {"canary": {"weight": 0}, "stable": {"weight": 100}},
            "currentStepAnalysisRunStatus": {"name": "model-service-bbbb-2-2", "status": "Failed"},
        },
    )
    assert main(["release", "status", "prod"]) == 0
    out = capsys.readouterr().out
    assert "analysis:  model-service-bbbb-2-2 Failed" in out
    assert "aborted:   traffic is on the stable version" in out
    # The next `up` of the same commit sends nothing; the Ingress never carries weights the program wrote.
    again = at_commit(run_stack, monkeypatch, "prod", COMMIT_B)
    assert changed(after, again) == {}
    assert (
        "alb.ingress.kubernetes.io/actions.model-service"
        not in one(again, "Ingress", "model-service")["metadata"]["annotations"]
    )
    assert kube_api.patches == []


def test_a_blue_green_switch_and_switch_back(run_stack: RunStack, monkeypatch: pytest.MonkeyPatch) -> None:
    blue = at_commit(run_stack, monkeypatch, "staging", COMMIT_A)
    green = at_commit(run_stack, monkeypatch, "staging", COMMIT_B)
    # Switch: the new version starts behind the preview Service; the controller switches the active Service's
    # selector once the analysis passes. The program's Services are the same objects throughout.
    assert changed(blue, green) == {
        "model-service-rollout": "changed",
        "batch-cronjob": "changed",
        "label-join-cronjob": "changed",
    }
    strategy = rollout(green)["spec"]["strategy"]["blueGreen"]
    assert strategy["prePromotionAnalysis"]["templates"] == [{"templateName": "model-service-slo"}]
    assert strategy["scaleDownDelaySeconds"] == 600
    # Switch back (the commit reverted): exactly the first spec again, which the controller recognises as the
    # previous ReplicaSet, still up for scaleDownDelaySeconds, and within the rollback window it skips analysis.
    back = at_commit(run_stack, monkeypatch, "staging", COMMIT_A)
    assert rollout(back) == rollout(blue)
    assert changed(green, back) == {
        "model-service-rollout": "changed",
        "batch-cronjob": "changed",
        "label-join-cronjob": "changed",
    }
    assert rollout(back)["spec"]["rollbackWindow"] == {"revisions": 1}
    no_replicas_anywhere(back)


@pytest.fixture
def pull_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout's copy of the stack files, which `mlstack model-version` edits as retrain.yml does."""
    shutil.copy(REPO_ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(REPO_ROOT / "stacks", tmp_path / "stacks")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(IMAGE_TAG_ENV, COMMIT_A)
    return tmp_path


def test_a_model_version_pull_request(pull_request: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = {}
    for moment in ("before", "after"):
        if moment == "after":
            assert main(["model-version", "1.1.0", "--stack", "prod"]) == 0
            assert "service.modelVersion: 1.0.0 -> 1.1.0" in capsys.readouterr().out
        config, secret_keys = read_stack_file(pull_request, "prod")
        runs[moment] = run_program("prod", config, secret_keys)
    before, after = runs["before"], runs["after"]
    # The Rollout's pods load the new version (a canary through the usual steps); the batch job scores with it;
    # the bundled package the stable pods run stays published.
    assert changed(before, after) == {"model-service-rollout": "changed", "batch-cronjob": "changed"}
    assert env_of(rollout(after))["MLSTACK_MODEL_URI"].endswith("/models/loan-approval/1.1.0/")
    assert container(rollout(after))["image"] == container(rollout(before))["image"]
    # Only a new model version faces the drift check: the query drops series of versions the stable pods serve.
    drift = next(m for m in one(after, "AnalysisTemplate")["spec"]["metrics"] if m["name"] == "prediction-drift")
    assert "unless on (model_version)" in drift["provider"]["prometheus"]["query"]


def test_an_hpa_scaled_rollout_updated(run_stack: RunStack, monkeypatch: pytest.MonkeyPatch) -> None:
    scaled = at_commit(run_stack, monkeypatch, "prod", COMMIT_A)
    # The autoscaler has grown the Rollout to 9 replicas; a new image and a new floor follow.
    image = at_commit(run_stack, monkeypatch, "prod", COMMIT_B)
    floor = at_commit(run_stack, monkeypatch, "prod", COMMIT_B, release={"replicas": 4})
    for run in (scaled, image, floor):
        no_replicas_anywhere(run)  # nothing the program sends touches the 9: no conflict, no scale-down
    assert changed(image, floor) == {"model-service-hpa": "changed"}
    assert one(floor, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 4
    assert one(floor, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["kind"] == "Rollout"
