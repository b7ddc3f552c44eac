"""The one validated configuration tree of a labelmill job.

A job is described by one YAML file, loaded once at the entry point with :func:`load_config`
(optionally with ``--set key=value`` overrides) and validated into :class:`LabelmillConfig`.
Sub-configs are passed down as values; nothing else in labelmill reads configuration.
Every model forbids unknown keys, so a typo fails with the field's dotted path in the message.

One module per concern: :mod:`.base` (StrictModel, name rules, the teacher base),
:mod:`.corpus` (corpus and gold), :mod:`.taxonomy`, :mod:`.teachers` (the union of teacher
kinds), :mod:`.rules` (the `rules` kind), :mod:`.stages` (ray, aggregate, student, evaluate,
predict), :mod:`.campaign`, :mod:`.root` (LabelmillConfig) and :mod:`.loader`.
"""

from labelmill.config.base import StrictModel, TeacherBase
from labelmill.config.campaign import BudgetConfig, CampaignConfig, TeacherBudgetConfig
from labelmill.config.corpus import CorpusConfig, GoldConfig, infer_format
from labelmill.config.loader import (
    apply_override,
    format_validation_error,
    load_config,
    parse_config,
    read_yaml,
    validate_tree,
)
from labelmill.config.root import LabelmillConfig
from labelmill.config.rules import LabelRuleConfig, RulesTeacherConfig
from labelmill.config.stages import (
    AggregateConfig,
    EvaluateConfig,
    PredictConfig,
    RayConfig,
    StudentConfig,
)
from labelmill.config.taxonomy import LabelConfig, TaxonomyConfig
from labelmill.config.teachers import (
    LLM_KINDS,
    TEACHER_CLASSES,
    EmbeddingTeacherConfig,
    EmbeddingTeacherKindConfig,
    FewShotExample,
    LLMTeacherConfig,
    OpenAITeacherConfig,
    PromptConfig,
    TeacherConfig,
    VllmTeacherConfig,
    kinds_with_field,
)
from labelmill.errors import ConfigError

__all__ = [
    "LLM_KINDS",
    "TEACHER_CLASSES",
    "AggregateConfig",
    "BudgetConfig",
    "CampaignConfig",
    "ConfigError",
    "CorpusConfig",
    "EmbeddingTeacherConfig",
    "EmbeddingTeacherKindConfig",
    "EvaluateConfig",
    "FewShotExample",
    "GoldConfig",
    "LLMTeacherConfig",
    "LabelConfig",
    "LabelRuleConfig",
    "LabelmillConfig",
    "OpenAITeacherConfig",
    "PredictConfig",
    "PromptConfig",
    "RayConfig",
    "RulesTeacherConfig",
    "StrictModel",
    "StudentConfig",
    "TaxonomyConfig",
    "TeacherBase",
    "TeacherBudgetConfig",
    "TeacherConfig",
    "VllmTeacherConfig",
    "apply_override",
    "format_validation_error",
    "infer_format",
    "kinds_with_field",
    "load_config",
    "parse_config",
    "read_yaml",
    "validate_tree",
]
