"""Kubernetes objects from manifest-shaped dicts.

The SDK types every field as a deep union of TypedDicts; type-checking large literal manifests against them
costs mypy tens of gigabytes. The manifests are instead validated against the cluster version's OpenAPI
schema by the tests, a stricter check than the TypedDicts.
"""

from collections.abc import Callable
from typing import Any, TypeVar

ObjectT = TypeVar("ObjectT")


def create(resource_class: Callable[..., ObjectT], resource_name: str, /, **fields: Any) -> ObjectT:
    """`resource_class(resource_name, **fields)`: create(k8s.apps.v1.Deployment, "web", metadata={...}, spec={...})."""
    return resource_class(resource_name, **fields)
