"""Budgeted relabeling campaigns."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from labelmill.config.base import StrictModel


class TeacherBudgetConfig(StrictModel):
    """Caps of one teacher inside a campaign budget (null: no cap of that kind)."""

    max_tokens: int | None = Field(default=None, ge=0, description="Prompt + output tokens.")
    max_cost: float | None = Field(default=None, ge=0, description="Money at the prices.")


class BudgetConfig(StrictModel):
    """The hard budget of a relabeling campaign (null: no cap of that kind)."""

    max_tokens: int | None = Field(
        default=None, ge=0, description="Total prompt + output tokens over every round."
    )
    max_cost: float | None = Field(
        default=None, ge=0, description="Total money (teachers' price_per_1k_* x tokens)."
    )
    per_teacher: dict[str, TeacherBudgetConfig] = Field(
        default_factory=dict, description="Caps per campaign teacher name."
    )


class CampaignConfig(StrictModel):
    """Cost-bounded relabeling rounds (`labelmill campaign`, and the tail of `labelmill run`)."""

    teachers: list[str] = Field(
        default_factory=list,
        description="Names of configured teachers that relabel the selected documents (e.g. a "
        "stronger, pricier one than the bulk pass); empty: no campaign.",
    )
    rounds: int = Field(default=2, ge=1, description="Rounds of select -> label -> retrain.")
    docs_per_round: int | None = Field(
        default=None, ge=1, description="Documents selected per round (null: fraction_per_round)."
    )
    fraction_per_round: float = Field(
        default=0.05, gt=0.0, le=1.0, description="Share of the corpus selected per round."
    )
    strategy: Literal["targeted", "random"] = Field(
        default="targeted",
        description="`targeted`: priority from student uncertainty, teacher disagreement and "
        "label-issue scores with a diversity term (labelmill/selection.py); `random`: the "
        "baseline.",
    )
    weights: tuple[float, float, float] = Field(
        default=(1.0, 1.0, 1.0),
        description="Weights of (uncertainty, disagreement, label issue) in the priority.",
    )
    diversity: float = Field(
        default=0.3, ge=0.0, description="Penalty on cosine similarity to documents already picked."
    )
    oof_folds: int = Field(
        default=5, ge=2, description="Folds of the out-of-fold model behind label-issue scores."
    )
    oof_sample: int = Field(
        default=20_000,
        ge=2,
        description="Most documents (an id-hash sample) the label-issue fold models are fit on, "
        "on the driver; every document is then scored by them on the cluster.",
    )
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="The hard budget.")
    seed: int = Field(default=0, description="Seed of the random strategy.")
    retrain: bool = Field(
        default=True, description="Re-aggregate, retrain and evaluate the student every round."
    )
