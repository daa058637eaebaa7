"""Reading `stacks/Pulumi.<stack>.yaml` without the Pulumi CLI."""

from pathlib import Path
from typing import Any

import yaml

from infra.config import StackConfigError
from infra.config.load import STACK_CONFIG_DIR, parse_stack_config

# Offline, a `secure:` value cannot be decrypted; the program sees this stand-in, marked secret.
UNDECRYPTED_SECRET = "offline-preview-secret"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping, which plain YAML loaders let the last one win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DuplicateKeyError(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class DuplicateKeyError(Exception):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"{key!r} repeated at line {line}")
        self.key = key
        self.line = line


def load_unique_keys(text: str) -> Any:
    """YAML `text` as Python values; raises DuplicateKeyError naming a key given twice in one mapping."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects


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
        document = load_unique_keys(path.read_text(encoding="utf-8")) or {}
    except DuplicateKeyError as error:
        raise StackConfigError(
            f"{shown}: line {error.line}: key {error.key!r} appears twice in the same mapping; "
            "YAML would keep only the last one, so remove one of them"
        ) from None
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


def cidr_overlaps(root: Path, stack: str, config: dict[str, Any]) -> list[str]:
    """Warnings for other stack files whose VPC CIDR overlaps this stack's (a copied file that kept it).

    A warning, not an error: stacks in separate accounts may reuse a range on purpose, but two VPCs that are ever
    peered, share a Transit Gateway or a VPN need distinct ones, and a copy that kept the range is usually a slip.
    """
    own = parse_stack_config(stack, config).config.network.cidr
    warnings = []
    for other in available_stacks(root):
        if other == stack:
            continue
        try:
            other_config, _ = read_stack_file(root, other)
            theirs = parse_stack_config(other, other_config).config.network.cidr
        except StackConfigError:
            continue  # its own preview reports what is wrong with it
        if own.overlaps(theirs):
            warnings.append(
                f"{STACK_CONFIG_DIR}/Pulumi.{stack}.yaml: mlstack:network.cidr {own} overlaps "
                f"{STACK_CONFIG_DIR}/Pulumi.{other}.yaml's {theirs}; VPCs that are ever peered or joined by a "
                "Transit Gateway or VPN need distinct ranges, so give this stack its own"
            )
    return warnings
