"""Pure helpers of student training: which rows train, how much each weighs, when to stop.

Only numpy at import time (the row helpers run in Ray Data tasks); torch is imported by
:func:`loss_function` when it is called.

Nothing here knows about Ray; the distill pipeline (``pipelines/distill.py``) applies these to
Arrow batches on Ray Data workers and inside the Ray Train loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from labelmill._validation import check_probs
from labelmill.aggregation import (
    choose_thresholds,
    prevalence_thresholds,
    threshold_probs,
    threshold_stats,
)
from labelmill.config import StudentConfig
from labelmill.layout import is_dev
from labelmill.metrics import precision_recall_f1

if TYPE_CHECKING:
    import torch

    from labelmill.student.model import LossFn


def row_weights(probs: Any, confidence_weighting: bool, min_row_weight: float) -> np.ndarray:
    """Confidence weight of each training row.

    probs: (N, K) soft targets in [0, 1] -> (N,) float32. With ``confidence_weighting`` a row
    weighs ``max(mean_k |2 p_k - 1|, min_row_weight)`` (a row whose labels sit at 0.5 is pure
    noise, one at 0/1 is certain); without it every row weighs 1.
    """
    if not (isinstance(min_row_weight, int | float) and 0.0 < min_row_weight <= 1.0):
        raise ValueError(f"min_row_weight must lie in (0, 1], got {min_row_weight!r}")
    arr = check_probs(probs)
    if np.isnan(arr).any():
        raise ValueError("probs must not contain NaN (drop all-error rows first)")
    if not confidence_weighting:
        return np.ones(arr.shape[0], dtype=np.float32)
    if arr.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    confidence = np.abs(2.0 * arr - 1.0).mean(axis=1)
    return np.maximum(confidence, min_row_weight).astype(np.float32)


def _usable_probs(value: Any, num_labels: int) -> bool:
    if value is None:
        return False
    values = list(value)
    if len(values) != num_labels:
        raise ValueError(
            f"probs must have {num_labels} values (one per taxonomy label), got {len(values)}; "
            "were the aggregate labels made under another taxonomy?"
        )
    return all(v is not None and math.isfinite(v) and 0.0 <= v <= 1.0 for v in values)


def usable_rows(
    texts: Sequence[str | None],
    probs: Sequence[Sequence[float] | None],
    errors: Sequence[str | None],
    has_gold: Sequence[bool],
    gold_seed: Sequence[bool | None],
    num_labels: int,
    exclude_eval_gold: bool,
) -> np.ndarray:
    """Which aggregate rows the student may learn from -> (N,) bool.

    A row is used when its text is not null, its ``probs`` are K finite values in [0, 1], its
    ``error`` is null and, with ``exclude_eval_gold``, it is not a held-out gold document
    (a row with gold that is not in the gold seed). ``probs`` of another length than K raise
    ``ValueError`` (a taxonomy mismatch, not a bad row).
    """
    columns = {"probs": probs, "errors": errors, "has_gold": has_gold, "gold_seed": gold_seed}
    for name, column in columns.items():
        if len(column) != len(texts):
            raise ValueError(f"{name} has {len(column)} rows, texts has {len(texts)}")
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"num_labels must be an int >= 1, got {num_labels!r}")
    keep = np.zeros(len(texts), dtype=bool)
    for i, text in enumerate(texts):
        held_out = exclude_eval_gold and bool(has_gold[i]) and not bool(gold_seed[i])
        keep[i] = (
            text is not None
            and errors[i] is None
            and not held_out
            and _usable_probs(probs[i], num_labels)
        )
    return keep


def dev_mask(ids: Sequence[str], dev_fraction: float) -> np.ndarray:
    """(N,) bool: which documents form the dev split (by id hash, see ``layout.is_dev``)."""
    return np.fromiter((is_dev(str(i), dev_fraction) for i in ids), dtype=bool, count=len(ids))


class EarlyStopping:
    """Tracks the dev loss per epoch; stops after ``patience`` epochs without improvement.

    An epoch improves when its loss is below ``best_loss - min_delta``. Attributes:
    ``best_loss``, ``best_epoch`` (1-based, 0 before any), ``epochs_run``, ``bad_epochs``.
    """

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an int >= 1, got {patience!r}")
        if not (isinstance(min_delta, int | float) and min_delta >= 0.0):
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best_loss = math.inf
        self.best_epoch = 0
        self.epochs_run = 0
        self.bad_epochs = 0

    def record_baseline(self, loss: float) -> None:
        """Record the dev loss of the model before any epoch (the linear probe): the best so
        far, as epoch 0, without counting an epoch."""
        if not (isinstance(loss, int | float) and math.isfinite(loss)):
            raise ValueError(f"dev loss must be a finite number, got {loss!r}")
        self.best_loss, self.best_epoch = float(loss), 0

    def update(self, loss: float) -> bool:
        """Record one epoch's dev loss; return whether it is the new best."""
        if not (isinstance(loss, int | float) and math.isfinite(loss)):
            raise ValueError(f"dev loss must be a finite number, got {loss!r}")
        self.epochs_run += 1
        if loss < self.best_loss - self.min_delta:
            self.best_loss = float(loss)
            self.best_epoch = self.epochs_run
            self.bad_epochs = 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        """Whether ``patience`` epochs in a row brought no improvement."""
        return self.bad_epochs >= self.patience


def gold_targets(gold: Sequence[str] | None, names: Sequence[str]) -> list[float] | None:
    """A gold label list -> multi-hot targets (K,) in taxonomy order (names outside it are
    ignored); None stays None. The gold seed's labels replace the aggregate's targets."""
    if gold is None:
        return None
    chosen = set(gold)
    return [1.0 if name in chosen else 0.0 for name in names]


class TrainingRows(NamedTuple):
    """What the student learns from a batch of N aggregate rows (see :func:`training_rows`)."""

    targets: list[list[float] | None]  # N: K floats for a usable row, None otherwise
    weights: np.ndarray  # (N,) float32: the row's confidence weight, 0 for an unusable row
    split: list[str | None]  # N: "train" / "dev" for a usable row, None otherwise


def training_rows(
    ids: Sequence[str],
    texts: Sequence[str | None],
    probs: Sequence[Sequence[float] | None],
    errors: Sequence[str | None],
    gold: Sequence[Sequence[str] | None],
    gold_seed: Sequence[bool | None],
    taxonomy_versions: Sequence[str | None],
    taxonomy_version: str,
    num_labels: int,
    names: Sequence[str] | None,
    settings: StudentConfig,
) -> TrainingRows:
    """Aggregate rows (N of each column) -> their targets, weights and train/dev side.

    Rules, in order: with ``names`` (the K labels in taxonomy order), a gold-seed row with gold
    learns from its gold labels (multi-hot; the aggregate's error no longer matters), the best
    labels there are; a row
    made under another taxonomy version than ``taxonomy_version`` is never usable; the rest
    must pass :func:`usable_rows`; usable rows weigh :func:`row_weights` and are split by id
    hash (:func:`dev_mask`, ``settings.dev_fraction``).
    """
    count = len(ids)
    for name, column in {
        "texts": texts,
        "probs": probs,
        "errors": errors,
        "gold": gold,
        "gold_seed": gold_seed,
        "taxonomy_versions": taxonomy_versions,
    }.items():
        if len(column) != count:
            raise ValueError(f"{name} has {len(column)} rows, ids has {count}")
    if names is not None and len(names) != num_labels:
        raise ValueError(f"names must hold {num_labels} labels, got {list(names)!r}")
    seeded = [bool(names) and bool(gold_seed[i]) and gold[i] is not None for i in range(count)]
    targets = [gold_targets(gold[i], names or []) if seeded[i] else probs[i] for i in range(count)]
    row_errors = [None if seeded[i] else errors[i] for i in range(count)]
    own = [i for i in range(count) if taxonomy_versions[i] == taxonomy_version]
    keep = np.zeros(count, dtype=bool)
    keep[own] = usable_rows(
        [texts[i] for i in own],
        [targets[i] for i in own],
        [row_errors[i] for i in own],
        [gold[i] is not None for i in own],
        [gold_seed[i] for i in own],
        num_labels,
        settings.exclude_eval_gold,
    )
    index = np.flatnonzero(keep)
    matrix = np.asarray([targets[i] for i in index], dtype=np.float64).reshape(-1, num_labels)
    weights = np.zeros(count, dtype=np.float32)
    weights[index] = row_weights(matrix, settings.confidence_weighting, settings.min_row_weight)
    split: list[str | None] = [None] * count
    dev = dev_mask([ids[i] for i in index], settings.dev_fraction)
    for i, is_dev_row in zip(index, dev, strict=True):
        split[i] = "dev" if is_dev_row else "train"
    kept = [list(targets[i]) if keep[i] else None for i in range(count)]  # type: ignore[arg-type]
    return TrainingRows(targets=kept, weights=weights, split=split)


def is_head_parameter(name: str) -> bool:
    """Whether a named parameter belongs to the pooler or the classification head."""
    parts = name.split(".")
    return parts[0] in ("classifier", "pre_classifier", "score") or "pooler" in parts


def parameter_groups(model: Any, config: StudentConfig) -> list[dict[str, Any]]:
    """AdamW parameter groups: the encoder at ``learning_rate``, the pooler and head at
    ``head_learning_rate`` (both with ``weight_decay``). Names may carry a DDP ``module.``
    prefix. Raises ValueError when no head parameter is found (not a classification model)."""
    body, head = [], []
    for name, parameter in model.named_parameters():
        bare = name.removeprefix("module.")
        (head if is_head_parameter(bare) else body).append(parameter)
    if not head:
        raise ValueError(
            f"no classification head parameters in {type(model).__name__} "
            "(expected names starting with classifier/pre_classifier/score or a pooler)"
        )
    return [
        {"params": body, "lr": config.learning_rate, "weight_decay": config.weight_decay},
        {"params": head, "lr": config.head_learning_rate, "weight_decay": config.weight_decay},
    ]


def loss_function(config: StudentConfig) -> LossFn:
    """The configured row-weighted loss: ``(logits (B, K), targets (B, K), weights (B,)) -> ()``.

    Imports torch lazily, so that the row helpers above stay light in Ray Data tasks.
    """
    from labelmill.student.losses import asymmetric_loss, soft_bce_loss

    if config.loss == "bce":
        return soft_bce_loss
    if config.loss == "asymmetric":

        def asl(
            logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None
        ) -> torch.Tensor:
            return asymmetric_loss(
                logits,
                targets,
                weights,
                gamma_pos=config.asl_gamma_pos,
                gamma_neg=config.asl_gamma_neg,
                clip=config.asl_clip,
            )

        return asl
    raise ValueError(f"student.loss must be 'bce' or 'asymmetric', got {config.loss!r}")


class DevScores(NamedTuple):
    """Tuned thresholds (K,), their sources (K,), and the dev F1 they reach on the gold seed
    rows of the dev split (NaN without any)."""

    thresholds: np.ndarray
    sources: tuple[str, ...]
    micro_f1: float
    macro_f1: float
    gold_rows: int

    @property
    def source(self) -> str:
        """The sources as counts, e.g. ``gold_seed:2,expected_f1:10``."""
        counts: dict[str, int] = {}
        for name in self.sources:
            counts[name] = counts.get(name, 0) + 1
        return ",".join(f"{name}:{n}" for name, n in counts.items())


def student_thresholds(
    student_probs: Any,
    gold: Sequence[Sequence[str] | None],
    gold_seed: Sequence[bool | None],
    names: Sequence[str],
    corpus_probs: Any,
    corpus_targets: Any,
) -> DevScores:
    """Per-label thresholds of the student: F1 on the dev split's gold-seed rows where a label
    has at least MIN_SEED_POSITIVES positives (and a negative) there, as for every system;
    elsewhere the ``prevalence`` rule (see :mod:`labelmill.aggregation.thresholds`): the cut
    at which the student labels as many of its documents as its targets expect.

    student_probs: (N, K) dev probabilities, gold: N label lists (None: no gold), gold_seed:
    (N,); corpus_probs: (M, K) the student's probabilities on its own documents (dev and a
    sample of train), corpus_targets: (M, K) their training targets -> DevScores
    """
    probs = check_probs(student_probs, "student_probs")
    n, k = probs.shape
    if len(names) != k:
        raise ValueError(f"names has {len(names)} labels, student_probs has {k}")
    if len(gold) != n or len(gold_seed) != n:
        raise ValueError(f"gold ({len(gold)}) and gold_seed ({len(gold_seed)}) need {n} rows")
    if n == 0:
        raise ValueError("no dev rows to tune thresholds on")
    sample = check_probs(corpus_probs, "corpus_probs")
    expected = check_probs(corpus_targets, "corpus_targets")
    if sample.shape != expected.shape or sample.shape[1:] != (k,):
        raise ValueError(
            f"corpus_probs {sample.shape} and corpus_targets {expected.shape} must be (M, {k})"
        )
    seed = np.array([gold[i] is not None and bool(gold_seed[i]) for i in range(n)], dtype=bool)
    targets = np.array(
        [gold_targets(gold[i], names) if seed[i] else [0.0] * k for i in range(n)]
    ).reshape(n, k)
    choice = choose_thresholds(threshold_stats(probs, targets, seed))
    by_seed = np.array([source == "gold_seed" for source in choice.sources])
    by_rate = prevalence_thresholds(sample, expected.mean(axis=0))
    thresholds = np.where(by_seed, choice.thresholds, by_rate)
    sources = tuple("gold_seed" if s else "prevalence" for s in by_seed)
    micro = macro = float("nan")
    if seed.any():
        pred = threshold_probs(probs[seed], thresholds).astype(float)
        scores = precision_recall_f1(targets[seed], pred)
        micro, macro = scores["micro_f1"], scores["macro_f1"]
    return DevScores(thresholds, sources, micro, macro, int(seed.sum()))


def lr_multiplier(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate factor at optimizer step ``step`` (0-based): linear warm-up over
    ``warmup_steps``, then linear decay to 0 at ``total_steps`` (as in BERT fine-tuning)."""
    if step < warmup_steps:
        return (step + 1) / max(warmup_steps, 1)
    remaining = total_steps - step
    return max(0.0, remaining / max(total_steps - warmup_steps, 1))


def training_schedule(rows: int, config: StudentConfig) -> tuple[int, int, int]:
    """(epochs, total optimizer steps, warm-up steps) for ``rows`` training rows.

    Runs at least ``config.epochs`` epochs and, on small splits, as many more as reach
    ``config.min_steps`` optimizer steps (capped at ``config.max_epochs``): a few hundred rows
    give a handful of steps per epoch, too few for the head to learn anything.
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows!r}")
    per_epoch = math.ceil(rows / (config.batch_size * config.num_workers))
    epochs = max(config.epochs, math.ceil(config.min_steps / per_epoch))
    epochs = min(epochs, max(config.max_epochs, config.epochs))
    total = epochs * per_epoch
    return epochs, total, round(config.warmup_fraction * total)


def decisions_f1(
    labels: Sequence[Sequence[str] | None],
    gold: Sequence[Sequence[str] | None],
    gold_seed: Sequence[bool | None],
    names: Sequence[str],
) -> float:
    """Micro-F1 of label-set decisions against gold on the gold-seed rows (NaN without any).

    labels, gold: N label lists (None: none / no gold), gold_seed: (N,). The aggregate's
    decisions on the dev split's seed rows are what the student is compared with.
    """
    if not len(labels) == len(gold) == len(gold_seed):
        raise ValueError(
            f"labels ({len(labels)}), gold ({len(gold)}) and gold_seed need one length"
        )
    rows = [i for i in range(len(gold)) if gold[i] is not None and bool(gold_seed[i])]
    if not rows:
        return float("nan")
    truth = np.array([gold_targets(gold[i], names) for i in rows])
    pred = np.array([gold_targets(labels[i] or [], names) for i in rows])
    return float(precision_recall_f1(truth, pred)["micro_f1"])


# Dev gold rows below which the student / aggregate comparison is not made: on a handful of
# rows one document moves micro-F1 by 0.1 or more (the demo's dev split has 4 seed rows).
MIN_TRUST_ROWS = 20


def untrusted_warning(student_f1: float, aggregate_f1: float, rows: int) -> str | None:
    """The warning when the student's dev-gold micro-F1 is below its aggregate's on the same
    ``rows`` rows (None when it is not, when either figure is missing, or when there are fewer
    than MIN_TRUST_ROWS rows to compare on)."""
    if rows < MIN_TRUST_ROWS or not (math.isfinite(student_f1) and math.isfinite(aggregate_f1)):
        return None
    if student_f1 >= aggregate_f1:
        return None
    return (
        f"warning: the student is below its own aggregate on the {rows} dev gold rows "
        f"(micro-F1 {student_f1:.3f} vs {aggregate_f1:.3f}): do not deploy it in place of the "
        "aggregate without checking `labelmill evaluate`"
    )


def trust_note(student_f1: float, aggregate_f1: float, rows: int) -> str:
    """One line on the student / aggregate comparison on the dev split's gold rows."""
    if rows < MIN_TRUST_ROWS or not (math.isfinite(student_f1) and math.isfinite(aggregate_f1)):
        return (
            f"  trust check: {rows} dev gold row(s), {MIN_TRUST_ROWS} needed: student and "
            "aggregate not compared (see `labelmill evaluate`)"
        )
    return (
        untrusted_warning(student_f1, aggregate_f1, rows)
        or f"  trust check: student {student_f1:.3f} >= aggregate {aggregate_f1:.3f} micro-F1 "
        f"on {rows} dev gold rows"
    )
