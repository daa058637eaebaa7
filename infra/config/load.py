"""Reading the stack's config and turning validation failures into one line a person can act on."""

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

import pulumi
from pulumi.runtime import config as runtime_config
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from infra.config.aws_catalog import aws_regions, suggestion
from infra.config.defaults import TIER_DEFAULTS, with_tier_defaults
from infra.config.errors import StackConfigError
from infra.config.models import ConfigRuleError, StackConfig

NAMESPACE = "mlstack"
STACK_CONFIG_DIR = "stacks"
REGION_KEY = "aws:region"
# Alert receivers and the retrain relay's GitHub token: credentials, so they live outside the typed model and
# must be Pulumi secrets.
SECRET_KEYS = ("slackWebhookUrl", "pagerdutyRoutingKey", "alertWebhookUrl", "retrainGithubToken")
REGION_PATTERN = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")


@dataclass(frozen=True)
class Environment:
    """One deployed environment: the stack's name, its region and its validated config."""

    name: str
    region: str
    config: StackConfig

    @property
    def prefix(self) -> str:
        """Prefix for physical names and Name tags, unique per project and environment."""
        return f"{NAMESPACE}-{self.name}"

    @property
    def cluster_name(self) -> str:
        return self.prefix


def stack_file(stack: str) -> str:
    return f"{STACK_CONFIG_DIR}/Pulumi.{stack}.yaml"


def load_stack_config() -> Environment:
    """The running Pulumi program's environment, from the config the engine handed it."""
    stack = pulumi.get_stack()
    config = _engine_config()
    for key in SECRET_KEYS:
        full_key = f"{NAMESPACE}:{key}"
        if full_key in config and not runtime_config.is_config_secret(full_key):
            raise StackConfigError(
                f"{stack_file(stack)}: {full_key}: holds a credential and must be a secret; "
                f"set it with `pulumi config set --secret {full_key} ...`"
            )
    return parse_stack_config(stack, config)


def parse_stack_config(stack: str, config: dict[str, Any]) -> Environment:
    """Validate a stack's config (`namespace:key` -> value) or raise StackConfigError naming the key."""
    source = stack_file(stack)
    region = config.get(REGION_KEY)
    if not isinstance(region, str) or not REGION_PATTERN.match(region):
        shown = "missing" if region is None else f"{region!r} is not an AWS region"
        raise StackConfigError(f"{source}: {REGION_KEY}: {shown}; set it to a region such as us-east-1")
    if region not in aws_regions():
        raise StackConfigError(
            f"{source}: {REGION_KEY}: {region!r} is not an AWS region (botocore's endpoint catalogue)"
            f"{suggestion(region, aws_regions())}"
        )

    values = {
        key.split(":", 1)[1]: _decode(value)
        for key, value in config.items()
        if key.startswith(f"{NAMESPACE}:") and key.split(":", 1)[1] not in SECRET_KEYS
    }
    tier = values.get("tier")
    if tier not in TIER_DEFAULTS:
        shown = "missing" if tier is None else f"{tier!r} is not allowed"
        allowed = ", ".join(TIER_DEFAULTS)
        raise StackConfigError(f"{source}: {NAMESPACE}:tier: {shown}; choose one of {allowed}")
    _check_compute_block(source, values)
    merged = with_tier_defaults(tier, values)
    try:
        stack_config = StackConfig.model_validate(merged)
    except ValidationError as error:
        problems = "; ".join(_describe(detail) for detail in error.errors())
        raise StackConfigError(f"{source}: {problems}") from None
    certificate = stack_config.ingress.certificate_arn
    if certificate and certificate.split(":")[3] != region:
        raise StackConfigError(
            f"{source}: {NAMESPACE}:ingress.certificateArn: the certificate is in {certificate.split(':')[3]}, but the "
            f"stack deploys to {region}; an ALB takes certificates from its own region only"
        )
    return Environment(name=stack, region=region, config=stack_config)


def _check_compute_block(source: str, values: dict[str, Any]) -> None:
    """Settings for the compute mode not in use would be silently ignored: refuse them instead."""
    compute = values.get("compute")
    if not isinstance(compute, dict):
        return
    mode = compute.get("mode")
    for block, wanted in (("eks", "eks"), ("ec2", "ec2")):
        if block in compute and mode is not None and mode != wanted:
            raise StackConfigError(
                f"{source}: {NAMESPACE}:compute.{block}: set, but compute.mode is {mode!r}; "
                f"remove it or set compute.mode to '{wanted}'"
            )


def _engine_config() -> dict[str, Any]:
    # The SDK has no public way to list config keys, and rejecting unknown keys needs the whole map.
    # The language host hands config over either way, so read both.
    merged: dict[str, Any] = dict(runtime_config.get_config_env())
    merged.update(runtime_config.CONFIG.get())
    return merged


def _decode(value: Any) -> Any:
    """Pulumi passes structured config values as JSON text and scalars as plain strings."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _describe(detail: ErrorDetails) -> str:
    location = [str(part) for part in detail["loc"]]
    error = detail.get("ctx", {}).get("error")
    if isinstance(error, ConfigRuleError):
        location += error.key.split(".")
        return f"{_key_path(location)}: {error}"
    if detail["type"] == "extra_forbidden":
        allowed = _allowed_keys(location[:-1])
        close = difflib.get_close_matches(location[-1], allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"{_key_path(location)}: unknown key; {hint}allowed keys: {', '.join(allowed)}"
    if detail["type"] == "missing":
        return f"{_key_path(location)}: required key is missing"
    if detail["type"] in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        message = _range_of(location, detail.get("ctx", {}))
    else:
        message = detail["msg"].removeprefix("Value error, ")
        if message.startswith("Input should"):  # pydantic's own wording, mid-sentence here
            message = "i" + message[1:]
    return f"{_key_path(location)}: {_show(detail['input'])} is not allowed: {message}"


def _key_path(location: list[str]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if part.isdigit() else (f".{part}" if path else part)
    return f"{NAMESPACE}:{path}"


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else repr(value)


def _model_at(location: list[str]) -> type[BaseModel] | None:
    """The model that validates the object at `location` (camelCase keys, list indexes), if it is one."""
    model: type[BaseModel] = StackConfig
    for part in location:
        if part.isdigit():  # an item of a list of models: the model found for the list's key already
            continue
        field = _field(model, part)
        found = _model_in(field.annotation) if field else None
        if found is None:
            return None
        model = found
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model inside an annotation: `Model`, `Model | None`, `list[Model]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, list) or type(annotation).__name__ == "UnionType":
        return next((model for arg in get_args(annotation) if (model := _model_in(arg)) is not None), None)
    return None


def _field(model: type[BaseModel], key: str) -> FieldInfo | None:
    return next((f for name, f in model.model_fields.items() if (f.alias or name) == key), None)


def _allowed_keys(location: list[str]) -> list[str]:
    """The camelCase keys the model at `location` accepts."""
    model = _model_at(location)
    if model is None:
        return []
    return sorted(field.alias or name for name, field in model.model_fields.items())


def _range_of(location: list[str], violated: dict[str, Any]) -> str:
    """'must be from 1 to 6', read from the field's own constraints so message and rule agree; the bound pydantic
    reports as violated stands in when the field cannot be found."""
    model = _model_at(location[:-1])
    field = _field(model, location[-1]) if model else None
    bounds: dict[str, Any] = {name: violated[name] for name in ("ge", "gt", "le", "lt") if name in violated}
    for item in field.metadata if field else []:
        bounds.update(
            {name: getattr(item, name) for name in ("ge", "gt", "le", "lt") if getattr(item, name, None) is not None}
        )
    lower = f"{bounds['ge']}" if "ge" in bounds else (f"above {bounds['gt']}" if "gt" in bounds else None)
    upper = f"{bounds['le']}" if "le" in bounds else (f"below {bounds['lt']}" if "lt" in bounds else None)
    if lower and upper:
        return (
            f"must be from {lower} to {upper}" if "ge" in bounds and "le" in bounds else f"must be {lower} and {upper}"
        )
    if lower:
        return f"must be {lower} or more" if "ge" in bounds else f"must be {lower}"
    return f"must be {upper} or less" if "le" in bounds else f"must be {upper}"
