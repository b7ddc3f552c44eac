"""The `rules` teacher kind: regular-expression labeling functions written in the YAML.

Minimum form (label -> patterns; any match votes the label)::

    - name: keywords
      kind: rules
      rules:
        corn: ['\\bcorn\\b', '\\bmaize\\b']
        grain: ['\\bgrains?\\b', '\\bwheat\\b']

Richer form per label: ``{any: [...], none: [...]}`` (vote when any ``any`` pattern matches and
no ``none`` pattern does). ``abstain_when_no_match: true`` makes a document no rule matches an
abstention instead of an empty-set vote. Patterns are case-insensitive RE2 (see
:mod:`labelmill.rules`); invalid ones fail at load naming ``teachers.<i>.rules.<label>``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from labelmill.config.base import StrictModel, TeacherBase
from labelmill.rules import pattern_error


def _check_patterns(patterns: list[str]) -> list[str]:
    for i, pattern in enumerate(patterns):
        problem = pattern_error(pattern)
        if problem is not None:
            raise ValueError(
                f"pattern {i} {pattern!r} is not a valid regular expression: {problem}"
            )
    return patterns


class LabelRuleConfig(StrictModel):
    """The rule of one label: vote it when any ``any`` pattern matches and no ``none`` does."""

    any: list[str] = Field(
        min_length=1,
        description="Case-insensitive RE2 regular expressions; any match votes the label.",
    )
    none: list[str] = Field(
        default_factory=list,
        description="Exclusions: when one of these matches, the label is not voted.",
    )

    @model_validator(mode="before")
    @classmethod
    def _list_form(cls, value: Any) -> Any:
        # The minimum form `label: [patterns]` is shorthand for `label: {any: [patterns]}`.
        return {"any": value} if isinstance(value, list) else value

    @field_validator("any", "none")
    @classmethod
    def _patterns_ok(cls, value: list[str]) -> list[str]:
        return _check_patterns(value)


class RulesTeacherConfig(TeacherBase):
    """A `rules` teacher: keyword / regular-expression labeling functions (hard `set` votes)."""

    kind: Literal["rules"] = Field(
        description="Regular-expression labeling functions; votes are label sets (mode `set`)."
    )
    rules: dict[str, LabelRuleConfig] = Field(
        min_length=1,
        description="Label name (from the taxonomy) -> a list of patterns, or {any: [...], "
        "none: [...]}. Labels without a rule are never voted.",
    )
    abstain_when_no_match: bool = Field(
        default=False,
        description="true: a document no rule matches abstains (no information on any label); "
        "false: it votes the empty set (no label applies).",
    )
    batch_size: int = Field(
        default=4096,
        ge=1,
        description="Documents per matcher batch and per vote part (the resume granularity).",
    )

    def canonical(self) -> dict[str, Any]:
        """The rule set as plain JSON values: what its lineage hash covers."""
        return {
            "rules": {label: rule.model_dump(mode="json") for label, rule in self.rules.items()},
            "abstain_when_no_match": self.abstain_when_no_match,
        }

    def compiled_form(self) -> dict[str, tuple[list[str], list[str]]]:
        """label -> (any patterns, none patterns), the input of :func:`compile_rules`."""
        return {label: (rule.any, rule.none) for label, rule in self.rules.items()}
