"""The closed label set."""

from __future__ import annotations

from pydantic import Field, field_validator

from labelmill.config.base import LABEL_NAME_RE, StrictModel


class LabelConfig(StrictModel):
    """One label of the closed taxonomy."""

    name: str = Field(description="Label name as it appears in outputs, e.g. 'use::editing'.")
    description: str = Field(
        min_length=1, description="One-line meaning of the label, shown to teachers."
    )

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not LABEL_NAME_RE.match(value):
            raise ValueError(
                f"label name {value!r} must start with a letter or digit and contain only "
                "letters, digits and _ . : + - /"
            )
        return value


class TaxonomyConfig(StrictModel):
    """The closed label set; its version is a content hash of the labels."""

    labels: list[LabelConfig] = Field(min_length=1, description="The labels, in output order.")

    @field_validator("labels")
    @classmethod
    def _unique(cls, labels: list[LabelConfig]) -> list[LabelConfig]:
        names = [label.name for label in labels]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate label names: {duplicates}")
        return labels
