"""The release strategies as data: which Services carry the service's tracks and the Rollout strategy Argo Rollouts
carries out. Plain functions over the stack config, so each strategy's rules are testable without Kubernetes.

The program describes the release policy; the Rollout controller owns the release state (current step, weights,
which ReplicaSet is stable or active), so nothing here depends on what is deployed.
"""

from typing import Any

from infra.config.models import MANUAL_PAUSE, BlueGreenConfig, ReleaseConfig

APP = "model-service"
SERVICE_PORT = 80
# Services Rollouts points at a track's pods (it adds the pods' rollouts-pod-template-hash to their selectors).
STABLE_SERVICE = APP
CANARY_SERVICE = f"{APP}-canary"
ACTIVE_SERVICE = APP
PREVIEW_SERVICE = f"{APP}-preview"
# The Ingress routes to this Service (canary: Rollouts writes the action of the same name, the traffic split).
INGRESS_SERVICE = APP


def track_services(release: ReleaseConfig) -> dict[str, str]:
    """Role -> Service name: stable and canary, active and preview, or the one Service of a rolling update."""
    if release.strategy == "canary":
        return {"stable": STABLE_SERVICE, "canary": CANARY_SERVICE}
    if release.strategy == "blue-green":
        return {"active": ACTIVE_SERVICE, "preview": PREVIEW_SERVICE}
    return {"stable": STABLE_SERVICE}


def analysis_args() -> list[dict[str, Any]]:
    """The new (Latest) and stable ReplicaSets' pod-template hashes: the template measures the new pods only."""
    return [
        {"name": "new-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
        {"name": "stable-hash", "valueFrom": {"podTemplateHashValue": "Stable"}},
    ]


def rollout_strategy(release: ReleaseConfig, ingress: str, analysis_template: str) -> dict[str, Any]:
    """`spec.strategy` of the Rollout for the stack's release settings."""
    analysis = {"templates": [{"templateName": analysis_template}], "args": analysis_args()}
    if release.strategy == "blue-green":
        settings = release.blue_green or BlueGreenConfig()
        return {
            "blueGreen": {
                "activeService": ACTIVE_SERVICE,
                "previewService": PREVIEW_SERVICE,
                "autoPromotionEnabled": settings.auto_promotion,
                "scaleDownDelaySeconds": settings.scale_down_delay_seconds,
                "prePromotionAnalysis": analysis,
            }
        }
    if release.strategy == "canary":
        assert release.canary is not None  # config validation guarantees it
        steps: list[dict[str, Any]] = []
        for step in release.canary.steps:
            steps.append({"setWeight": step.weight})
            if step.pause == MANUAL_PAUSE:
                steps.append({"pause": {}})
            elif step.pause is not None:
                steps.append({"pause": {"duration": step.pause}})
            steps.append({"analysis": analysis})
        return {
            "canary": {
                "stableService": STABLE_SERVICE,
                "canaryService": CANARY_SERVICE,
                "trafficRouting": {"alb": {"ingress": ingress, "servicePort": SERVICE_PORT}},
                "steps": steps,
            }
        }
    # rolling: a canary without steps or traffic routing is a plain rolling update.
    return {"canary": {"maxSurge": 1, "maxUnavailable": 0}}


def traffic_action_annotation() -> str:
    """The Ingress annotation the Rollout controller writes (canary); the program must never write it."""
    return f"alb.ingress.kubernetes.io/actions.{INGRESS_SERVICE}"
