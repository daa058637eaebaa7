"""Typed stack configuration: one model for every `mlstack:` key, with per-tier defaults."""

from infra.config.errors import StackConfigError
from infra.config.load import Environment, load_stack_config, parse_stack_config, stack_file
from infra.config.models import (
    ComputeConfig,
    FlowLogsConfig,
    NetworkConfig,
    ServiceConfig,
    StackConfig,
)

__all__ = [
    "ComputeConfig",
    "Environment",
    "FlowLogsConfig",
    "NetworkConfig",
    "ServiceConfig",
    "StackConfig",
    "StackConfigError",
    "load_stack_config",
    "parse_stack_config",
    "stack_file",
]
