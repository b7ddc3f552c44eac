"""Stage settings: the Ray cluster, aggregation, the student, evaluation and batch prediction."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from labelmill.config.base import StrictModel


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
        "number of CPUs of the Ray cluster, or one per 250,000 corpus documents if more).",
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
        default=2,
        ge=0,
        description="Fine-tuning epochs to run at least, after the linear probe (more on small "
        "splits, see `min_steps`; early stopping may end sooner). 0: the probe alone (needs "
        "`linear_probe`), the cheapest student on a CPU.",
    )
    min_steps: int = Field(
        default=0,
        ge=0,
        description="Optimizer steps to reach at least: small splits get more epochs "
        "(up to `max_epochs`). 0 by default, since the linear probe already fits the head; "
        "without the probe a few hundred rows give too few steps for it.",
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
    linear_probe: bool = Field(
        default=True,
        description="Before fine-tuning, fit the head alone on the frozen encoder's mean-pooled "
        "features (full-batch L-BFGS; LP-FT, Kumar et al. 2022). The probe is scored and "
        "checkpointed as epoch 0, so fine-tuning is kept only where it lowers the dev loss.",
    )
    probe_l2: float = Field(
        default=1e-4,
        ge=0.0,
        description="L2 penalty on the probe's head weights (times the sum of their squares).",
    )
    learning_rate: float = Field(
        default=3e-5, gt=0.0, description="AdamW learning rate of the pretrained encoder."
    )
    head_learning_rate: float = Field(
        default=1e-3,
        gt=0.0,
        description="AdamW learning rate of the classification head while fine-tuning (it "
        "starts from the linear probe, so it needs no larger rate than this).",
    )
    weight_decay: float = Field(default=0.01, ge=0.0, description="AdamW weight decay.")
    loss: Literal["bce", "asymmetric"] = Field(
        default="bce", description="Soft-target BCE, or asymmetric loss (Ridnik et al. 2021)."
    )
    asl_gamma_pos: float = Field(default=0.0, ge=0.0, description="Asymmetric loss gamma+.")
    asl_gamma_neg: float = Field(default=4.0, ge=0.0, description="Asymmetric loss gamma-.")
    asl_clip: float = Field(default=0.05, ge=0.0, lt=1.0, description="Asymmetric loss clip.")
    confidence_weighting: bool = Field(
        default=False,
        description="Weight each training row by the aggregate's confidence (mean |2p - 1| over "
        "labels, floored at `min_row_weight`). Off by default: it weighs rows by their "
        "confident negatives, which is what a rare label's row is made of (measured on the "
        "taxonomy sweep: no gain).",
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

    @model_validator(mode="after")
    def _something_trains(self) -> StudentConfig:
        if self.epochs == 0 and not self.linear_probe:
            raise ValueError(
                "student.epochs is 0 and student.linear_probe is false: nothing would train "
                "(set epochs >= 1 or linear_probe: true)"
            )
        return self


class EvaluateConfig(StrictModel):
    """Scoring teachers, aggregate and student against gold (`labelmill evaluate`)."""

    n_bins: int = Field(default=10, ge=2, description="Bins of the calibration error / diagram.")
    include_student: bool = Field(
        default=True, description="Score the exported student too (when it exists)."
    )
    seed_baseline: bool = Field(
        default=True,
        description="Also train and score `seed-only` (kind `baseline`): a logistic regression "
        "per label on the student backbone's mean-pooled embeddings of the gold seed alone, "
        "thresholds tuned out of fold on the seed. Needs gold.seed_fraction > 0; the yardstick "
        "the loop must beat.",
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
