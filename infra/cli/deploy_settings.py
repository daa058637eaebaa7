"""`mlstack deploy-settings STACK`: what deploy-stack.yml needs to know about a stack before it has credentials.

Everything comes from the committed stack file and the offline run of the program, so the workflow never hard-codes
a region, a repository name or a URN:
- the stack's region (AWS credentials and ECR login use it, not a repository-wide variable) and compute mode
  (what "the rollout has finished" means: the EC2 host's instance refresh, or the EKS Argo Rollout);
- the secrets provider a new stack is created with;
- the image repository's name, and the registry closure: the URNs the first `pulumi up --target` must name so the
  repository exists before the first image is pushed (the engine refuses a target whose dependencies, parents or
  provider are not targeted: pulumi/pulumi pkg/resource/deploy/step_generator.go, "untargeted create");
- the model name and version the smoke test expects to be served.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.config import StackConfigError
from infra.config.load import STACK_CONFIG_DIR, parse_stack_config
from infra.preview.engine import RecordedResource, StackRun, run_program
from infra.preview.stack_file import read_stack_file

REPOSITORY_TYPE = "aws:ecr/repository:Repository"


@dataclass(frozen=True)
class DeploySettings:
    region: str
    compute_mode: str
    secrets_provider: str
    repository: str
    model_name: str
    model_version: str
    registry_targets: list[str]

    def github_output(self) -> str:
        """`key=value` lines for $GITHUB_OUTPUT (the targets go to their own file: URNs hold `$`)."""
        return "".join(
            f"{key}={value}\n"
            for key, value in (
                ("region", self.region),
                ("compute_mode", self.compute_mode),
                ("secrets_provider", self.secrets_provider),
                ("repository", self.repository),
                ("model_name", self.model_name),
                ("model_version", self.model_version),
            )
        )


ROOT_STACK_IN_TYPE = "::pulumi:pulumi:Stack$"


def engine_urn(urn: str) -> str:
    """The URN the real engine gives: it leaves the root stack out of a child's type chain (pulumi/pulumi
    pkg/resource/deploy/deployment.go, generateURN); the SDK's mock monitor keeps it."""
    return urn.replace(ROOT_STACK_IN_TYPE, "::", 1)


def provider_urn(reference: str) -> str:
    """A provider reference is `<urn>::<id>`; the URN is what --target takes."""
    return reference.rsplit("::", 1)[0]


def dependency_closure(run: StackRun, roots: list[RecordedResource]) -> list[str]:
    """The roots and everything they need created first: parents, dependencies (all and per property), providers.

    In registration order, so the list reads like the program.
    """
    by_urn = {resource.urn: resource for resource in run.resources}
    needed: set[str] = set()
    pending = [root.urn for root in roots]
    while pending:
        urn = pending.pop()
        if urn in needed:
            continue
        needed.add(urn)
        resource = by_urn[urn]
        pending += [resource.parent] if resource.parent else []
        pending += resource.dependencies
        pending += [dep for deps in resource.property_dependencies.values() for dep in deps]
        pending += [provider_urn(resource.provider)] if resource.provider else []
    return [engine_urn(resource.urn) for resource in run.resources if resource.urn in needed]


def _secrets_provider(root: Path, stack: str) -> str:
    path = root / STACK_CONFIG_DIR / f"Pulumi.{stack}.yaml"
    document: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    provider = document.get("secretsprovider") if isinstance(document, dict) else None
    if not isinstance(provider, str) or not provider.startswith("awskms://"):
        raise StackConfigError(
            f"{STACK_CONFIG_DIR}/{path.name}: secretsprovider: must name the bootstrap's key,"
            " e.g. awskms://alias/mlstack-pulumi?region=us-east-1"
        )
    return provider


def deploy_settings(root: Path, stack: str) -> DeploySettings:
    config, secret_keys = read_stack_file(root, stack)
    env = parse_stack_config(stack, config)
    run = run_program(stack, config, secret_keys)
    repositories = run.of_type(REPOSITORY_TYPE)
    if len(repositories) != 1:
        raise StackConfigError(f"stack {stack}: expected one ECR repository, the program registers {len(repositories)}")
    (repository,) = repositories
    return DeploySettings(
        region=env.region,
        compute_mode=env.config.compute.mode,
        secrets_provider=_secrets_provider(root, stack),
        repository=str(repository.inputs["name"]),
        model_name=env.config.service.model_name,
        model_version=env.config.service.model_version,
        registry_targets=dependency_closure(run, repositories),
    )
