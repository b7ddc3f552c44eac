"""The base of every config model and the name rules shared by labels and teachers."""

from __future__ import annotations

import re
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Label names may contain '/' (debtags-style facets); teacher names may not: a teacher's votes
# live under votes/<name>/ and ledger keys are split on '/', so `a/b` would be read as `a`'s.
LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+\-/]*$")
TEACHER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+\-]*$")


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Model = TypeVar("Model", bound=StrictModel)


class TeacherBase(StrictModel):
    """Fields and behaviour every teacher kind shares (see :mod:`labelmill.config.teachers`)."""

    name: str = Field(
        description="Unique teacher name used in outputs and lineage: letters, digits and "
        "_ . : + - (no '/', which would nest one teacher's votes inside another's)."
    )
    kind: str = Field(description="The teacher kind; each subclass narrows it to one literal.")
    batch_size: int = Field(default=16, ge=1, description="Rows per batch sent to a replica.")

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not TEACHER_NAME_RE.match(value):
            raise ValueError(
                f"teacher name {value!r} must start with a letter or digit and contain only "
                "letters, digits and _ . : + - (no '/')"
            )
        return value

    @property
    def vote_mode(self) -> str:
        """The ``mode`` column of this teacher's vote rows (``set`` unless a kind overrides)."""
        return "set"

    def cost(self, prompt_tokens: int, output_tokens: int) -> float:
        """Money for the given token counts (0: only priced kinds override this)."""
        return 0.0
