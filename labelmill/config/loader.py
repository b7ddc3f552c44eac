"""Loading a config: YAML files, ``--set key=value`` overrides, validation, readable errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from labelmill.config.base import Model
from labelmill.config.root import LabelmillConfig
from labelmill.config.teachers import TEACHER_CLASSES, kinds_with_field
from labelmill.errors import ConfigError


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """Apply one ``dotted.key=value`` override in place; list items are addressed by index.

    The value is parsed as a YAML scalar/flow value, so ``limit=10`` is an int and
    ``teachers.0.mode=score`` a string.
    """
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} is not of the form key=value")
    path, raw_value = assignment.split("=", 1)
    keys = path.strip().split(".")
    if not all(keys):
        raise ConfigError(f"override {assignment!r} has an empty key")
    value = yaml.safe_load(raw_value) if raw_value.strip() else ""
    node: Any = tree
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"override {assignment!r}: no list item {key!r}")
            if last:
                node[int(key)] = value
            else:
                node = node[int(key)]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                node = node.setdefault(key, {})
        else:
            raise ConfigError(f"override {assignment!r}: {'.'.join(keys[:depth])} is a scalar")


def _strip_kind_tags(loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], str | None]:
    """Drop the discriminator tag pydantic puts in a teacher union's error path.

    ``('teachers', 0, 'vllm', 'mode')`` -> ``(('teachers', 0, 'mode'), 'vllm')``: users write
    ``teachers.0.mode``. A tag directly follows a list index or a ``teacher`` field.
    """
    for i in range(1, len(loc)):
        prev = loc[i - 1]
        if loc[i] in TEACHER_CLASSES and (isinstance(prev, int) or prev == "teacher"):
            return loc[:i] + loc[i + 1 :], str(loc[i])
    return loc, None


def _kind_hint(field: Any, kind: str) -> str:
    owners = kinds_with_field(str(field))
    if not owners:
        return ""
    listed = " or ".join(repr(k) for k in owners)
    return f"; {field} is only valid for kind {listed}, this teacher is kind {kind!r}"


def format_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming the dotted field path and the value received.

    A field of another teacher kind says which kinds have it. An error of the whole tree (a
    cross-field check) names its fields in the message and does not repeat the tree.
    """
    lines = []
    for item in error.errors():
        loc, kind = _strip_kind_tags(tuple(item["loc"]))
        where = ".".join(str(part) for part in loc)
        message = item["msg"]
        if item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # The kind itself is missing or unknown: name the field, list the kinds.
            loc, message = (*loc, "kind"), f"must be one of {', '.join(map(repr, TEACHER_CLASSES))}"
            where = ".".join(str(part) for part in loc)
            got = item.get("input", {}).get("kind") if isinstance(item.get("input"), dict) else None
            lines.append(f"  {where}: {message} (got {got!r})")
            continue
        if kind is not None and item["type"] == "extra_forbidden" and loc:
            message += _kind_hint(loc[-1], kind)
        if not where:
            lines.append(f"  {message}")
        else:
            lines.append(f"  {where}: {message} (got {item.get('input')!r})")
    return "invalid configuration:\n" + "\n".join(lines)


def validate_tree(model: type[Model], tree: Any, overrides: list[str] | None, what: str) -> Model:
    """Apply ``key=value`` overrides to a raw YAML tree and validate it into ``model``."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{what} must be a mapping at the top level, got {type(tree).__name__}")
    for assignment in overrides or []:
        apply_override(tree, assignment)
    try:
        return model.model_validate(tree)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error)) from None


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed YAML of a file (None for an empty one); ConfigError if missing or invalid."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file {str(path)!r} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} file {str(path)!r} is not valid YAML: {error}") from None


def parse_config(tree: dict[str, Any], overrides: list[str] | None = None) -> LabelmillConfig:
    """Validate a raw config tree (with overrides applied) into a :class:`LabelmillConfig`."""
    return validate_tree(LabelmillConfig, tree, overrides, "a config")


def load_config(path: str | Path, overrides: list[str] | None = None) -> LabelmillConfig:
    """Load and validate a YAML config file; relative local paths in it stay as written."""
    tree = read_yaml(path, "config")
    return parse_config(tree if tree is not None else {}, overrides)
