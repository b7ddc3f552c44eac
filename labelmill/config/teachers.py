"""Teacher configs: one class per kind on a shared base, joined in a union discriminated by `kind`.

Each kind carries only the fields it uses, so a field of another kind is an error that names
the kinds it belongs to (see :func:`labelmill.config.loader.format_validation_error`):

* :class:`VllmTeacherConfig` (``vllm``): in-process vLLM engines on a Ray actor pool.
* :class:`OpenAITeacherConfig` (``openai``): an OpenAI-compatible HTTP endpoint.
* :class:`EmbeddingTeacherKindConfig` (``embedding``): zero-shot label probabilities from a
  sentence encoder.
* :class:`RulesTeacherConfig` (``rules``, :mod:`labelmill.config.rules`): regular-expression
  labeling functions.

The two LLM kinds share :class:`LLMTeacherConfig` (prompt, mode, context, prices). Pipelines pick
the implementation from the config's class (``kind``), as Ray's ``ray.data.llm`` picks a
processor from its config type.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from labelmill.config.base import StrictModel, TeacherBase
from labelmill.config.rules import RulesTeacherConfig


class FewShotExample(StrictModel):
    """A worked example shown to a teacher before the document."""

    text: str = Field(min_length=1, description="Example document text.")
    labels: list[str] = Field(description="The example's labels (names from the taxonomy).")


class PromptConfig(StrictModel):
    """How a teacher is asked; any change here changes the prompt hash."""

    instructions: str = Field(
        default=(
            "You label documents with a closed set of labels. A label applies only if the "
            "document clearly supports it. Several labels may apply, or none."
        ),
        description="System instructions, placed first so that they are a shared cached prefix.",
    )
    few_shot: list[FewShotExample] = Field(
        default_factory=list, description="Optional worked examples shown before the document."
    )
    set_question: str = Field(
        default="Which labels apply to this document? Answer with a JSON array of label names.",
        description="Question asked after the document in `set` mode.",
    )
    score_question: str = Field(
        default='Does the label "{label}" apply to this document? Answer yes or no.',
        description="Question asked after the document in `score` mode; {label} and "
        "{description} are filled in per label.",
    )


class EmbeddingTeacherConfig(StrictModel):
    """Settings of an `embedding` teacher: zero-shot label scores from a sentence encoder."""

    max_length: int = Field(
        default=256, ge=8, description="Encoder input cap in tokens; longer documents are cut."
    )
    calibration: Literal["auto", "platt", "prior"] = Field(
        default="auto",
        description="How cosine scores become probabilities: `platt` fits a per-label logistic "
        "curve on the gold seed (see `gold.seed_fraction`); `prior` uses the prior-matching rule "
        "(per-label z-score over the corpus, P = 0.5 where the top `prior_rate` share begins); "
        "`auto` is `platt` when gold seed documents exist, else `prior`.",
    )
    prior_rate: float = Field(
        default=0.16,
        gt=0.0,
        lt=1.0,
        description="`prior` calibration: expected share of documents carrying a label.",
    )
    prior_slope: float = Field(
        default=2.0,
        gt=0.0,
        description="`prior` calibration: logistic slope per standard deviation of the score.",
    )
    label_text: Literal["description", "name_and_description"] = Field(
        default="description",
        description="What is embedded for each label: its description alone, or "
        "'name: description' (the description alone ranked better on the debtags bench with "
        "all-MiniLM-L6-v2: mean ROC-AUC 0.820 vs 0.813, see bench/embedding_teacher.py).",
    )


_MODEL = (
    "Model path or bundled model name (see `labelmill models list`), or for `openai` the "
    "served model name."
)


class LLMTeacherConfig(TeacherBase):
    """Fields shared by the LLM kinds (`vllm`, `openai`): prompt, answer mode, context, prices."""

    model: str = Field(description=_MODEL)
    tokenizer: str | None = Field(
        default=None,
        description="Local tokenizer path used for truncation (and yes/no token ids for `vllm`); "
        "defaults to `model` for `vllm`; for `openai` without one, text is cut by characters.",
    )
    mode: Literal["set", "score"] = Field(
        default="set",
        description="`set`: one grammar-constrained JSON array of labels per document; `score`: "
        "one yes/no question per label with logprobs, giving P(label).",
    )
    prompt: PromptConfig = Field(default_factory=PromptConfig, description="Prompt settings.")
    max_model_len: int = Field(
        default=2048, ge=256, description="Context length; longer documents are truncated."
    )
    max_output_tokens: int = Field(
        default=128, ge=8, description="`set` mode: output token cap (a longer answer is an error)."
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="Sampling temperature.")
    concurrency: int = Field(
        default=1, ge=1, description="Engine replicas (actors) or HTTP workers."
    )
    price_per_1k_input: float = Field(default=0.0, ge=0, description="Money per 1k prompt tokens.")
    price_per_1k_output: float = Field(default=0.0, ge=0, description="Money per 1k output tokens.")

    @property
    def vote_mode(self) -> str:
        """The ``mode`` of this teacher's vote rows: its answer mode."""
        return self.mode

    def cost(self, prompt_tokens: int, output_tokens: int) -> float:
        """Money for the given token counts at this teacher's prices."""
        return (
            prompt_tokens * self.price_per_1k_input + output_tokens * self.price_per_1k_output
        ) / 1000


class VllmTeacherConfig(LLMTeacherConfig):
    """A `vllm` teacher: in-process vLLM engines, one per Ray actor."""

    kind: Literal["vllm"] = Field(description="In-process vLLM engines on a Ray actor pool.")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra vLLM engine arguments (e.g. dtype, gpu_memory_utilization).",
    )
    accelerator: Literal["cpu", "gpu"] = Field(
        default="gpu", description="Run each engine replica on a GPU or on CPU."
    )
    cpus_per_replica: float = Field(
        default=1.0, gt=0, description="CPUs reserved per engine replica when accelerator=cpu."
    )
    cpu_kvcache_gb: int = Field(
        default=1, ge=1, description="accelerator=cpu: KV cache size (VLLM_CPU_KVCACHE_SPACE)."
    )


class OpenAITeacherConfig(LLMTeacherConfig):
    """An `openai` teacher: an OpenAI-compatible HTTP endpoint (e.g. `vllm serve`)."""

    kind: Literal["openai"] = Field(description="An OpenAI-compatible HTTP endpoint.")
    base_url: str = Field(description="Base URL of the endpoint, e.g. http://host:8000/v1.")
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the API key (null: no key)."
    )
    max_retries: int = Field(default=3, ge=0, description="Retries per request.")
    retry_base_wait_s: float = Field(
        default=1.0, gt=0, description="First backoff wait, doubled per retry."
    )
    qps: float | None = Field(default=None, gt=0, description="Request rate cap per worker.")

    @field_validator("base_url")
    @classmethod
    def _base_url_set(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("kind 'openai' needs a non-empty base_url")
        return value


class EmbeddingTeacherKindConfig(TeacherBase):
    """An `embedding` teacher: cosine similarity of each document to each label description."""

    kind: Literal["embedding"] = Field(
        description="Cosine similarity of the document to each label description under a "
        "sentence encoder, calibrated to probabilities."
    )
    model: str = Field(description=_MODEL)
    embedding: EmbeddingTeacherConfig = Field(
        default_factory=EmbeddingTeacherConfig,
        description="Encoder input length and score calibration.",
    )
    accelerator: Literal["cpu", "gpu"] = Field(
        default="gpu", description="Run each encoder replica on a GPU or on CPU."
    )
    concurrency: int = Field(default=1, ge=1, description="Encoder replicas (actors).")
    cpus_per_replica: float = Field(
        default=1.0, gt=0, description="CPUs reserved (and torch threads) per encoder replica."
    )

    @property
    def vote_mode(self) -> str:
        """Embedding votes are probabilities: mode ``embedding``."""
        return "embedding"


TeacherConfig = Annotated[
    VllmTeacherConfig | OpenAITeacherConfig | EmbeddingTeacherKindConfig | RulesTeacherConfig,
    Field(discriminator="kind"),
]
LLM_KINDS = ("vllm", "openai")
TEACHER_CLASSES: dict[str, type[TeacherBase]] = {
    "vllm": VllmTeacherConfig,
    "openai": OpenAITeacherConfig,
    "embedding": EmbeddingTeacherKindConfig,
    "rules": RulesTeacherConfig,
}


def kinds_with_field(field: str) -> list[str]:
    """The teacher kinds that have ``field`` (empty: no kind has it)."""
    return [kind for kind, cls in TEACHER_CLASSES.items() if field in cls.model_fields]
