"""The bootstrap's stack file (bootstrap/stacks/Pulumi.<stack>.yaml), checked with one-line errors."""

import re
from dataclasses import dataclass

import pulumi

from infra.config import StackConfigError

NAMESPACE = "mlstack-bootstrap"
REPOSITORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
DEFAULT_ENVIRONMENTS = ["dev", "staging", "prod"]


@dataclass(frozen=True)
class BootstrapConfig:
    region: str
    repository: str
    environments: list[str]
    branch: str
    retrain_data_bucket: str


def load_bootstrap_config() -> BootstrapConfig:
    where = f"bootstrap/stacks/Pulumi.{pulumi.get_stack()}.yaml"
    config = pulumi.Config(NAMESPACE)
    region = pulumi.Config("aws").get("region")
    repository = config.get("githubRepository")
    data_bucket = config.get("retrainDataBucket")
    environments = config.get_object("environments") or DEFAULT_ENVIRONMENTS
    branch = config.get("deployBranch") or "main"
    if not region:
        raise StackConfigError(f"{where}: aws:region is required (the state bucket's and the secrets key's region)")
    if not repository or not REPOSITORY.match(repository):
        raise StackConfigError(
            f"{where}: {NAMESPACE}:githubRepository must be OWNER/NAME of the repository whose workflows deploy,"
            f" got {repository!r}"
        )
    if not data_bucket or not BUCKET.match(data_bucket):
        raise StackConfigError(
            f"{where}: {NAMESPACE}:retrainDataBucket must be the bucket name of RETRAIN_DATA_URI, got {data_bucket!r}"
        )
    if not isinstance(environments, list) or not all(isinstance(name, str) and name for name in environments):
        raise StackConfigError(f"{where}: {NAMESPACE}:environments must be a list of GitHub environment names")
    return BootstrapConfig(region, repository, list(environments), branch, data_bucket)
