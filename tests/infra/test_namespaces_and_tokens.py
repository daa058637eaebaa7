"""Every namespaced object waits for its namespace; pods that never call the Kubernetes API carry no API token."""

from typing import Any

import pytest

from infra.preview.engine import RecordedResource, StackRun, run_program
from tests.conftest import stack_config

NAMESPACE = "kubernetes:core/v1:Namespace"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
# Namespaces EKS creates itself.
PREEXISTING = ("default", "kube-system")
ROLE_BINDINGS = (
    "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
)


def with_retrain_relay(stack: str) -> dict[str, Any]:
    config = stack_config(stack)
    config["mlstack:monitoring"] = {"retrain": {"repository": "example-org/mlstack"}}
    config["mlstack:retrainGithubToken"] = "ghp_not-a-real-token-0123456789"
    return config


@pytest.fixture(scope="module")
def relay_run() -> StackRun:
    return run_program("staging", with_retrain_relay("staging"), ["mlstack:retrainGithubToken"])


def _namespace_of(resource: RecordedResource) -> str | None:
    if resource.type == HELM_RELEASE:
        namespace: str | None = resource.inputs.get("namespace")
        return namespace
    metadata = resource.inputs.get("metadata")
    return metadata.get("namespace") if isinstance(metadata, dict) else None


def _waits_for_namespace(run: StackRun) -> list[str]:
    """Each namespaced Kubernetes object whose own dependencies lack the Namespace resource of its namespace."""
    namespaces = {r.inputs["metadata"]["name"]: r.urn for r in run.of_type(NAMESPACE)}
    missing = []
    for resource in run.resources:
        namespace = _namespace_of(resource) if resource.type.startswith("kubernetes:") else None
        if namespace is None or namespace in PREEXISTING or resource.type == NAMESPACE:
            continue
        if namespaces.get(namespace) not in resource.dependencies:
            missing.append(f"{resource.name} ({namespace})")
    return missing


def test_every_namespaced_object_depends_on_its_namespace(stack_run: StackRun) -> None:
    assert _waits_for_namespace(stack_run) == []


def test_the_retrain_relays_objects_depend_on_the_monitoring_namespace(relay_run: StackRun) -> None:
    assert [r for r in relay_run.resources if r.name.startswith("retrain-relay-")]
    assert _waits_for_namespace(relay_run) == []


def test_the_batch_cronjob_depends_on_the_service_namespace(committed_runs: dict[str, StackRun]) -> None:
    run = committed_runs["prod"]
    (namespace,) = [r for r in run.of_type(NAMESPACE) if r.inputs["metadata"]["name"] == "mlstack"]
    cronjobs = run.of_type("kubernetes:batch/v1:CronJob")
    assert {cronjob.name for cronjob in cronjobs} == {"batch-cronjob", "label-join-cronjob"}
    for cronjob in cronjobs:
        assert namespace.urn in cronjob.dependencies, cronjob.name


def _pod_specs(run: StackRun) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for resource in run.resources:
        spec = resource.inputs.get("spec") if resource.type.startswith("kubernetes:") else None
        if not isinstance(spec, dict):
            continue
        template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
        if isinstance(template, dict):
            specs.append((resource.name, template["spec"]))
    return specs


def _accounts_bound_to_roles(run: StackRun) -> set[str]:
    return {
        subject["name"]
        for binding_type in ROLE_BINDINGS
        for binding in run.of_type(binding_type)
        for subject in binding.inputs.get("subjects", [])
        if subject.get("kind") == "ServiceAccount"
    }


def _token_mounted_without_need(run: StackRun) -> list[str]:
    """Pods that would get an API token although their service account holds no Kubernetes role."""
    bound = _accounts_bound_to_roles(run)
    return [
        name
        for name, spec in _pod_specs(run)
        if spec.get("serviceAccountName", "default") not in bound
        and spec.get("automountServiceAccountToken") is not False
    ]


def test_pods_that_never_call_the_kubernetes_api_mount_no_token(stack_run: StackRun, relay_run: StackRun) -> None:
    assert _token_mounted_without_need(stack_run) == []
    assert _token_mounted_without_need(relay_run) == []


def test_the_model_service_batch_and_relay_pods_are_among_those_checked(
    committed_runs: dict[str, StackRun], relay_run: StackRun
) -> None:
    checked = {name for name, spec in _pod_specs(relay_run) if spec.get("automountServiceAccountToken") is False}
    assert {"model-service-rollout", "batch-cronjob", "retrain-relay-deployment"} <= checked
    (account,) = [
        r for r in relay_run.of_type("kubernetes:core/v1:ServiceAccount") if r.name == "retrain-relay-service-account"
    ]
    assert account.inputs["automountServiceAccountToken"] is False


def test_a_pod_identity_pod_still_gets_credentials_without_the_api_token(committed_runs: dict[str, StackRun]) -> None:
    # Pod Identity needs an association for the pod's service account; the webhook adds its own token volume.
    run = committed_runs["prod"]
    associations = {
        a.inputs["serviceAccount"] for a in run.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    }
    cronjobs = run.of_type("kubernetes:batch/v1:CronJob")
    assert len(cronjobs) == 2, "the batch job and the label join"
    for cronjob in cronjobs:
        pod = cronjob.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, cronjob.name
        assert pod["serviceAccountName"] in associations, cronjob.name
