"""A new model version into stack files: `mlstack model-version VERSION` sets `service.modelVersion`.

The change is a reviewed, committed pull request (retrain.yml opens one); deploying that commit updates the
stack's Rollout, which releases the new model the stack's way: prod as a canary whose steps check its prediction
drift, staging beside the active version behind the preview Service. Image tags are not in stack files at all: a
deploy runs the image built from the commit being deployed (infra/release_state.py).

Files are edited in place with their comments and key order kept, then validated like a preview would; an edit
that would make the file invalid writes nothing.
"""

from dataclasses import dataclass
from io import StringIO
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from infra.config import StackConfigError
from infra.config.load import NAMESPACE, parse_stack_config
from infra.config.models import StackConfig
from infra.preview.stack_file import read_stack_file, stacks_dir


@dataclass(frozen=True)
class VersionChange:
    stack: str
    where: str
    before: str
    after: str
    traffic: str = ""  # what deploying the change does to live traffic, for the person who makes it

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


def set_model_version(root: Path, stack: str, version: str) -> VersionChange:
    """`service.modelVersion`, whatever the strategy: the stack's Rollout releases the change its own way."""
    edit = _StackFile(root, stack)
    before = edit.current.service.model_version
    edit.block(f"{NAMESPACE}:service")["modelVersion"] = _quoted(version)
    edit.save()
    return VersionChange(stack, "service.modelVersion", before, version, traffic_change(edit.current, before, version))


def traffic_change(config: StackConfig, before: str, after: str) -> str:
    """What a deploy of the new version does to live traffic, in the stack's own release settings."""
    if config.compute.mode == "ec2":
        return (
            f"on deploy the host is replaced new-one-first (instance refresh): all traffic moves from {before} to "
            f"{after} once the new host answers ready"
        )
    release = config.release
    if release.strategy == "canary" and release.canary is not None:
        steps = " → ".join(
            f"{step.weight}%" + (f" (hold {step.pause})" if step.pause else "") for step in release.canary.steps
        )
        last = "" if release.canary.steps[-1].weight == 100 else " → 100%"
        return (
            f"on deploy a canary: {after} takes {steps}{last} of requests, each step gated by analysis; "
            f"a failed analysis sends all traffic back to {before}"
        )
    if release.strategy == "blue-green":
        switch = (
            "switches all traffic at once when the analysis passes"
            if release.blue_green is None or release.blue_green.auto_promotion
            else "switches all traffic at once on `mlstack release promote`"
        )
        return f"on deploy {after} starts beside {before} behind the preview Service (no live traffic), then {switch}"
    return f"on deploy a rolling update: pods move from {before} to {after} a few at a time, all serving live traffic"


def _quoted(value: str) -> DoubleQuotedScalarString:
    """Versions are written quoted: unquoted, YAML reads `1.10` as the number 1.1."""
    quoted: DoubleQuotedScalarString = DoubleQuotedScalarString(value)
    return quoted


def _validate(stack: str, text: str, secret_keys: list[str]) -> None:
    """The edited file must still parse and validate; nothing is written otherwise."""
    document = YAML(typ="safe").load(text)
    config = {key: value for key, value in document["config"].items() if key not in secret_keys}
    try:
        parse_stack_config(stack, config)
    except StackConfigError as error:
        raise StackConfigError(f"the new model version would make an invalid stack file: {error}") from None
