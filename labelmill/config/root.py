"""The root of a job configuration and the checks that span its sections."""

from __future__ import annotations

from pydantic import Field, model_validator

from labelmill.config.base import StrictModel
from labelmill.config.campaign import CampaignConfig
from labelmill.config.corpus import CorpusConfig, GoldConfig
from labelmill.config.rules import RulesTeacherConfig
from labelmill.config.stages import (
    AggregateConfig,
    EvaluateConfig,
    PredictConfig,
    RayConfig,
    StudentConfig,
)
from labelmill.config.taxonomy import TaxonomyConfig
from labelmill.config.teachers import (
    LLM_KINDS,
    EmbeddingTeacherKindConfig,
    LLMTeacherConfig,
    TeacherConfig,
)


class LabelmillConfig(StrictModel):
    """The root of a labelmill job configuration."""

    corpus: CorpusConfig = Field(description="The input documents.")
    taxonomy: TaxonomyConfig = Field(description="The closed label set.")
    teachers: list[TeacherConfig] = Field(
        default_factory=list,
        description="Teachers to run; only `label` (and `run`, `campaign`) need one: stages "
        "over votes already written (aggregate, distill, evaluate, predict) need none.",
    )
    output_uri: str = Field(description="fsspec URI of the run directory for all outputs.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray cluster settings.")
    gold: GoldConfig = Field(default_factory=GoldConfig, description="Gold labels and seed.")
    aggregate: AggregateConfig = Field(
        default_factory=AggregateConfig, description="Vote aggregation."
    )
    student: StudentConfig = Field(
        default_factory=StudentConfig, description="The distilled student."
    )
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="Evaluation.")
    predict: PredictConfig = Field(default_factory=PredictConfig, description="Batch prediction.")
    campaign: CampaignConfig = Field(
        default_factory=CampaignConfig, description="Budgeted relabeling rounds."
    )

    @property
    def has_gold(self) -> bool:
        """Whether gold labels are configured (a gold file or a corpus gold column)."""
        return self.gold.uri is not None or self.corpus.gold_column is not None

    @model_validator(mode="after")
    def _teacher_checks(self) -> LabelmillConfig:
        names = [t.name for t in self.teachers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"teachers: duplicate teacher names {duplicates}")
        known = {label.name for label in self.taxonomy.labels}
        for i, teacher in enumerate(self.teachers):
            if isinstance(teacher, LLMTeacherConfig):
                for j, example in enumerate(teacher.prompt.few_shot):
                    unknown = sorted(set(example.labels) - known)
                    if unknown:
                        raise ValueError(
                            f"teachers.{i}.prompt.few_shot.{j}.labels: {unknown} are not in the "
                            "taxonomy"
                        )
            elif isinstance(teacher, RulesTeacherConfig):
                for label in teacher.rules:
                    if label not in known:
                        raise ValueError(
                            f"teachers.{i}.rules.{label}: label {label!r} is not in the taxonomy"
                        )
            elif isinstance(teacher, EmbeddingTeacherKindConfig):
                seeded = self.has_gold and self.gold.seed_fraction > 0
                if teacher.embedding.calibration == "platt" and not seeded:
                    raise ValueError(
                        f"teachers.{i}.embedding.calibration: 'platt' needs gold seed documents: "
                        "set gold.seed_fraction > 0 and a gold source (gold.uri or "
                        "corpus.gold_column), or use 'auto' / 'prior'"
                    )
        return self

    @model_validator(mode="after")
    def _stage_checks(self) -> LabelmillConfig:
        kinds = {t.name: t.kind for t in self.teachers}
        for i, name in enumerate(self.campaign.teachers):
            if name not in kinds:
                raise ValueError(
                    f"campaign.teachers.{i}: {name!r} is not a configured teacher {sorted(kinds)}"
                )
            if kinds[name] not in LLM_KINDS:
                raise ValueError(
                    f"campaign.teachers.{i}: {name!r} is kind {kinds[name]!r}; a campaign "
                    f"teacher relabels with an LLM and must be kind {' or '.join(LLM_KINDS)}"
                )
        unknown = sorted(set(self.campaign.budget.per_teacher) - set(self.campaign.teachers))
        if unknown:
            raise ValueError(
                f"campaign.budget.per_teacher names {unknown} are not campaign teachers "
                f"{self.campaign.teachers}"
            )
        if any(w < 0 for w in self.campaign.weights) or not any(self.campaign.weights):
            raise ValueError(
                f"campaign.weights must be >= 0 and not all 0, got {self.campaign.weights!r}"
            )
        for name, weight in (self.aggregate.teacher_weights or {}).items():
            if not 0.0 < weight < 1.0:
                raise ValueError(
                    f"aggregate.teacher_weights[{name!r}] must lie strictly in (0, 1), "
                    f"got {weight!r}"
                )
        return self
