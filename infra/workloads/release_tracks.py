"""Release strategies as data: which tracks of the service run, at which version, taking which share of traffic.

Plain functions over the stack config, so each strategy's rules are testable without Kubernetes.
"""

import math
from dataclasses import dataclass

from infra.config.models import ReleaseConfig, ServiceConfig

APP = "model-service"


@dataclass(frozen=True)
class Track:
    """One Deployment of the service (stable, canary, blue or green) and the Service in front of it."""

    name: str
    image_tag: str
    model_version: str
    replicas: int
    weight: int  # percent of traffic
    # An idle blue-green colour keeps its pods for a while (Pulumi leaves its replica count alone).
    scale_down_after_seconds: int | None = None

    @property
    def resource_name(self) -> str:
        return APP if self.name == "stable" else f"{APP}-{self.name}"

    @property
    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": APP, "mlstack.io/track": self.name}


def release_tracks(release: ReleaseConfig, service: ServiceConfig) -> list[Track]:
    """The tracks a stack runs; their weights always sum to 100."""
    if release.strategy == "blue-green":
        assert release.blue_green is not None  # config validation guarantees it
        settings = release.blue_green
        tracks = []
        for color in ("blue", "green"):
            version = getattr(settings, color)
            active = color == settings.active_color
            warm = active or settings.idle == "warm"
            tracks.append(
                Track(
                    name=color,
                    image_tag=version.image_tag,
                    model_version=version.model_version,
                    replicas=release.replicas,
                    weight=100 if active else 0,
                    scale_down_after_seconds=None if warm else settings.scale_down_delay_seconds,
                )
            )
        return tracks
    stable = Track("stable", service.image_tag, service.model_version, release.replicas, 100)
    canary = release.canary
    if release.strategy == "rolling" or canary is None or canary.weight == 0 or canary.version is None:
        return [stable]
    canary_replicas = max(1, math.ceil(release.replicas * canary.weight / 100))
    return [
        Track("stable", service.image_tag, service.model_version, release.replicas, 100 - canary.weight),
        Track("canary", canary.version.image_tag, canary.version.model_version, canary_replicas, canary.weight),
    ]


def serving_image_tag(release: ReleaseConfig, service: ServiceConfig) -> str:
    """The image that takes the traffic (the stable track's, or the active colour's): deploy.yml rolls back to it."""
    if release.strategy == "blue-green" and release.blue_green is not None:
        active: str = getattr(release.blue_green, release.blue_green.active_color).image_tag
        return active
    return service.image_tag
