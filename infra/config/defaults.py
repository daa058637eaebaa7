"""Per-tier defaults: what a stack file gets for every key it leaves out.

The tier (`mlstack:tier`) picks the column; the environment's name is the stack's name, so a `qa` stack
can be a copy of staging with tier `staging`. Keys without a default here are required in every file.
"""

from typing import Any

TIER_DEFAULTS: dict[str, dict[str, Any]] = {
    "dev": {
        "protect": False,
        "network": {
            "azCount": 2,
            "natStrategy": "none",
            "flowLogs": {"enabled": False, "retentionDays": 30},
        },
        "compute": {
            "mode": "ec2",
            "eks": {
                "logRetentionDays": 30,
                "cpuPool": {"instanceTypes": ["t3.large"], "minSize": 1, "maxSize": 2, "desiredSize": 1},
                "gpuPool": {
                    "enabled": False,
                    "instanceTypes": ["g5.xlarge"],
                    "minSize": 0,
                    "maxSize": 1,
                    "desiredSize": 0,
                },
            },
        },
        "service": {"port": 8080},
        "release": {"strategy": "rolling", "replicas": 1, "maxReplicas": 2},
        "batch": {"enabled": False},
    },
    "staging": {
        "protect": False,
        "network": {
            "azCount": 2,
            "natStrategy": "single",
            "flowLogs": {"enabled": True, "retentionDays": 30},
        },
        "compute": {
            "mode": "eks",
            "eks": {
                "logRetentionDays": 30,
                "cpuPool": {"instanceTypes": ["m6i.large"], "minSize": 2, "maxSize": 4, "desiredSize": 2},
                "gpuPool": {"instanceTypes": ["g5.xlarge", "g6.xlarge"], "minSize": 0, "maxSize": 1, "desiredSize": 0},
            },
        },
        "service": {"port": 8080},
        "release": {"strategy": "blue-green", "replicas": 2, "maxReplicas": 4},
        "monitoring": {"retentionDays": 15, "storageGb": 50},
    },
    "prod": {
        "protect": True,
        "network": {
            "azCount": 3,
            "natStrategy": "per-az",
            "flowLogs": {"enabled": True, "retentionDays": 365},
        },
        "compute": {
            "mode": "eks",
            "eks": {
                "logRetentionDays": 365,
                "cpuPool": {"instanceTypes": ["m6i.xlarge"], "minSize": 3, "maxSize": 10, "desiredSize": 3},
                # Scaled from zero by the Cluster Autoscaler when a pod asks for a GPU: an idle GPU node costs more
                # than the rest of the cluster (the unused-capacity policy).
                "gpuPool": {"instanceTypes": ["g5.xlarge", "g6.xlarge"], "minSize": 0, "maxSize": 4, "desiredSize": 0},
            },
        },
        # Issue 18: the public API needs API keys, and a WAF rate rule and access logs guard the ALB.
        "service": {"port": 8080, "authentication": "api-keys"},
        "ingress": {"rateLimitPerIp": 2000, "accessLogs": True},
        "release": {"strategy": "canary", "replicas": 3, "maxReplicas": 12},
        "monitoring": {"retentionDays": 30, "storageGb": 100},
    },
}


def with_tier_defaults(tier: str, values: dict[str, Any]) -> dict[str, Any]:
    """The stack file's values laid over the tier's defaults, merging nested objects key by key."""
    return _deep_merge(TIER_DEFAULTS[tier], values)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
