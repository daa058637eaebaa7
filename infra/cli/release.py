"""`mlstack release status|promote|abort STACK`: the release in progress, read from and acted on in the Rollout.

Progression, promotion and abort live in the Rollout; these commands talk to the Kubernetes API with the usual
kubeconfig (KUBECONFIG, else ~/.kube/config) and never shell out to a plugin. promote and abort send exactly the
merge patches `kubectl argo rollouts promote|abort` sends (argoproj/argo-rollouts v1.9.0,
pkg/kubectl-argo-rollouts/cmd/promote/promote.go and cmd/abort/abort.go): status fields on the `status`
subresource, `spec.paused` on the object itself, and the whole patch on the object when a cluster serves no
status subresource.

The kubeconfig context must be the stack's cluster (`mlstack-<stack>`, as `aws eks update-kubeconfig` or the
stack's `kubeconfig` output names it): promoting prod while pointed at staging is refused, not guessed.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

from infra.workloads.model_service import NAMESPACE, ROLLOUT, ROLLOUT_API_VERSION

GROUP, VERSION = ROLLOUT_API_VERSION.split("/")
PLURAL = "rollouts"
MERGE_PATCH = "application/merge-patch+json"
DEFAULT_KUBECONFIG = "~/.kube/config"


class ReleaseError(Exception):
    """The release cannot be read or changed; the message says where and why."""


@dataclass(frozen=True)
class RolloutClient:
    """The stack's Rollout through one kubeconfig context."""

    api: client.CustomObjectsApi
    context: str
    namespace: str = NAMESPACE
    name: str = ROLLOUT

    @property
    def where(self) -> str:
        return f"rollout {self.namespace}/{self.name} (context {self.context})"

    def get(self) -> dict[str, Any]:
        return self._call(
            lambda: self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
        )

    def patch(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(
            lambda: self.api.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name, body, _content_type=MERGE_PATCH
            )
        )

    def patch_status(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The patch on the status subresource; None when the cluster serves none (the caller falls back)."""
        try:
            return self.api.patch_namespaced_custom_object_status(  # type: ignore[no-any-return]
                GROUP, VERSION, self.namespace, PLURAL, self.name, body, _content_type=MERGE_PATCH
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise self._error(error) from None
        except HTTPError as error:
            raise ReleaseError(f"{self.where}: cannot reach the Kubernetes API: {error}") from None

    def _call(self, request: Callable[[], Any]) -> dict[str, Any]:
        try:
            result: dict[str, Any] = request()
        except ApiException as error:
            raise self._error(error) from None
        except HTTPError as error:
            raise ReleaseError(f"{self.where}: cannot reach the Kubernetes API: {error}") from None
        return result

    def _error(self, error: ApiException) -> ReleaseError:
        if error.status == 404:
            return ReleaseError(f"{self.where}: not found; has the stack been deployed (pulumi up) to this cluster?")
        if error.status in (401, 403):
            return ReleaseError(f"{self.where}: the API refused the credentials ({error.status} {error.reason})")
        return ReleaseError(f"{self.where}: the API answered {error.status} {error.reason}")


def connect(cluster_name: str, context: str | None = None) -> RolloutClient:
    """A client on the kubeconfig context for `cluster_name`: the one named, else the current one when it is that
    cluster's, else the only context that is."""
    # Read at each call (the client reads KUBECONFIG once, at import); a list of paths is merged like kubectl does.
    kubeconfig = os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    try:
        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, OSError) as error:
        raise ReleaseError(f"cannot read the kubeconfig (KUBECONFIG or ~/.kube/config): {error}") from None
    by_name = {entry["name"]: entry for entry in contexts}
    if context is not None:
        if context not in by_name:
            raise ReleaseError(f"kubeconfig has no context {context!r}; it has {', '.join(sorted(by_name))}")
        chosen = context
    else:
        matching = [entry["name"] for entry in contexts if _is_cluster(entry, cluster_name)]
        if current and current["name"] in matching:
            chosen = current["name"]
        elif len(matching) == 1:
            chosen = matching[0]
        else:
            found = "none" if not matching else f"several: {', '.join(matching)}"
            raise ReleaseError(
                f"kubeconfig: no single context for cluster {cluster_name} ({found}); run `aws eks "
                f"update-kubeconfig --name {cluster_name}` or pass --context"
            )
    try:
        api_client = config.new_client_from_config(config_file=kubeconfig, context=chosen)
    except (ConfigException, OSError) as error:
        raise ReleaseError(f"kubeconfig context {chosen!r}: {error}") from None
    return RolloutClient(client.CustomObjectsApi(api_client), chosen)


def _is_cluster(entry: dict[str, Any], cluster_name: str) -> bool:
    """A context on the cluster: named like it (mlstack's output) or an EKS ARN ending in it (aws eks)."""
    name = str((entry.get("context") or {}).get("cluster", ""))
    return name == cluster_name or name.endswith(f":cluster/{cluster_name}")


def _current_step_index(rollout: dict[str, Any]) -> int | None:
    """replicasetutil.GetCurrentCanaryStep's index: None without canary steps, else status or 0."""
    steps = (((rollout.get("spec") or {}).get("strategy") or {}).get("canary") or {}).get("steps") or []
    if not steps:
        return None
    index = (rollout.get("status") or {}).get("currentStepIndex")
    return int(index) if index is not None else 0


Patch = dict[str, Any]


def promotion_patches(rollout: dict[str, Any], full: bool) -> tuple[Patch | None, Patch | None, Patch]:
    """(spec patch, status patch, unified patch) exactly as the plugin's getPatches builds them."""
    spec = rollout.get("spec") or {}
    status = rollout.get("status") or {}
    paused = bool(spec.get("paused"))
    unpause: dict[str, Any] = {"spec": {"paused": False}}
    spec_patch: dict[str, Any] | None = None
    status_patch: dict[str, Any] | None = None
    if full:
        if paused:
            spec_patch = unpause
        if status.get("currentPodHash") != status.get("stableRS"):
            status_patch = {"status": {"promoteFull": True}}
        return spec_patch, status_patch, {"spec": {"paused": False}, "status": {"promoteFull": True}}
    unified: dict[str, Any] = {"spec": {"paused": False}, "status": {"pauseConditions": None}}
    if paused:
        spec_patch = unpause
    steps = len((((spec.get("strategy") or {}).get("canary") or {}).get("steps")) or [])
    index = _current_step_index(rollout)
    analysis = ((status.get("canary") or {}).get("currentStepAnalysisRunStatus") or {}).get("status")
    inconclusive = "canary" in (spec.get("strategy") or {}) and analysis == "Inconclusive"
    pause_conditions = status.get("pauseConditions") or []
    if inconclusive and pause_conditions and status.get("controllerPause"):
        if index is not None:
            next_index = index + 1 if index < steps else index
            status_patch = {
                "status": {"pauseConditions": None, "controllerPause": False, "currentStepIndex": next_index}
            }
    elif pause_conditions:
        status_patch = {"status": {"pauseConditions": None}}
    elif "canary" in (spec.get("strategy") or {}) and index is not None:
        next_index = index + 1 if index < steps else index
        status_patch = {"status": {"pauseConditions": None, "currentStepIndex": next_index}}
        unified = {"spec": {"paused": False}, "status": {"pauseConditions": None, "currentStepIndex": next_index}}
    return spec_patch, status_patch, unified


def promote(rollout_client: RolloutClient, full: bool = False) -> str:
    """PromoteRollout: the status patch on the subresource (the unified patch on the object without one), then
    the spec patch."""
    rollout = rollout_client.get()
    spec_patch, status_patch, unified = promotion_patches(rollout, full)
    if status_patch is not None and rollout_client.patch_status(status_patch) is None:
        spec_patch = unified
    if spec_patch is not None:
        rollout_client.patch(spec_patch)
    return f"{rollout_client.where} {'fully promoted' if full else 'promoted'}"


def abort(rollout_client: RolloutClient) -> str:
    """AbortRollout: status.abort on the subresource, on the object when there is none."""
    body = {"status": {"abort": True}}
    if rollout_client.patch_status(body) is None:
        rollout_client.patch(body)
    return f"{rollout_client.where} aborted: traffic returns to the stable version"


def describe(rollout: dict[str, Any]) -> list[str]:
    """What an operator asks first: which version serves, how far the release is, what waits on whom."""
    spec = rollout.get("spec") or {}
    status = rollout.get("status") or {}
    strategy = spec.get("strategy") or {}
    containers = (((spec.get("template") or {}).get("spec") or {}).get("containers")) or [{}]
    env = {item.get("name"): item.get("value") for item in containers[0].get("env") or []}
    lines = [
        f"phase:     {status.get('phase', 'unknown')}" + (f" ({status['message']})" if status.get("message") else ""),
        f"image:     {containers[0].get('image', 'unknown')}",
        f"model:     {env.get('MLSTACK_MODEL_URI', 'unknown')}",
        f"stable:    {status.get('stableRS', 'none')}   updating to: {status.get('currentPodHash', 'unknown')}",
        f"replicas:  {status.get('readyReplicas', 0)} ready of {status.get('replicas', 0)}"
        f" ({status.get('updatedReplicas', 0)} updated)",
    ]
    if "blueGreen" in strategy:
        blue_green = status.get("blueGreen") or {}
        lines.append(
            f"strategy:  blue-green, active {blue_green.get('activeSelector', 'none')}, "
            f"preview {blue_green.get('previewSelector', 'none')}"
        )
        run = blue_green.get("prePromotionAnalysisRunStatus") or {}
    else:
        steps = (strategy.get("canary") or {}).get("steps") or []
        canary = status.get("canary") or {}
        weight = ((canary.get("weights") or {}).get("canary") or {}).get("weight")
        index = _current_step_index(rollout)
        progress = f"step {index} of {len(steps)}" if index is not None else "rolling update"
        lines.append(f"strategy:  canary, {progress}, canary weight {weight if weight is not None else 0}%")
        run = canary.get("currentStepAnalysisRunStatus") or {}
    if run:
        lines.append(f"analysis:  {run.get('name', '?')} {run.get('status', '?')} {run.get('message', '')}".rstrip())
    for condition in status.get("pauseConditions") or []:
        lines.append(f"paused:    {condition.get('reason', '?')} since {condition.get('startTime', '?')}")
    if status.get("abort"):
        lines.append("aborted:   traffic is on the stable version; deploy a fix or promote to retry")
    return lines
