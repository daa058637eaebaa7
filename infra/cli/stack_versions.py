"""New versions into stack files, the way each stack releases: `mlstack model-version` and `mlstack image-tag`.

A new model (retrain.yml opens a pull request with it, for review):
- rolling: `service.modelVersion` (the next `pulumi up` rolls it out);
- blue-green: the idle colour gets the active colour's image with the new model; switching `activeColor` releases it;
- canary: `release.canary.version` gets the stable image with the new model, at `--canary-weight` percent if the
  canary was off; moving its version to `service` promotes it.

A new image (deploy.yml, at apply time, for the commit it deploys):
- rolling and canary: `service.imageTag` (canary: the stable track; the canary keeps its own version);
- blue-green: the idle colour gets the new image with the active colour's model, and becomes the active colour; the
  previous colour stays up for `scaleDownDelaySeconds`, so switching back is instant.

Files are edited in place with their comments and key order kept, then validated like a preview would; an edit
that would make the file invalid writes nothing.
"""

from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from infra.config import StackConfigError
from infra.config.load import NAMESPACE, parse_stack_config
from infra.preview.stack_file import read_stack_file, stacks_dir

DEFAULT_CANARY_WEIGHT = 10


@dataclass(frozen=True)
class VersionChange:
    stack: str
    where: str
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


class _StackFile:
    """One stack file loaded for a round-trip edit, with its validated config for reading current values."""

    def __init__(self, root: Path, stack: str) -> None:
        self.stack = stack
        config, self.secret_keys = read_stack_file(root, stack)
        self.current = parse_stack_config(stack, config).config
        self.path = stacks_dir(root) / f"Pulumi.{stack}.yaml"
        self.yaml = YAML()  # round-trip: comments, order and quoting survive
        self.yaml.preserve_quotes = True
        self.yaml.width = 4096
        self.yaml.indent(mapping=2, sequence=4, offset=2)  # the stack files' own layout
        self.document = self.yaml.load(self.path.read_text(encoding="utf-8"))

    def block(self, *keys: str) -> CommentedMap:
        current = self.document["config"]
        for key in keys:
            if current.get(key) is None:
                current[key] = CommentedMap()
            current = current[key]
        return current  # type: ignore[no-any-return]

    def save(self) -> None:
        text = StringIO()
        self.yaml.dump(self.document, text)
        _validate(self.stack, text.getvalue(), self.secret_keys)
        self.path.write_text(text.getvalue(), encoding="utf-8")


def set_model_version(
    root: Path, stack: str, version: str, canary_weight: int = DEFAULT_CANARY_WEIGHT
) -> VersionChange:
    edit = _StackFile(root, stack)
    release, service = edit.current.release, edit.current.service
    if release.strategy == "blue-green" and release.blue_green is not None:
        active = release.blue_green.active_color
        idle = _other_colour(active)
        active_version = getattr(release.blue_green, active)
        before = getattr(release.blue_green, idle).model_version
        where = f"release.blueGreen.{idle}"
        colours = edit.block(f"{NAMESPACE}:release", "blueGreen")
        colours[idle] = _flow({"imageTag": _quoted(active_version.image_tag), "modelVersion": _quoted(version)})
    elif release.strategy == "canary":
        canary = release.canary
        before = canary.version.model_version if canary is not None and canary.version is not None else "(none)"
        where = "release.canary.version"
        settings = edit.block(f"{NAMESPACE}:release", "canary")
        settings["version"] = _flow({"imageTag": _quoted(service.image_tag), "modelVersion": _quoted(version)})
        if canary is None or canary.weight == 0:
            settings["weight"] = canary_weight
    else:
        before = service.model_version
        where = "service.modelVersion"
        edit.block(f"{NAMESPACE}:service")["modelVersion"] = _quoted(version)
    edit.save()
    return VersionChange(stack, where, before, version)


def set_image_tag(root: Path, stack: str, tag: str) -> VersionChange:
    edit = _StackFile(root, stack)
    release, service = edit.current.release, edit.current.service
    if release.strategy == "blue-green" and release.blue_green is not None:
        active = release.blue_green.active_color
        active_version = getattr(release.blue_green, active)
        if active_version.image_tag == tag:
            return VersionChange(stack, f"release.blueGreen.{active}", tag, tag)
        idle = _other_colour(active)
        settings = edit.block(f"{NAMESPACE}:release", "blueGreen")
        settings[idle] = _flow({"imageTag": _quoted(tag), "modelVersion": _quoted(active_version.model_version)})
        settings["activeColor"] = idle
        edit.save()
        return VersionChange(stack, f"release.blueGreen.{idle} (now active)", active_version.image_tag, tag)
    edit.block(f"{NAMESPACE}:service")["imageTag"] = _quoted(tag)
    edit.save()
    return VersionChange(stack, "service.imageTag", service.image_tag, tag)


def _other_colour(colour: str) -> str:
    return "green" if colour == "blue" else "blue"


def _quoted(value: str) -> DoubleQuotedScalarString:
    """Versions are written quoted: unquoted, YAML reads `1.10` as the number 1.1."""
    quoted: DoubleQuotedScalarString = DoubleQuotedScalarString(value)
    return quoted


def _flow(values: dict[str, Any]) -> CommentedMap:
    mapping = CommentedMap(values)
    mapping.fa.set_flow_style()
    return mapping


def _validate(stack: str, text: str, secret_keys: list[str]) -> None:
    """The edited file must still parse and validate; nothing is written otherwise."""
    document = YAML(typ="safe").load(text)
    config = {key: value for key, value in document["config"].items() if key not in secret_keys}
    try:
        parse_stack_config(stack, config)
    except StackConfigError as error:
        raise StackConfigError(f"the new model version would make an invalid stack file: {error}") from None
