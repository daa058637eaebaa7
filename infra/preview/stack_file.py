"""Reading `stacks/Pulumi.<stack>.yaml` without the Pulumi CLI."""

from pathlib import Path
from typing import Any

import yaml

from infra.config import StackConfigError
from infra.config.load import STACK_CONFIG_DIR

# Offline, a `secure:` value cannot be decrypted; the program sees this stand-in, marked secret.
UNDECRYPTED_SECRET = "offline-preview-secret"


def stacks_dir(root: Path) -> Path:
    return root / STACK_CONFIG_DIR


def available_stacks(root: Path) -> list[str]:
    return sorted(path.name[len("Pulumi.") : -len(".yaml")] for path in stacks_dir(root).glob("Pulumi.*.yaml"))


def read_stack_file(root: Path, stack: str) -> tuple[dict[str, Any], list[str]]:
    """The stack file's config map and the keys that hold secrets."""
    path = stacks_dir(root) / f"Pulumi.{stack}.yaml"
    shown = f"{STACK_CONFIG_DIR}/{path.name}"
    if not path.is_file():
        known = ", ".join(available_stacks(root)) or "none"
        raise StackConfigError(f"{shown}: no such stack file; stacks found: {known}")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(error, "problem", None) or str(error)
        raise StackConfigError(f"{shown}: not valid YAML{where}: {reason}") from None
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise StackConfigError(f"{shown}: expected a mapping with a 'config:' section of 'namespace:key: value'")
    config: dict[str, Any] = {}
    secret_keys: list[str] = []
    for key, value in (document.get("config") or {}).items():
        if not isinstance(key, str) or ":" not in key:
            raise StackConfigError(f"{shown}: {key}: config keys must be namespaced, e.g. mlstack:{key}")
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[key] = UNDECRYPTED_SECRET
            secret_keys.append(key)
        else:
            config[key] = value
    return config, secret_keys
