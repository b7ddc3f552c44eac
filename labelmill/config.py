"""The one validated configuration tree of a labelmill job.

A job is described by one YAML file, loaded once at the entry point with :func:`load_config`
(optionally with ``--set key=value`` overrides) and validated into :class:`LabelmillConfig`.
Sub-configs are passed down as values; nothing else in labelmill reads configuration.
Every model forbids unknown keys, so a typo fails with the field's dotted path in the message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from labelmill.errors import ConfigError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+\-/]*$")


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_Model = TypeVar("_Model", bound=StrictModel)


class CorpusConfig(StrictModel):
    """Where the unlabeled documents are and how to read them."""

    uri: str = Field(
        description="fsspec URI of a file or directory (local path, memory://, s3://, gs://, ...)."
    )
    format: Literal["parquet", "jsonl", "csv"] | None = Field(
        default=None, description="File format; inferred from the URI's extension when omitted."
    )
    id_column: str | None = Field(
        default="id",
        description="Column holding a stable document id; null (or a missing value) means the id "
        "is a content hash of the text.",
    )
    text_column: str = Field(default="text", description="Column holding the document text.")
    gold_column: str | None = Field(
        default=None, description="Optional column with gold labels (a list of label names)."
    )
    limit: int | None = Field(
        default=None, gt=0, description="Read at most this many documents (for trials)."
    )

    @model_validator(mode="after")
    def _format_known(self) -> CorpusConfig:
        if self.format is None and infer_format(self.uri) is None:
            raise ValueError(
                f"cannot infer the corpus format from uri {self.uri!r}: set corpus.format to "
                "parquet, jsonl or csv"
            )
        return self

    @property
    def resolved_format(self) -> str:
        """The configured format, or the one inferred from the URI."""
        return self.format or infer_format(self.uri) or ""


def infer_format(uri: str) -> str | None:
    """Map a URI's extension to a corpus format; ``None`` when it has no known extension."""
    lowered = uri.lower().rstrip("/")
    for suffix, fmt in ((".parquet", "parquet"), (".jsonl", "jsonl"), (".json", "jsonl")):
        if lowered.endswith(suffix):
            return fmt
    if lowered.endswith(".csv"):
        return "csv"
    return None


class LabelConfig(StrictModel):
    """One label of the closed taxonomy."""

    name: str = Field(description="Label name as it appears in outputs, e.g. 'use::editing'.")
    description: str = Field(
        min_length=1, description="One-line meaning of the label, shown to teachers."
    )

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not _NAME_RE.match(value):
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


class TeacherConfig(StrictModel):
    """One teacher: an LLM (in-process vLLM or an OpenAI-compatible endpoint) or an encoder."""

    name: str = Field(description="Unique teacher name used in outputs and lineage.")
    kind: Literal["vllm", "openai", "embedding"] = Field(
        description="`vllm`: in-process vLLM engines on a Ray actor pool; `openai`: an "
        "OpenAI-compatible HTTP endpoint (e.g. `vllm serve`); `embedding`: cosine similarity "
        "of the document to each label description under a sentence encoder (probabilities)."
    )
    model: str = Field(
        description="Model path or bundled model name for `vllm` / `embedding` (see `labelmill "
        "models list`), or the served model name for `openai`."
    )
    tokenizer: str | None = Field(
        default=None,
        description="Local tokenizer path used for truncation (and yes/no token ids for `vllm`); "
        "defaults to `model` for `vllm`; for `openai` without one, text is cut by characters.",
    )
    base_url: str | None = Field(
        default=None,
        description="`openai` only: base URL of the endpoint, e.g. http://host:8000/v1.",
    )
    api_key_env: str | None = Field(
        default=None, description="`openai` only: environment variable holding the API key."
    )
    mode: Literal["set", "score"] = Field(
        default="set",
        description="`set`: one grammar-constrained JSON array of labels per document; `score`: "
        "one yes/no question per label with logprobs, giving P(label). Ignored by `embedding` "
        "teachers, which always give probabilities.",
    )
    embedding: EmbeddingTeacherConfig = Field(
        default_factory=EmbeddingTeacherConfig,
        description="`embedding` only: encoder input length and score calibration.",
    )
    prompt: PromptConfig = Field(default_factory=PromptConfig, description="Prompt settings.")
    max_model_len: int = Field(
        default=2048, ge=256, description="Context length; longer documents are truncated."
    )
    max_output_tokens: int = Field(
        default=128, ge=8, description="`set` mode: output token cap (a longer answer is an error)."
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="Sampling temperature.")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra vLLM engine arguments (e.g. dtype, gpu_memory_utilization).",
    )
    accelerator: Literal["cpu", "gpu"] = Field(
        default="gpu", description="Run each engine replica on a GPU or on CPU."
    )
    concurrency: int = Field(
        default=1, ge=1, description="Engine replicas (actors) or HTTP workers."
    )
    batch_size: int = Field(default=16, ge=1, description="Rows per batch sent to a replica.")
    cpus_per_replica: float = Field(
        default=1.0, gt=0, description="CPUs reserved per engine replica when accelerator=cpu."
    )
    cpu_kvcache_gb: int = Field(
        default=1, ge=1, description="accelerator=cpu: KV cache size (VLLM_CPU_KVCACHE_SPACE)."
    )
    max_retries: int = Field(default=3, ge=0, description="`openai` only: retries per request.")
    retry_base_wait_s: float = Field(
        default=1.0, gt=0, description="`openai` only: first backoff wait, doubled per retry."
    )
    qps: float | None = Field(
        default=None, gt=0, description="`openai` only: request rate cap per worker."
    )
    price_per_1k_input: float = Field(default=0.0, ge=0, description="Money per 1k prompt tokens.")
    price_per_1k_output: float = Field(default=0.0, ge=0, description="Money per 1k output tokens.")

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"teacher name {value!r} must be a simple identifier")
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> TeacherConfig:
        if self.kind == "openai" and not self.base_url:
            raise ValueError(f"teacher {self.name!r}: kind 'openai' needs base_url")
        if self.kind in ("vllm", "embedding") and (self.base_url or self.api_key_env):
            raise ValueError(
                f"teacher {self.name!r}: base_url/api_key_env are for kind 'openai', "
                f"got kind {self.kind!r}"
            )
        return self


class RayConfig(StrictModel):
    """Which Ray cluster to run on."""

    address: str | None = Field(
        default=None,
        description="Ray address ('auto', 'ray://host:10001'); null starts an embedded local Ray.",
    )
    num_cpus: int | None = Field(
        default=None,
        ge=1,
        description="Logical CPUs of the embedded local Ray (null: max(cores, 4): engine replicas "
        "hold whole CPUs and some Ray Data internal tasks ask for one each, so a 2-core machine "
        "needs headroom to avoid a scheduling deadlock).",
    )
    object_store_memory_gb: float | None = Field(
        default=None, gt=0, description="Object store size of the embedded local Ray."
    )
    light_stage_cpus: float = Field(
        default=0.25,
        gt=0,
        le=16,
        description="CPUs reserved by each light task (reading, prompt building, parsing, "
        "writing). Kept fractional so they run beside engine replicas that hold whole CPUs.",
    )


class GoldConfig(StrictModel):
    """Where gold labels come from and which of them later stages may learn from."""

    uri: str | None = Field(
        default=None,
        description="Optional separate gold file (fsspec URI, parquet/jsonl/csv) with an id "
        "column and a list-of-label-names column; otherwise `corpus.gold_column` is used.",
    )
    id_column: str = Field(default="id", description="Id column of the gold file.")
    labels_column: str = Field(default="labels", description="Labels column of the gold file.")
    seed_fraction: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Share of gold documents (chosen by a hash of the id, so every stage agrees) "
        "that is a *seed*: it may anchor aggregation, calibrate embedding teachers and tune "
        "student thresholds. Seed documents are never evaluated on; the rest of the gold is "
        "held out for `labelmill evaluate`.",
    )
    seed_salt: str = Field(
        default="gold-seed",
        min_length=1,
        description="Salt of the id hash that picks the seed: another salt draws another seed "
        "of the same size (to measure how much a result depends on which documents are seed).",
    )


class AggregateConfig(StrictModel):
    """How teacher votes become one soft label set per document (`labelmill aggregate`)."""

    method: Literal["majority", "weighted", "dawid_skene"] = Field(
        default="dawid_skene",
        description="`majority`: share of teachers voting yes; `weighted`: log-odds vote "
        "weighted by each teacher's per-label accuracy (from `teacher_weights`, else estimated "
        "on the gold seed, else against the majority); `dawid_skene`: per-label binary "
        "Dawid-Skene, hard-vote teachers with a sensitivity and specificity, probability "
        "teachers with a logit-linear score model (labelmill/aggregation/dawid_skene.py).",
    )
    teachers: list[str] | None = Field(
        default=None,
        description="Names of the teachers whose votes (under <output_uri>/votes/) are aggregated; "
        "null: every configured teacher. Votes of teachers no longer configured (or written by "
        "the benchmark's simulated teachers) can be named here.",
    )
    threshold: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="A fixed probability at or above which a label is set, for every label and "
        "(in `evaluate`) every system. null: one threshold per label, tuned for F1 on the gold "
        "seed where the label has enough seed positives, else the expected-F1 rule (see "
        "labelmill/aggregation/thresholds.py).",
    )
    max_iter: int = Field(default=50, ge=1, description="`dawid_skene`: EM iterations at most.")
    tol: float = Field(
        default=1e-4, ge=0.0, description="`dawid_skene`: stop when no rate moves more than this."
    )
    smoothing: float = Field(
        default=1.0,
        ge=0.0,
        description="`dawid_skene`: pseudo-evidence on every estimate: hard-vote rates are "
        "shrunk towards the uninformative teacher with 2x this many votes, the score model "
        "towards the calibrated teacher with this ridge strength.",
    )
    soft_votes: Literal["score", "mixture", "fractional"] = Field(
        default="score",
        description="`dawid_skene`: how a teacher's probability enters the likelihood: `score` "
        "reads probability teachers (score and embedding modes) through the score model; "
        "`mixture` / `fractional` are the older latent-vote models, kept for comparison "
        "(see labelmill/aggregation/dawid_skene.py).",
    )
    use_gold_seed: bool = Field(
        default=True,
        description="Anchor the estimates on the gold seed documents (when there are any).",
    )
    gold_anchor: Literal["rates", "clamp"] = Field(
        default="rates",
        description="`dawid_skene` with a gold seed: `rates` estimates every teacher's rates "
        "on the seed documents alone and labels the rest with one E-step (robust to teachers "
        "that err together, which EM takes for the truth); `clamp` runs EM over all documents "
        "with the seed's posteriors fixed to gold.",
    )
    teacher_weights: dict[str, float] | None = Field(
        default=None,
        description="`weighted`: fixed accuracy in (0, 1) per teacher name (overrides estimates).",
    )
    num_partitions: int | None = Field(
        default=None,
        ge=1,
        description="Hash partitions of the shuffle that groups votes by document id (null: the "
        "number of CPUs of the Ray cluster).",
    )


class StudentConfig(StrictModel):
    """The distilled student classifier and its training (`labelmill distill`)."""

    backbone: str = Field(
        default="all-minilm-l6-v2",
        description="Encoder: a bundled model name or a local Hugging Face encoder directory.",
    )
    max_length: int = Field(default=128, ge=8, description="Tokens per document (cut beyond).")
    batch_size: int = Field(default=32, ge=1, description="Training batch size per worker.")
    epochs: int = Field(
        default=5,
        ge=1,
        description="Epochs to run at least (more on small splits, see `min_steps`; early "
        "stopping may end sooner).",
    )
    min_steps: int = Field(
        default=150,
        ge=0,
        description="Optimizer steps to reach at least: small splits get more epochs "
        "(up to `max_epochs`), since a few hundred rows give too few steps per epoch.",
    )
    max_epochs: int = Field(
        default=20, ge=1, description="Cap on the epochs that `min_steps` may add."
    )
    warmup_fraction: float = Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description="Share of the optimizer steps with a linear learning-rate warm-up; the "
        "rate then decays linearly to 0 at the last step.",
    )
    learning_rate: float = Field(
        default=1e-4, gt=0.0, description="AdamW learning rate of the pretrained encoder."
    )
    head_learning_rate: float = Field(
        default=3e-3,
        gt=0.0,
        description="AdamW learning rate of the pooler and the classification head. Sentence "
        "encoders such as all-MiniLM-L6-v2 are trained for mean pooling, so their [CLS] pooler "
        "features barely vary between documents; at the encoder's rate the head learns only the "
        "label priors (measured: test ROC-AUC 0.57 after 2 epochs at 1e-4, 0.94 at 3e-3).",
    )
    weight_decay: float = Field(default=0.01, ge=0.0, description="AdamW weight decay.")
    loss: Literal["bce", "asymmetric"] = Field(
        default="bce", description="Soft-target BCE, or asymmetric loss (Ridnik et al. 2021)."
    )
    asl_gamma_pos: float = Field(default=0.0, ge=0.0, description="Asymmetric loss gamma+.")
    asl_gamma_neg: float = Field(default=4.0, ge=0.0, description="Asymmetric loss gamma-.")
    asl_clip: float = Field(default=0.05, ge=0.0, lt=1.0, description="Asymmetric loss clip.")
    confidence_weighting: bool = Field(
        default=True,
        description="Weight each training row by the aggregate's confidence (mean |2p - 1| over "
        "labels, floored at `min_row_weight`).",
    )
    min_row_weight: float = Field(
        default=0.1, gt=0.0, le=1.0, description="Floor of a row's confidence weight."
    )
    dev_fraction: float = Field(
        default=0.1,
        gt=0.0,
        lt=1.0,
        description="Share of training documents (by id hash) held out for early stopping and "
        "threshold tuning (gold-seed documents in it tune thresholds instead of training).",
    )
    patience: int = Field(
        default=2, ge=1, description="Stop after this many epochs without a better dev loss."
    )
    seed: int = Field(default=0, description="Seed of the head initialisation and shuffling.")
    num_workers: int = Field(default=1, ge=1, description="Ray Train workers (DDP).")
    use_gpu: bool = Field(default=False, description="Train each worker on a GPU.")
    cpus_per_worker: float = Field(default=1.0, gt=0, description="CPUs reserved per worker.")
    exclude_eval_gold: bool = Field(
        default=True,
        description="Leave the held-out gold documents (gold minus seed) out of training, so "
        "the student's evaluation is on documents it never saw.",
    )
    output_dir: str | None = Field(
        default=None,
        description="Directory of the exported model, local path or fsspec URI "
        "(null: <output_uri>/student).",
    )
    fast_path: bool = Field(
        default=True,
        description="At export, measure the CPU runtimes (torch int8, ONNX Runtime float32 / "
        "int8) on the dev rows and record the fastest within the accuracy guard as the "
        "student's runtime (labelmill/student/fast_path.py); false: plain torch float32.",
    )


class EvaluateConfig(StrictModel):
    """Scoring teachers, aggregate and student against gold (`labelmill evaluate`)."""

    n_bins: int = Field(default=10, ge=2, description="Bins of the calibration error / diagram.")
    include_student: bool = Field(
        default=True, description="Score the exported student too (when it exists)."
    )


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
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="The hard budget.")
    seed: int = Field(default=0, description="Seed of the random strategy.")
    retrain: bool = Field(
        default=True, description="Re-aggregate, retrain and evaluate the student every round."
    )


class PredictConfig(StrictModel):
    """Batch prediction with the exported student (`labelmill predict`)."""

    model_dir: str | None = Field(
        default=None,
        description="Exported student directory, local path or fsspec URI (null: the "
        "student's output_dir).",
    )
    output_uri: str | None = Field(
        default=None, description="Where prediction Parquet goes (null: <output_uri>/predictions)."
    )
    batch_size: int = Field(default=64, ge=1, description="Documents per batch per replica.")
    concurrency: int = Field(default=1, ge=1, description="Student replicas (Ray actors).")
    use_gpu: bool = Field(default=False, description="Put each replica on a GPU.")
    cpus_per_replica: float = Field(default=1.0, gt=0, description="CPUs reserved per replica.")


class LabelmillConfig(StrictModel):
    """The root of a labelmill job configuration."""

    corpus: CorpusConfig = Field(description="The input documents.")
    taxonomy: TaxonomyConfig = Field(description="The closed label set.")
    teachers: list[TeacherConfig] = Field(min_length=1, description="Teachers to run.")
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

    @model_validator(mode="after")
    def _cross_checks(self) -> LabelmillConfig:
        names = [t.name for t in self.teachers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate teacher names: {duplicates}")
        known = {label.name for label in self.taxonomy.labels}
        for teacher in self.teachers:
            for example in teacher.prompt.few_shot:
                unknown = sorted(set(example.labels) - known)
                if unknown:
                    raise ValueError(
                        f"teacher {teacher.name!r}: few-shot labels {unknown} are not in the "
                        "taxonomy"
                    )
        unknown = sorted(set(self.campaign.teachers) - set(names))
        if unknown:
            raise ValueError(f"campaign.teachers {unknown} are not configured teachers {names}")
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


def format_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming the dotted field path."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(root)"
        lines.append(f"  {where}: {item['msg']} (got {item.get('input')!r})")
    return "invalid configuration:\n" + "\n".join(lines)


def validate_tree(model: type[_Model], tree: Any, overrides: list[str] | None, what: str) -> _Model:
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
